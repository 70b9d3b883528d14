"""The TVM peer: hand-written TensorIR schedules for every case of the suite.

Each case is declared with `te.compute`, turned into a TensorIR function with
`te.create_prim_func`, scheduled by hand with `tvm.s_tir.Schedule` and
compiled with `tvm.compile` for the host CPU. Every factory builds its kernel
(timed as `build_seconds`), copies the case's inputs into TVM tensors once,
allocates the outputs once and returns a `Runner` around the compiled function.

Importing this module raises ImportError when TVM is not installed, which is
how the harness tells that the peer is absent.
"""
from __future__ import annotations

import os
import time

# TVM's thread pool otherwise uses one thread per physical core only.
os.environ.setdefault("TVM_NUM_THREADS", str(os.cpu_count()))

import numpy as np  # noqa: E402
import tvm  # noqa: E402
from tvm import te, topi  # noqa: E402
from tvm.s_tir import Schedule  # noqa: E402
from tvm.tirx import IterVar  # noqa: E402

from bench.cases import LAYERNORM_EPS, Runner  # noqa: E402

NAME = "tvm"

FLOAT = "float32"


def _target() -> tvm.target.Target:
    """The host CPU: Sapphire Rapids (AVX-512), all cores."""
    return tvm.target.Target({"kind": "llvm", "mcpu": "sapphirerapids",
                              "num-cores": os.cpu_count() or 1})


# --- plumbing shared by every case -------------------------------------------------------

def _runner(schedule_fn, inputs, out_shape, notes: str) -> Runner:
    """Build the kernel that `schedule_fn()` schedules, bind `inputs` and a fresh output.

    `schedule_fn` returns a scheduled `Schedule` whose function takes the
    inputs in order followed by the output. Building covers scheduling and
    compilation.
    """
    start = time.perf_counter()
    sch = schedule_fn()
    func = tvm.compile(sch.mod, target=_target())["main"]
    build_seconds = time.perf_counter() - start

    dev = tvm.cpu()
    args = [tvm.runtime.tensor(np.ascontiguousarray(x, dtype=FLOAT), dev) for x in inputs]
    out = tvm.runtime.empty(out_shape, FLOAT, dev)
    args.append(out)
    return Runner(run=lambda: func(*args), result=lambda: out.numpy(),
                  build_seconds=build_seconds, notes=notes)


def _schedule(*tensors) -> Schedule:
    """A fresh schedule of the TensorIR function computing `tensors[-1]` from the rest."""
    return Schedule(te.create_prim_func(list(tensors)))


def _notes(**params) -> str:
    return ",".join(f"{key}={value}" for key, value in params.items())


def _row_reduce(sch: Schedule, name: str, vl: int):
    """Split the (last) reduction loop of block `name` by `vl` and rfactor the lanes.

    Returns (rf_block, final_block): the rf block accumulates `vl` partial
    results over the row, the final block folds the lanes into one value.
    """
    block = sch.get_sblock(name)
    red = sch.get_loops(block)[-1]
    _, lanes = sch.split(red, [None, vl])
    rf = sch.rfactor(lanes, 1)
    return rf, block


def _vectorize_rf(sch: Schedule, rf) -> None:
    """Vectorise the rf block along its lanes and give it a vector init.

    The rf block's two innermost loops are its lanes and its reduction, in
    either order (compute_at puts the lanes first); the lanes end up inside.
    Call it last: no loop above the rf block can be parallelised after it.
    """
    outer, lanes = sch.get_loops(rf)[-2:]
    realize = sch.get(lanes).body
    for iter_var, value in zip(realize.block.iter_vars, realize.iter_values):
        if value.same_as(sch.get(lanes).loop_var) and iter_var.iter_type == IterVar.CommReduce:
            sch.reorder(lanes, outer)
            outer, lanes = lanes, outer
            break
    sch.vectorize(lanes)
    init = sch.decompose_reduction(rf, outer)
    init_lanes = sch.get_loops(init)[-1]
    if sch.get(init_lanes).kind != tvm.tirx.ForKind.VECTORIZED:
        sch.vectorize(init_lanes)


# --- dense cases ---------------------------------------------------------------------------

def _gemm(batch: int, m: int, n: int, k: int, mr: int, nr: int, mc: int, nc: int, kc: int):
    """The usual TVM CPU GEMM recipe, optionally batched.

    B is packed into [N/NR, K, NR] panels by a stage of the kernel itself; the
    result is tiled i -> (MC, MR), j -> (NC, NR), k -> KC with the loop order
    [b i0 j0] (parallel) k0 j1 i1 k1 i2 (unrolled) j2 (vectorised), and
    accumulated in a local MC x NC buffer written back once per (i0, j0) tile.
    """
    lead = (batch,) if batch else ()

    def build():
        a = te.placeholder(lead + (m, k), FLOAT, name="A")
        b = te.placeholder(lead + (k, n), FLOAT, name="B")
        if batch:
            packed = te.compute((batch, n // nr, k, nr),
                                lambda p, jo, r, ji: b[p, r, jo * nr + ji], name="packed")
        else:
            packed = te.compute((n // nr, k, nr), lambda jo, r, ji: b[r, jo * nr + ji],
                                name="packed")
        r = te.reduce_axis((0, k), name="r")
        if batch:
            c = te.compute((batch, m, n), lambda p, i, j: te.sum(
                a[p, i, r] * packed[p, j // nr, r, j % nr], axis=r), name="C")
        else:
            c = te.compute((m, n), lambda i, j: te.sum(
                a[i, r] * packed[j // nr, r, j % nr], axis=r), name="C")
        sch = _schedule(a, b, c)

        block = sch.get_sblock("C")
        *outer, i, j, kk = sch.get_loops(block)
        i0, i1, i2 = sch.split(i, [None, mc // mr, mr])
        j0, j1, j2 = sch.split(j, [None, nc // nr, nr])
        k0, k1 = sch.split(kk, [None, kc])
        sch.reorder(i0, j0, k0, j1, i1, k1, i2, j2)
        local = sch.cache_write(block, 0, "local")
        sch.reverse_compute_at(local, j0)
        sch.vectorize(sch.get_loops(local)[-1])
        sch.parallel(sch.fuse(*outer, i0, j0))
        sch.unroll(i2)
        sch.vectorize(j2)
        sch.decompose_reduction(block, k0)

        pack = sch.get_sblock("packed")
        *pack_outer, _, lanes = sch.get_loops(pack)
        sch.parallel(sch.fuse(*pack_outer))
        sch.vectorize(lanes)
        return sch

    return build


def _matmul_factory(mr, nr, mc, nc, kc):
    """A factory for plain matmul (M x K @ K x N) with the given GEMM tiling."""
    def factory(inputs):
        a, b = inputs
        (m, k), (_, n) = a.shape, b.shape
        return _runner(_gemm(0, m, n, k, mr, nr, mc, nc, kc), inputs, (m, n),
                       _notes(MR=mr, NR=nr, MC=mc, NC=nc, KC=kc))
    return factory


def bmm_factory(inputs):
    """Batched matmul: the GEMM schedule with the batch fused into the parallel loop."""
    mr, nr, mc, nc, kc = 8, 32, 32, 256, 128
    a, b = inputs
    batch, m, k = a.shape
    n = b.shape[2]
    return _runner(_gemm(batch, m, n, k, mr, nr, mc, nc, kc), inputs, (batch, m, n),
                   _notes(MR=mr, NR=nr, MC=mc, NC=nc, KC=kc))


def conv2d_factory(inputs, kb: int = 16, wb: int = 8):
    """3x3 NCHW convolution, stride 1, padding 1, direct.

    The weights are packed by the kernel to [K/kb, C, 3, 3, kb] and the input
    is zero-padded by a stage of its own. Each task of the parallel
    (k-block, row) loop computes a row of kb-output-channel x wb-pixel
    register tiles (output channels vectorised, pixels unrolled), accumulated
    in a local tile laid out channel-innermost and stored back as NCHW.
    """
    data, weight = inputs
    n, c, h, w = data.shape
    kout = weight.shape[0]

    def build():
        x = te.placeholder((n, c, h, w), FLOAT, name="data")
        wt = te.placeholder((kout, c, 3, 3), FLOAT, name="weight")
        padded = te.compute(
            (n, c, h + 2, w + 2),
            lambda b, ch, y, xx: te.if_then_else(
                tvm.tirx.all(y >= 1, y <= h, xx >= 1, xx <= w),
                x[b, ch, y - 1, xx - 1], tvm.tirx.const(0.0, FLOAT)),
            name="padded")
        packed = te.compute((kout // kb, c, 3, 3, kb),
                            lambda ko, ch, ry, rx, ki: wt[ko * kb + ki, ch, ry, rx],
                            name="packed")
        rc = te.reduce_axis((0, c), name="rc")
        ry = te.reduce_axis((0, 3), name="ry")
        rx = te.reduce_axis((0, 3), name="rx")
        out = te.compute(
            (n, kout, h, w),
            lambda b, k, y, xx: te.sum(padded[b, rc, y + ry, xx + rx]
                                       * packed[k // kb, rc, ry, rx, k % kb],
                                       axis=[rc, ry, rx]),
            name="conv")
        sch = _schedule(x, wt, out)

        block = sch.get_sblock("conv")
        bl, kl, yl, xl, rcl, ryl, rxl = sch.get_loops(block)
        ko, ki = sch.split(kl, [None, kb])
        xo, xi = sch.split(xl, [None, wb])
        sch.reorder(bl, ko, yl, xo, rcl, ryl, rxl, xi, ki)
        local = sch.cache_write(block, 0, "local")
        sch.reverse_compute_at(local, xo)
        sch.transform_layout(block, ("write", 0),
                             lambda b, k, y, xx: (b, k // kb, y, xx, k % kb))
        sch.parallel(sch.fuse(bl, ko, yl))
        sch.unroll(xi)
        sch.vectorize(ki)
        sch.decompose_reduction(block, rcl)

        pad = sch.get_sblock("padded")
        pb, pc, *_ = sch.get_loops(pad)
        sch.parallel(sch.fuse(pb, pc))
        pack = sch.get_sblock("packed")
        sch.parallel(sch.get_loops(pack)[0])
        return sch

    return _runner(build, inputs, (n, kout, h, w), _notes(KB=kb, WB=wb))


# --- memory-bound cases --------------------------------------------------------------------

def rowsum_factory(inputs, vl: int = 32):
    """Row sums: each row accumulates `vl` lanes (rfactor), folded at the row's end."""
    (a,) = inputs
    rows, cols = a.shape

    def build():
        x = te.placeholder((rows, cols), FLOAT, name="A")
        r = te.reduce_axis((0, cols), name="r")
        s = te.compute((rows,), lambda i: te.sum(x[i, r], axis=r), name="rowsum")
        sch = _schedule(x, s)
        rf, final = _row_reduce(sch, "rowsum", vl)
        row = sch.get_loops(rf)[0]
        sch.reverse_compute_at(final, row)
        sch.parallel(row)
        _vectorize_rf(sch, rf)
        return sch

    return _runner(build, inputs, (rows,), _notes(VL=vl))


def fullsum_factory(inputs, ch: int = 16, vl: int = 64):
    """Sum of all elements in two stages.

    Stage one (parallel) splits the rows into `ch` chunks and sums each chunk
    into `vl` vector lanes; stage two folds the ch x vl partial sums.
    """
    (a,) = inputs
    rows, cols = a.shape
    chunk = rows // ch

    def build():
        x = te.placeholder((rows, cols), FLOAT, name="A")
        rr = te.reduce_axis((0, chunk), name="rr")
        rq = te.reduce_axis((0, cols // vl), name="rq")
        partial = te.compute(
            (ch, vl), lambda p, v: te.sum(x[p * chunk + rr, rq * vl + v], axis=[rr, rq]),
            name="partial")
        rp = te.reduce_axis((0, ch), name="rp")
        rv = te.reduce_axis((0, vl), name="rv")
        total = te.compute((1,), lambda _: te.sum(partial[rp, rv], axis=[rp, rv]),
                           name="total")
        sch = _schedule(x, total)
        block = sch.get_sblock("partial")
        p, v, rrl, rql = sch.get_loops(block)
        sch.reorder(p, rrl, rql, v)
        sch.parallel(p)
        sch.vectorize(v)
        init = sch.decompose_reduction(block, rrl)
        sch.vectorize(sch.get_loops(init)[-1])
        return sch

    return _runner(build, inputs, (1,), _notes(CH=ch, VL=vl))


def softmax_factory(inputs, vl: int = 16):
    """Row softmax, one row per iteration of a parallel loop.

    The row's max and sum are rfactor'd over `vl` vector lanes; exp(x - max)
    (TOPI's fast_exp) goes to a row-sized scratch buffer that the sum and the
    final scaling (by the sum's reciprocal) read.
    """
    (a,) = inputs
    rows, cols = a.shape

    def build():
        x = te.placeholder((rows, cols), FLOAT, name="x")
        r1 = te.reduce_axis((0, cols), name="r1")
        mx = te.compute((rows,), lambda i: te.max(x[i, r1], axis=r1), name="rowmax")
        shifted = te.compute((rows, cols), lambda i, j: x[i, j] - mx[i], name="shifted")
        e = topi.fast_exp(shifted)
        r2 = te.reduce_axis((0, cols), name="r2")
        s = te.compute((rows,), lambda i: te.sum(e[i, r2], axis=r2), name="rowsum")
        inv = te.compute((rows,), lambda i: tvm.tirx.const(1.0, FLOAT) / s[i], name="inv")
        y = te.compute((rows, cols), lambda i, j: e[i, j] * inv[i], name="softmax")
        sch = _schedule(x, y)

        sch.compute_inline(sch.get_sblock("shifted"))
        out = sch.get_sblock("softmax")
        row, col = sch.get_loops(out)
        max_rf, max_final = _row_reduce(sch, "rowmax", vl)
        sum_rf, sum_final = _row_reduce(sch, "rowsum", vl)
        exp_block = sch.get_producers(sum_rf)[0]
        # Consumers first: each block moves in front of its first consumer in the row.
        for block in (sch.get_sblock("inv"), sum_final, sum_rf, exp_block, max_final, max_rf):
            sch.compute_at(block, row)
        sch.vectorize(sch.split(sch.get_loops(exp_block)[-1], [None, vl])[1])
        sch.vectorize(sch.split(col, [None, vl])[1])
        sch.parallel(row)
        _vectorize_rf(sch, max_rf)
        _vectorize_rf(sch, sum_rf)
        return sch

    return _runner(build, inputs, (rows, cols), _notes(VL=vl))


def fused_ew_factory(inputs, vl: int = 16):
    """max(a*b + c, 0) in one parallel, vectorised loop."""
    size = inputs[0].shape[0]

    def build():
        a, b, c = (te.placeholder((size,), FLOAT, name=nm) for nm in "abc")
        y = te.compute((size,), lambda i: te.max(a[i] * b[i] + c[i], tvm.tirx.const(0.0, FLOAT)),
                       name="y")
        sch = _schedule(a, b, c, y)
        (i,) = sch.get_loops(sch.get_sblock("y"))
        outer, lanes = sch.split(i, [None, vl])
        sch.parallel(outer)
        sch.vectorize(lanes)
        return sch

    return _runner(build, inputs, (size,), _notes(VL=vl))


def layernorm_factory(inputs, vl: int = 16):
    """Layer norm over the last axis, one row per iteration of a parallel loop.

    Per row: the sum and then the sum of squared deviations (both rfactor'd
    over `vl` lanes), then y = (x - mean) * rstd * gamma + beta, vectorised.
    The row stays in cache between its three passes.
    """
    rows, cols = inputs[0].shape

    def build():
        x = te.placeholder((rows, cols), FLOAT, name="x")
        gamma = te.placeholder((cols,), FLOAT, name="gamma")
        beta = te.placeholder((cols,), FLOAT, name="beta")
        inv_n = tvm.tirx.const(1.0 / cols, FLOAT)
        r1 = te.reduce_axis((0, cols), name="r1")
        total = te.compute((rows,), lambda i: te.sum(x[i, r1], axis=r1), name="rowsum")
        mean = te.compute((rows,), lambda i: total[i] * inv_n, name="mean")
        r2 = te.reduce_axis((0, cols), name="r2")
        sq = te.compute((rows,), lambda i: te.sum(
            (x[i, r2] - mean[i]) * (x[i, r2] - mean[i]), axis=r2), name="sqdev")
        rstd = te.compute((rows,), lambda i: tvm.tirx.const(1.0, FLOAT) / te.sqrt(
            sq[i] * inv_n + tvm.tirx.const(LAYERNORM_EPS, FLOAT)), name="rstd")
        y = te.compute((rows, cols), lambda i, j: (x[i, j] - mean[i]) * rstd[i] * gamma[j]
                       + beta[j], name="layernorm")
        sch = _schedule(x, gamma, beta, y)

        out = sch.get_sblock("layernorm")
        row, col = sch.get_loops(out)
        sum_rf, sum_final = _row_reduce(sch, "rowsum", vl)
        sq_rf, sq_final = _row_reduce(sch, "sqdev", vl)
        # Consumers first: each block moves in front of its first consumer in the row.
        for block in (sch.get_sblock("rstd"), sq_final, sq_rf, sch.get_sblock("mean"),
                      sum_final, sum_rf):
            sch.compute_at(block, row)
        sch.vectorize(sch.split(col, [None, vl])[1])
        sch.parallel(row)
        _vectorize_rf(sch, sum_rf)
        _vectorize_rf(sch, sq_rf)
        return sch

    return _runner(build, inputs, (rows, cols), _notes(VL=vl))


FACTORIES = {
    "matmul1024": _matmul_factory(mr=8, nr=32, mc=128, nc=64, kc=512),
    "matmul512": _matmul_factory(mr=4, nr=64, mc=64, nc=64, kc=128),
    "matmul_skinny": _matmul_factory(mr=4, nr=64, mc=32, nc=64, kc=128),
    "bmm": bmm_factory,
    "conv2d": conv2d_factory,
    "rowsum": rowsum_factory,
    "fullsum": fullsum_factory,
    "softmax": softmax_factory,
    "fused_ew": fused_ew_factory,
    "layernorm": layernorm_factory,
}


def _check(names=None, calls: int = 5) -> None:
    """Build each case, check it against its reference, print a short median timing."""
    from bench.cases import CASES, relative_error

    for case in CASES:
        if names and case.name not in names:
            continue
        inputs = case.inputs()
        try:
            runner = FACTORIES[case.name](inputs)
        except Exception as exc:  # report and go on with the other cases
            print(f"{case.name:14s} FAILED to build: {type(exc).__name__}: {exc}")
            continue
        runner.run()
        err = relative_error(runner.result(),
                             case.reference(*[x.astype(np.float64) for x in inputs]))
        times = []
        for _ in range(calls):
            start = time.perf_counter()
            runner.run()
            times.append(time.perf_counter() - start)
        seconds = float(np.median(times))
        status = "ok" if err <= case.rtol else "WRONG"
        print(f"{case.name:14s} {status:5s} err={err:.1e} build={runner.build_seconds:5.2f}s "
              f"{seconds * 1e3:8.3f} ms {case.rate(seconds):7.1f} {case.unit} "
              f"(best {case.rate(min(times)):.1f})  {runner.notes}")


if __name__ == "__main__":
    import sys

    _check(sys.argv[1:] or None)
