"""`tex.scan`: recurrences along the first axis, compiled and compared with NumPy loops."""
from __future__ import annotations

import numpy as np
import pytest

import tex
from checks import check, random_array
from test_errors import raises
from tex.schedule.fingerprint import fingerprint


def cumulative_sum(m=None, n=None):
    """TE's scan example: the running sum of X's rows, with symbolic sizes by default."""
    m, n = m or tex.var("m"), n or tex.var("n")
    X = tex.placeholder((m, n), name="X")
    state = tex.placeholder((m, n), name="state")
    init = tex.compute((1, n), lambda _, i: X[0, i], name="init")
    update = tex.compute((m, n), lambda t, i: state[t - 1, i] + X[t, i], name="update")
    return X, init, update, tex.scan(init, update, state, inputs=[X])


def lstm_like(steps=6, hidden=11):
    """h[t] = tanh(W @ h[t - 1] + X[t]): each step reduces over the row before."""
    W = tex.placeholder((hidden, hidden), name="W")
    X = tex.placeholder((steps, hidden), name="X")
    h = tex.placeholder((steps, hidden), name="h")
    h0 = tex.compute((1, hidden), lambda _, j: X[0, j], name="h0")
    k = tex.reduce_axis((0, hidden), name="k")
    gemm = tex.compute((steps, hidden), lambda t, j: tex.sum(W[j, k] * h[t - 1, k], axis=k),
                       name="gemm")
    hn = tex.compute((steps, hidden), lambda t, j: tex.tanh(gemm[t, j] + X[t, j]), name="hn")
    return (W, X), (h0, gemm, hn), tex.scan(h0, hn, h, inputs=[X, W], name="H")


def lstm_reference(w, x):
    h = np.zeros_like(x)
    h[0] = x[0]
    for t in range(1, len(x)):
        h[t] = np.tanh(w @ h[t - 1] + x[t])
    return h


def small_weights(hidden):
    return (random_array((hidden, hidden)) * 0.2).astype("float32")


# --- what it computes ------------------------------------------------------------------------
def test_unscheduled_scan_lowers_to_the_init_then_the_steps_in_order():
    X, _, _, scan = cumulative_sum()
    text = str(tex.lower(tex.create_schedule(scan.op), [X, scan]))
    assert text.index("scan[i] = X[i]") < text.index("for scan_idx in range(1, m):")
    assert "scan[(scan_idx - 1) * n + i_1]" in text


@pytest.mark.parametrize("shape", [(10, 13), (1, 5), (7, 3)])
def test_cumulative_sum_with_the_update_split_and_vectorized(shape):
    X, init, update, scan = cumulative_sum()
    s = tex.create_schedule(scan.op)
    _, inner = s[update].split(update.op.axis[1], factor=8)
    s[update].vectorize(inner)
    _, init_inner = s[init].split(init.op.axis[1], factor=4)
    s[init].vectorize(init_inner)
    x = random_array(shape)
    check(s, [X, scan], [x], np.cumsum(x, axis=0), rtol=1e-5, atol=1e-5)
    assert "ramp(" in str(tex.lower(s, [X, scan]))


def test_scan_spatial_axis_in_parallel_tiles_with_the_update_computed_per_tile():
    X, _, update, scan = cumulative_sum()
    s = tex.create_schedule(scan.op)
    tile, _ = s[scan].split(scan.op.spatial_axis[0], factor=16)
    s[scan].parallel(tile)
    s[update].compute_at(s[scan], tile)
    _, lanes = s[update].split(update.op.axis[1], factor=4)
    s[update].vectorize(lanes)
    text = str(tex.lower(s, [X, scan]))
    assert text.index("for scan_idx in range(1, m)") < text.index("in parallel(")
    x = random_array((9, 37))
    check(s, [X, scan], [x], np.cumsum(x, axis=0), rtol=1e-5, atol=1e-5)


def fibonacci():
    """Each column a Fibonacci-like recurrence from two given rows: state[t-1] + state[t-2]."""
    m, n = tex.var("m"), tex.var("n")
    X = tex.placeholder((2, n), name="X")
    state = tex.placeholder((m, n), name="state")
    init = tex.compute((2, n), lambda r, i: X[r, i], name="init")
    update = tex.compute((m, n), lambda t, i: state[t - 1, i] + state[t - 2, i] * 0.5,
                         name="update")
    return X, update, tex.scan(init, update, state, inputs=[X], name="fib")


@pytest.mark.parametrize("rows", [9, 2, 1])
def test_two_init_rows_and_a_step_reading_two_rows_back(rows):
    X, update, fib = fibonacci()
    s = tex.create_schedule(fib.op)
    _, inner = s[update].split(update.op.axis[1], factor=4)
    s[update].vectorize(inner)
    f = tex.build(s, [X, fib])
    x = random_array((2, 7))
    want = np.zeros((max(rows, 2), 7), "float32")
    want[:2] = x
    for t in range(2, rows):
        want[t] = want[t - 1] + want[t - 2] * 0.5
    out = np.full((rows, 7), np.nan, "float32")
    f(x, out)  # with one row, the init's second row is not written: it is not there
    np.testing.assert_allclose(out, want[:rows], rtol=1e-5)
    assert "for fib_idx in range(2, m):" in str(tex.lower(s, [X, fib]))


@pytest.mark.parametrize("how", ["default", "update split", "gemm in update's tiles"])
def test_lstm_like_step_with_a_reduction_over_the_previous_row(how):
    (W, X), (h0, gemm, hn), H = lstm_like()
    s = tex.create_schedule(H.op)
    if how != "default":
        outer, _ = s[hn].split(hn.op.axis[1], factor=4)
    if how == "gemm in update's tiles":
        s[gemm].compute_at(s[hn], outer)
        _, lanes = s[gemm].split(gemm.op.axis[1], factor=4)
        s[gemm].vectorize(lanes)
    w, x = small_weights(11), random_array((6, 11))
    check(s, [W, X, H], [w, x], lstm_reference(w, x), rtol=1e-4, atol=1e-5)


def test_an_elementwise_stage_feeding_the_update_inlined_or_computed_per_step():
    m, n = tex.var("m"), tex.var("n")
    X = tex.placeholder((m, n), name="X")
    state = tex.placeholder((m, n), name="state")
    init = tex.compute((1, n), lambda _, i: X[0, i], name="init")
    decayed = tex.compute((m, n), lambda t, i: state[t - 1, i] * 0.5, name="decayed")
    update = tex.compute((m, n), lambda t, i: decayed[t, i] + X[t, i], name="update")
    scan = tex.scan(init, update, state, inputs=[X])
    x = random_array((8, 21))
    want = x.copy()
    for t in range(1, 8):
        want[t] = want[t - 1] * 0.5 + x[t]
    for inline in (False, True):
        s = tex.create_schedule(scan.op)
        if inline:
            s[decayed].compute_inline()
        _, inner = s[update].split(update.op.axis[1], factor=8)
        s[update].vectorize(inner)
        check(s, [X, scan], [x], want, rtol=1e-5, atol=1e-5)
        assert ("decayed = allocate" in str(tex.lower(s, [X, scan]))) != inline


def two_states(one_update_op: bool):
    """c[t] = c[t-1] + X[t]; h[t] = h[t-1] / 2 + c[t-1] one column over."""
    m, n = tex.var("m"), tex.var("n")
    X = tex.placeholder((m, n), name="X")
    c, h = tex.placeholder((m, n), name="c"), tex.placeholder((m, n), name="h")
    c0 = tex.compute((1, n), lambda _, i: X[0, i], name="c0")
    h0 = tex.compute((1, n), lambda _, i: X[0, i] * 2.0, name="h0")

    def values(t, i):
        return c[t - 1, i] + X[t, i], h[t - 1, i] * 0.5 + c[t - 1, (i + 1) % n]
    if one_update_op:
        updates = tex.compute((m, n), values, name="ch")
    else:
        updates = [tex.compute((m, n), lambda t, i: values(t, i)[0], name="u0"),
                   tex.compute((m, n), lambda t, i: values(t, i)[1], name="u1")]
    return X, updates, tex.scan([c0, h0], updates, [c, h], inputs=[X], name="ch_scan")


@pytest.mark.parametrize("one_update_op", [False, True])
def test_two_states_updated_together(one_update_op):
    X, updates, (C, H) = two_states(one_update_op)
    s = tex.create_schedule(C.op)
    _, inner = s[updates[0]].split(updates[0].op.axis[1], factor=4)
    s[updates[0]].vectorize(inner)
    x = random_array((6, 9))
    c, h = np.zeros_like(x), np.zeros_like(x)
    c[0], h[0] = x[0], 2 * x[0]
    for t in range(1, 6):
        c[t], h[t] = c[t - 1] + x[t], h[t - 1] * 0.5 + np.roll(c[t - 1], -1)
    check(s, [X, C, H], [x], [c, h], rtol=1e-5, atol=1e-5)


def test_a_scan_read_by_a_later_stage_and_an_init_given_as_an_input():
    m, n = tex.var("m"), tex.var("n")
    X, first = tex.placeholder((m, n), name="X"), tex.placeholder((1, n), name="first")
    state = tex.placeholder((m, n), name="state")
    update = tex.compute((m, n), lambda t, i: tex.fmax(state[t - 1, i], X[t, i]), name="update")
    running_max = tex.scan(first, update, state, inputs=[X])
    Y = tex.compute((m, n), lambda t, i: running_max[t, i] * 2.0, name="Y")
    x, f = random_array((7, 6)), random_array((1, 6))
    want = np.maximum.accumulate(np.concatenate([f, x[1:]]), axis=0) * 2
    check(tex.create_schedule(Y.op), [X, first, Y], [x, f], want, rtol=1e-6)


def states_of_two_shapes():
    """TE's scan example of several states: a running sum of X's rows (m, n) and a state
    of another width (m, l) that adds up the first column of the sum's previous row."""
    m, n, l = tex.var("m"), tex.var("n"), tex.var("l")
    X = tex.placeholder((m, n), name="X")
    s1, s2 = tex.placeholder((m, n), name="s1"), tex.placeholder((m, l), name="s2")
    i1 = tex.compute((1, n), lambda _, i: X[0, i], name="i1")
    i2 = tex.compute((1, l), lambda _, i: 0.0, name="i2")
    u1 = tex.compute((m, n), lambda t, i: s1[t - 1, i] + X[t, i], name="u1")
    u2 = tex.compute((m, l), lambda t, i: s2[t - 1, i] + s1[t - 1, 0] * (i + 1), name="u2")
    return X, (i1, i2, u1, u2), tex.scan([i1, i2], [u1, u2], [s1, s2], inputs=[X])


def two_shapes_reference(x, width):
    sums, other = np.cumsum(x, axis=0), np.zeros((len(x), width), "float32")
    for t in range(1, len(x)):
        other[t] = other[t - 1] + sums[t - 1, 0] * np.arange(1, width + 1)
    return sums, other


def test_states_of_different_shapes():
    X, (_, _, u1, _), (R1, R2) = states_of_two_shapes()
    assert [str(d) for d in R2.shape] == ["m", "l"] and R2.ndim == 2
    assert [iv.name for iv in R1.op.spatial_axis] == ["i", "i"]  # each output's own
    s = tex.create_schedule(R2.op)
    _, inner = s[u1].split(u1.op.axis[1], factor=4)
    s[u1].vectorize(inner)
    x = random_array((7, 10))
    sums, other = np.zeros((7, 10), "float32"), np.zeros((7, 3), "float32")
    tex.build(s, [X, R1, R2])(x, sums, other)
    want_sums, want_other = two_shapes_reference(x, 3)
    np.testing.assert_allclose(sums, want_sums, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(other, want_other, rtol=1e-4, atol=1e-4)


def test_cuda_states_of_different_shapes_in_one_block():
    X, (i1, i2, u1, u2), (R1, R2) = states_of_two_shapes()
    s = tex.create_schedule(R2.op)
    for T in (i1, i2, u1, u2):
        _, threads = s[T].split(T.op.axis[1], factor=8)
        s[T].bind(threads, tex.thread_axis("threadIdx.x"))
    f = tex.build(s, [X, R1, R2], target="cuda")
    x = random_array((6, 13))
    sums, other = np.zeros((6, 13), "float32"), np.zeros((6, 5), "float32")
    f.simulate(x, sums, other)
    want_sums, want_other = two_shapes_reference(x, 5)
    np.testing.assert_allclose(sums, want_sums, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(other, want_other, rtol=1e-4, atol=1e-4)


# --- GPUs: one kernel of steps, checked in the simulator --------------------------------------
def test_cuda_cumulative_sum_on_threads_and_blocks_needs_no_barrier():
    """Each thread reads back only the column it wrote, so the blocks may share the work."""
    X, init, update, scan = cumulative_sum()
    s = tex.create_schedule(scan.op)
    for T in (init, update):
        blocks, threads = s[T].split(T.op.axis[1], factor=32)
        s[T].bind(blocks, tex.thread_axis("blockIdx.x"))
        s[T].bind(threads, tex.thread_axis("threadIdx.x"))
    f = tex.build(s, [X, scan], target="cuda")
    assert "__syncthreads" not in f.get_source("cuda")
    x = random_array((9, 70))
    for seed in range(2):
        np.testing.assert_allclose(f.simulate(x, seed=seed), np.cumsum(x, axis=0), rtol=1e-5)


def test_cuda_lstm_like_steps_in_one_block_with_a_barrier_between_steps():
    (W, X), (h0, gemm, hn), H = lstm_like(steps=5, hidden=40)
    s = tex.create_schedule(H.op)
    s[gemm].set_scope("shared")
    for T in (h0, gemm, hn):
        _, threads = s[T].split(T.op.axis[1], factor=16)
        s[T].bind(threads, tex.thread_axis("threadIdx.x"))
    f = tex.build(s, [W, X, H], target="cuda")
    assert "launch main_kernel1(grid=(1, 1, 1), block=(16, 1, 1))" in f.get_source("tex")
    w, x = small_weights(40) * 0.5, random_array((5, 40))
    for seed in range(2):
        np.testing.assert_allclose(f.simulate(w, x, seed=seed), lstm_reference(w, x),
                                   rtol=1e-4, atol=1e-5)


def test_cuda_steps_reading_other_threads_points_refuse_blocks():
    (W, X), (h0, gemm, hn), H = lstm_like(hidden=40)
    s = tex.create_schedule(H.op)
    s[gemm].set_scope("shared")
    for T in (h0, gemm, hn):
        blocks, threads = s[T].split(T.op.axis[1], factor=16)
        s[T].bind(threads, tex.thread_axis("threadIdx.x"))
        if T is not gemm:
            s[T].bind(blocks, tex.thread_axis("blockIdx.x"))
    with raises(tex.LoweringError, "scan H", "blockIdx.x", "threadIdx only"):
        tex.build(s, [W, X, H], target="cuda")


# --- caching ---------------------------------------------------------------------------------
def test_fingerprints_see_the_scan():
    def declared(rows):
        n = tex.var("n")
        X = tex.placeholder((9, n), name="X")
        state = tex.placeholder((9, n), name="state")
        init = tex.compute((rows, n), lambda r, i: X[r, i], name="init")
        update = tex.compute((9, n), lambda t, i: state[t - 1, i] + X[t, i], name="update")
        scan = tex.scan(init, update, state)
        return tex.create_schedule(scan.op), [X, scan]
    assert fingerprint(*declared(1), "f") == fingerprint(*declared(1), "f")
    assert fingerprint(*declared(1), "f") != fingerprint(*declared(2), "f")


# --- errors ----------------------------------------------------------------------------------
def declaration_errors():
    m, n = tex.var("m"), tex.var("n")
    X = tex.placeholder((m, n), name="X")
    state = tex.placeholder((m, n), name="state")
    init = tex.compute((1, n), lambda _, i: X[0, i], name="init")

    def update(body, shape=(m, n)):
        return tex.compute(shape, body, name="update")
    return {
        "reads the current row": (lambda: tex.scan(init, update(lambda t, i: state[t, i]), state),
                                  ["compute update", "at row t;", "rows t - 1 only"]),
        "reads before init": (lambda: tex.scan(init, update(lambda t, i: state[t - 2, i]), state),
                              ["at row t - 2"]),
        "reads a transposed row": (lambda: tex.scan(init, update(lambda t, i: state[i, t]), state),
                                   ["at row i"]),
        "state shape": (lambda: tex.scan(init, update(lambda t, i: X[t, i], (m, n + 1)), state),
                        ["state_placeholder state has shape (m, n)", "(m, n + 1)"]),
        "init shape": (lambda: tex.scan(tex.compute((1, 3), lambda _, i: X[0, i], name="i3"),
                                        update(lambda t, i: state[t - 1, i]), state),
                       ["init i3 has shape (1, 3)", "(n)"]),
        "dtypes": (lambda: tex.scan(init, update(lambda t, i: tex.cast("float64", X[t, i])),
                                    state), ["one dtype", "float64"]),
        "counts": (lambda: tex.scan([init, init], [update(lambda t, i: X[t, i])], [state]),
                   ["must be as many", "2, 1 and 1"]),
        "update kind": (lambda: tex.scan(init, X, state), ["update 0 must be a compute"]),
        "state kind": (lambda: tex.scan(init, update(lambda t, i: X[t, i]), init),
                       ["state_placeholder 0 must be a placeholder"]),
        "first dimensions": (lambda: tex.scan([init, init], [update(lambda t, i: X[t, i]),
                                                             update(lambda t, i: X[t, i],
                                                                    (m + 1, n))],
                                              [state, state]),
                             ["update update has shape (m + 1, n)", "first update's first, (m)"]),
        "symbolic init rows": (lambda: tex.scan(tex.compute((m, n), lambda r, i: X[r, i]),
                                                update(lambda t, i: X[t, i]), state),
                               ["one constant number of rows", "(m)"]),
    }


@pytest.mark.parametrize("case", list(declaration_errors()))
def test_bad_declarations(case):
    declare, fragments = declaration_errors()[case]
    with raises(tex.ExprError, "scan scan", *fragments):
        declare()


@pytest.mark.parametrize("primitive", ["split", "fuse", "reorder", "parallel", "vectorize",
                                       "unroll", "bind"])
def test_the_scan_axis_stays_outermost_and_serial(primitive):
    _, _, _, scan = cumulative_sum()
    s = tex.create_schedule(scan.op)
    stage, t, i = s[scan], scan.op.scan_axis, scan.op.spatial_axis[0]
    call = {"split": lambda: stage.split(t, factor=2), "fuse": lambda: stage.fuse(t, i),
            "reorder": lambda: stage.reorder(i, t), "parallel": lambda: stage.parallel(t),
            "vectorize": lambda: stage.vectorize(t), "unroll": lambda: stage.unroll(t),
            "bind": lambda: stage.bind(t, tex.thread_axis("blockIdx.x"))}[primitive]
    with raises(tex.ScheduleError, f"{primitive} on stage scan", "axis scan_idx is the scan axis",
                "outermost, serial"):
        call()


def test_the_scan_is_computed_at_the_root():
    _, _, update, scan = cumulative_sum()
    s = tex.create_schedule(scan.op)
    with raises(tex.ScheduleError, "compute_at on stage scan", "at the root"):
        s[scan].compute_at(s[update], update.op.axis[0])
    with raises(tex.ScheduleError, "compute_inline on stage scan"):
        s[scan].compute_inline()
    with raises(tex.ScheduleError, "cache_write of scan", "not a compute"):
        s.cache_write(scan, "local")


def placement_error(case):
    """A schedule that places a scan's stage where its steps would not run in order."""
    m, n = tex.var("m"), tex.var("n")
    X = tex.placeholder((m, n), name="X")
    state = tex.placeholder((m, n), name="state")
    init = tex.compute((1, n), lambda _, i: X[0, i], name="init")
    g = tex.compute((m, n), lambda t, i: state[t - 1, i] * 2.0, name="g")
    update = tex.compute((m, n), lambda t, i: g[t - (1 if case == "later row" else 0), i] + 1.0,
                         name="update")
    scan = tex.scan(init, update, state)
    s, args = tex.create_schedule(scan.op), [X, scan]
    if case == "update at the root":
        s[update].compute_root()
    elif case == "state read at the root":
        s[g].compute_root()
    elif case == "init inlined":
        s[init].compute_inline()
    elif case == "init in args":
        args = [X, init, scan]
    elif case == "state and output in args":
        args = [X, state, scan]
    elif case == "update read elsewhere":
        Y = tex.compute((m, n), lambda t, i: scan[t, i] + update[t, i], name="Y")
        s, args = tex.create_schedule(Y.op), [X, Y]
    return s, args


@pytest.mark.parametrize("case, fragments", [
    ("update at the root", ["stage update is the update of scan scan", "at the root"]),
    ("state read at the root", ["stage g reads state", "computed in each step", "at the root"]),
    ("init inlined", ["stage init is an init of scan scan", "inline"]),
    ("init in args", ["tensor init is part of scan scan", "leave it out of args"]),
    ("state and output in args", ["state is a state of scan scan", "give one of the two"]),
    ("update read elsewhere", ["stage Y reads update", "read the scan's output instead"]),
    ("later row", ["stage g reads state", "rows [scan_idx - 2, scan_idx - 2]", "[0, scan_idx)"]),
])
def test_scan_stages_placed_where_steps_would_not_run_in_order(case, fragments):
    s, args = placement_error(case)
    with raises(tex.LoweringError, *fragments):
        tex.lower(s, args)
