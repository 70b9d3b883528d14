"""Extern stages and packed functions (`tex.extern`, `tex.call_packed`, `tex.register_func`):
kernels that call Python functions by name, compiled and compared with NumPy.

The registry is one per process, so each test registers its functions under names
of its own ("test_extern.<test>...").
"""
import json
import os
import pathlib
import subprocess
import sys
import threading

import numpy as np
import pytest

import tex
from checks import check, random_array

TESTS = pathlib.Path(__file__).resolve().parent


def add_one_program(name: str):
    """B = the packed function `name` applied to A (into B); C = B * 2, scheduled."""
    n = tex.var("n")
    A = tex.placeholder((n,), "float32", name="A")
    B = tex.extern(A.shape, [A], lambda ins, outs: tex.call_packed(name, ins[0], outs[0]),
                   name="B")
    C = tex.compute((n,), lambda i: B[i] * 2, name="C")
    s = tex.create_schedule(C.op)
    outer, inner = s[C].split(C.op.axis[0], factor=8)
    s[C].vectorize(inner)
    return s, A, B, C


def register_add_one(name: str):
    @tex.register_func(name, override=True)
    def add_one(x, y):
        y[:] = x + 1


def test_add_one_with_a_symbolic_size_and_a_scheduled_consumer():
    register_add_one("test_extern.add_one")
    s, A, B, C = add_one_program("test_extern.add_one")
    for size in (37, 8, 1):
        a = random_array((size,))
        check(s, [A, C], [a], (a + 1) * 2)


def test_the_printed_loop_program_shows_the_call():
    s, A, B, C = add_one_program("test_extern.printed")
    text = str(tex.lower(s, [A, C]))
    lines = [line.strip() for line in text.splitlines()]
    assert "B = allocate(float32[n], 'global')" in lines
    assert "call_packed('test_extern.printed', A, B)" in lines
    assert lines.index("call_packed('test_extern.printed', A, B)") < \
        next(k for k, line in enumerate(lines) if line.startswith("for i_outer"))
    assert "stage B:\n  extern: runs its statement at the root" in str(s)


def test_an_extern_output_that_is_a_kernel_argument():
    register_add_one("test_extern.argument")
    s, A, B, C = add_one_program("test_extern.argument")
    a = random_array((29,))
    b, c = tex.build(s, [A, B, C])(a)
    np.testing.assert_allclose(b, a + 1, rtol=1e-6)
    np.testing.assert_allclose(c, (a + 1) * 2, rtol=1e-6)
    only = tex.build(tex.create_schedule(B.op), [A, B])  # the extern stage alone
    np.testing.assert_allclose(only(a), a + 1, rtol=1e-6)


def test_an_extern_between_two_computes():
    @tex.register_func("test_extern.cumsum")
    def cumsum(x, y):
        np.cumsum(x, axis=1, out=y)

    n, m = tex.var("n"), tex.var("m")
    A = tex.placeholder((n, m), "float32", name="A")
    B = tex.compute((n, m), lambda i, j: A[i, j] * 2 + 1, name="B")
    S = tex.extern((n, m), [B], lambda ins, outs: tex.call_packed("test_extern.cumsum", *ins,
                                                                  *outs), name="S")
    D = tex.compute((n, m), lambda i, j: S[i, j] - A[i, j], name="D")
    s = tex.create_schedule(D.op)
    s[B].parallel(B.op.axis[0])
    jo, ji = s[D].split(D.op.axis[1], factor=4)
    s[D].parallel(D.op.axis[0])
    s[D].vectorize(ji)
    a = random_array((13, 21))
    check(s, [A, D], [a], np.cumsum(a * 2 + 1, axis=1) - a, rtol=1e-4, atol=1e-4)


def test_an_extern_calling_numpy_dot():
    @tex.register_func("test_extern.matmul")
    def matmul(a, b, c):
        np.dot(a, b, out=c)

    n = tex.var("n")
    A = tex.placeholder((n, 24), "float64", name="A")
    B = tex.placeholder((24, 17), "float64", name="B")
    C = tex.extern((n, 17), [A, B],
                   lambda ins, outs: tex.call_packed("test_extern.matmul", ins[0], ins[1],
                                                     outs[0]), name="C")
    assert C.shape[1].value == 17 and C.dtype == "float64"
    a, b = random_array((30, 24), "float64"), random_array((24, 17), "float64")
    check(tex.create_schedule(C.op), [A, B, C], [a, b], a @ b, rtol=1e-12)


def test_the_function_views_the_kernel_memory_without_copies():
    seen = {}

    @tex.register_func("test_extern.views")
    def views(x, y):
        seen.update(x=x.ctypes.data, y=y.ctypes.data, writeable=y.flags.writeable,
                    dtypes=(x.dtype, y.dtype), shapes=(x.shape, y.shape))
        y[...] = x.astype(np.float64).sum(axis=1, keepdims=True)

    A = tex.placeholder((5, 3), "int32", name="A")
    B = tex.extern((5, 1), [A], lambda ins, outs: tex.call_packed("test_extern.views", ins[0],
                                                                  outs[0]),
                   dtype="float64", name="B")
    f = tex.build(tex.create_schedule(B.op), [A, B])
    a, b = random_array((5, 3), "int32"), np.zeros((5, 1), "float64")
    f(a, b)
    np.testing.assert_array_equal(b, a.sum(axis=1, keepdims=True))
    assert seen == {"x": a.ctypes.data, "y": b.ctypes.data, "writeable": True,
                    "dtypes": (np.int32, np.float64), "shapes": ((5, 3), (5, 1))}


def test_the_function_gets_arrays_with_tvm_ndarray_methods():
    """TVM's packed functions call numpy(), copyto() and copyfrom() on their arguments, and
    fcompute may pass a buffer's `.data`."""
    @tex.register_func("test_extern.ndarray_methods", override=True)
    def add_one_then_double(x, y, z):
        tex.nd.array(x.numpy() + 1).copyto(y)
        z.copyfrom(y.asnumpy() * 2)

    n = tex.var("n")
    A = tex.placeholder((n,), name="A")
    B, C = tex.extern([A.shape, A.shape], [A], lambda ins, outs: tex.call_packed(
        "test_extern.ndarray_methods", ins[0].data, outs[0].data, outs[1]), name="BC")
    a = random_array((13,))
    check(tex.create_schedule(B.op), [A, B, C], [a], [a + 1, (a + 1) * 2])


def test_extern_buffers_vload_and_vstore():
    A = tex.placeholder((4, 3), "int32", name="A")
    B = tex.extern((2,), [A], lambda ins, outs: [
        outs[0].vstore(0, ins[0].vload((1, 2)) * 3),
        outs[0].vstore((1,), ins[0].vload([3, 0], "int32") + ins[0].vload((0, 1)))],
        name="B", dtype="int32")
    a = random_array((4, 3), "int32")
    check(tex.create_schedule(B.op), [A, B], [a], np.array([a[1, 2] * 3, a[3, 0] + a[0, 1]]))
    with pytest.raises(tex.ExprError, match="vload of A: its elements are int32, not float32"):
        tex.extern((2,), [A], lambda ins, outs: outs[0].vstore(0, ins[0].vload(0, "float32")))


def test_scalar_arguments_arrive_as_python_numbers():
    got = []

    @tex.register_func("test_extern.scale")
    def scale(x, count, factor, flag, y):
        got.append((count, type(count), factor, type(factor), flag))
        y[:] = x * factor + count

    n = tex.var("n")
    A = tex.placeholder((n,), "float32", name="A")
    B = tex.extern((n,), [A], lambda ins, outs: tex.call_packed("test_extern.scale", ins[0],
                                                                n * 2, 0.1, False, outs[0]),
                   name="B")
    a = random_array((11,))
    check(tex.create_schedule(B.op), [A, B], [a], a * np.float32(0.1) + 22, rtol=1e-6)
    assert got == [(22, int, 0.1, float, False)] and got[0][4] is False
    assert "call_packed('test_extern.scale', A, n * 2, 0.1, False, B)" in str(
        tex.lower(tex.create_schedule(B.op), [A, B]))


def test_an_extern_with_several_outputs():
    @tex.register_func("test_extern.split_halves")
    def split_halves(x, low, pairs):
        low[:] = x.min(axis=1)
        pairs[:, 0], pairs[:, 1] = x.argmin(axis=1), x.argmax(axis=1)

    n = tex.var("n")
    A = tex.placeholder((n, 6), "float32", name="A")
    low, pairs = tex.extern([(n,), (n, 2)], [A],
                            lambda ins, outs: tex.call_packed("test_extern.split_halves",
                                                              ins[0], *outs),
                            dtype=["float32", "int64"], name="E")
    assert (low.name, pairs.name, pairs.dtype, len(pairs.shape)) == ("E_v0", "E_v1", "int64", 2)
    D = tex.compute((n,), lambda i: low[i] + tex.cast("float32", pairs[i, 1] - pairs[i, 0]),
                    name="D")
    a = random_array((9, 6))
    expected = a.min(axis=1) + (a.argmax(axis=1) - a.argmin(axis=1)).astype("float32")
    check(tex.create_schedule(D.op), [A, D], [a], expected)


def test_an_unregistered_name_raises_when_the_kernel_runs():
    s, A, B, C = add_one_program("test_extern.registered_later")
    f = tex.build(s, [A, C])  # building needs no function
    a = random_array((10,))
    with pytest.raises(tex.PackedFuncError, match=r"'test_extern.registered_later', which is "
                                                  r"not registered; register it with"):
        f(a)
    register_add_one("test_extern.registered_later")  # looked up at each call
    np.testing.assert_allclose(f(a), (a + 1) * 2, rtol=1e-6)


def test_a_function_that_raises_is_the_cause_of_the_kernel_error():
    calls = []

    @tex.register_func("test_extern.raises")
    def raises(x, y):
        calls.append(len(x))
        if len(x) > 4:
            raise ValueError(f"{len(x)} elements are too many")
        y[:] = x + 1

    s, A, B, C = add_one_program("test_extern.raises")
    f = tex.build(s, [A, C])
    with pytest.raises(tex.PackedFuncError, match="'test_extern.raises' raised ValueError: "
                                                  "9 elements are too many") as info:
        f(random_array((9,)))
    assert isinstance(info.value.__cause__, ValueError) and calls == [9]
    a = random_array((3,))
    np.testing.assert_allclose(f(a), (a + 1) * 2, rtol=1e-6)  # the next call is clean


def test_an_interrupt_in_the_function_is_raised_as_it_is():
    @tex.register_func("test_extern.interrupted")
    def interrupted(x, y):
        raise KeyboardInterrupt

    s, A, B, C = add_one_program("test_extern.interrupted")
    with pytest.raises(KeyboardInterrupt):
        tex.build(s, [A, C])(random_array((4,)))


def test_register_func_refuses_duplicates_unless_told_to_override():
    def first(x, y):
        y[:] = x + 1

    assert tex.register_func("test_extern.twice", first) is first
    with pytest.raises(tex.PackedFuncError, match="'test_extern.twice' is registered "
                                                  "already; pass override=True"):
        tex.register_func("test_extern.twice", lambda x, y: None)
    s, A, B, C = add_one_program("test_extern.twice")
    f = tex.build(s, [A, C])
    a = random_array((6,))
    np.testing.assert_allclose(f(a), (a + 1) * 2, rtol=1e-6)

    @tex.register_func("test_extern.twice", override=True)
    def second(x, y):
        y[:] = x - 1

    assert tex.get_global_func("test_extern.twice") is second
    np.testing.assert_allclose(f(a), (a - 1) * 2, rtol=1e-6)  # the built kernel calls it


def test_register_func_takes_the_function_name_and_get_global_func_finds_it():
    @tex.register_func
    def test_extern_by_its_name(x, y):
        y[:] = -x

    assert tex.get_global_func("test_extern_by_its_name") is test_extern_by_its_name
    assert tex.get_global_func("test_extern.missing", allow_missing=True) is None
    with pytest.raises(tex.PackedFuncError, match="no packed function is registered as "
                                                  "'test_extern.missing'"):
        tex.get_global_func("test_extern.missing")
    with pytest.raises(tex.PackedFuncError, match="the name must be a non-empty string"):
        tex.register_func("", lambda: None)
    with pytest.raises(tex.PackedFuncError, match="expected a function, got int"):
        tex.register_func("test_extern.not_callable", 3)


def test_the_call_runs_on_the_calling_thread_beside_parallel_loops():
    threads = []

    @tex.register_func("test_extern.thread")
    def record_thread(x, y):
        threads.append(threading.get_ident())
        y[:] = x * 3

    n = tex.var("n")
    A = tex.placeholder((n, 64), "float32", name="A")
    P = tex.compute((n, 64), lambda i, j: A[i, j] + 1, name="P")
    B = tex.extern(P.shape, [P], lambda ins, outs: tex.call_packed("test_extern.thread",
                                                                   ins[0], outs[0]), name="B")
    C = tex.compute((n, 64), lambda i, j: B[i, j] - 1, name="C")
    s = tex.create_schedule(C.op)
    s[P].parallel(P.op.axis[0])
    s[C].parallel(C.op.axis[0])
    a = random_array((40, 64))
    check(s, [A, C], [a], (a + 1) * 3 - 1)
    assert threads == [threading.get_ident()]


def test_primitives_on_an_extern_stage_raise_schedule_errors():
    s, A, B, C = add_one_program("test_extern.primitives")
    s[B].compute_root()  # the one that applies
    axis = C.op.axis[0]
    for primitive, args in [("split", (axis, 4)), ("parallel", (axis,)), ("vectorize", (axis,)),
                            ("fuse", ()), ("compute_inline", ()), ("set_scope", ("local",)),
                            ("compute_at", (s[C], s[C].leaf_iter_vars[0]))]:
        with pytest.raises(tex.ScheduleError, match=f"{primitive} on stage B: it is an extern "
                                                    "stage"):
            getattr(s[B], primitive)(*args)
    with pytest.raises(tex.ScheduleError, match="cache_write on stage B: it is an extern"):
        s.cache_write(B, "local")
    with pytest.raises(tex.ScheduleError, match=r"cache_read \(as a reader\) on stage B"):
        s.cache_read(A, "local", [s[B]])
    copy = s.cache_read(B, "local", [s[C]])  # readers of an extern output are free
    s[copy].compute_at(s[C], s[C].leaf_iter_vars[0])
    register_add_one("test_extern.primitives")
    a = random_array((21,))
    check(s, [A, C], [a], (a + 1) * 2)


def test_inputs_of_an_extern_stage_must_be_in_memory():
    n = tex.var("n")
    A = tex.placeholder((n,), "float32", name="A")
    P = tex.compute((n,), lambda i: A[i] * 2, name="P")
    B = tex.extern(P.shape, [P], lambda ins, outs: tex.call_packed("test_extern.memory",
                                                                   ins[0], outs[0]), name="B")
    C = tex.compute((n,), lambda i: B[i] + P[i], name="C")
    s = tex.create_schedule(C.op)
    s[P].compute_inline()
    with pytest.raises(tex.LoweringError, match="stage P is inlined, but the extern stage B "
                                                "reads it whole"):
        tex.lower(s, [A, C])
    s = tex.create_schedule(C.op)
    s[P].compute_at(s[C], C.op.axis[0])
    with pytest.raises(tex.LoweringError, match="stage B also reads P but runs outside"):
        tex.lower(s, [A, C])
    with pytest.raises(tex.ScheduleError, match="compute_at: stage B is an extern stage"):
        s[P].compute_at(s[B], C.op.axis[0])


def test_declaration_errors_name_what_was_expected():
    A = tex.placeholder((4,), "float32", name="A")
    with pytest.raises(tex.ExprError, match="fcompute must return a statement such as "
                                            r"tex.call_packed\(...\), got int"):
        tex.extern((4,), [A], lambda ins, outs: 3, name="B")
    with pytest.raises(tex.ExprError, match="argument 0 is the tensor A; pass the buffer"):
        tex.extern((4,), [A], lambda ins, outs: tex.call_packed("f", A, outs[0]))
    with pytest.raises(tex.ExprError, match="argument 1 must be a buffer, a number or a "
                                            "scalar expression, got str"):
        tex.extern((4,), [A], lambda ins, outs: tex.call_packed("f", ins[0], "x"))
    with pytest.raises(tex.ExprError, match="argument 0 must be a scalar that reads no tensor"):
        tex.extern((4,), [A], lambda ins, outs: tex.call_packed("f", A[0], outs[0]))
    with pytest.raises(tex.ExprError, match="the first argument is the registered name"):
        tex.call_packed(None)
    with pytest.raises(tex.ExprError, match="2 output shape"):
        tex.extern([(4,), (4,)], [A], lambda ins, outs: tex.call_packed("f"),
                   dtype=["float32"])
    with pytest.raises(tex.ExprError, match="input 0 must be a tensor"):
        tex.extern((4,), [np.zeros(4)], lambda ins, outs: tex.call_packed("f"))
    with pytest.raises(tex.ExprError, match="leave in_buffers and out_buffers out"):
        tex.extern((4,), [A], lambda ins, outs: tex.call_packed("f"), in_buffers=[None])
    other = tex.extern((4,), [A], lambda ins, outs: tex.call_packed("f", outs[0]))
    stolen = other.op.output_placeholders[0]
    with pytest.raises(tex.ExprError, match="uses buffer extern, which is none of the buffers"):
        tex.extern((4,), [A], lambda ins, outs: tex.call_packed("f", stolen), name="B")


def test_kernels_with_packed_calls_build_for_cpus_only_and_do_not_export(tmp_path):
    register_add_one("test_extern.export")
    s, A, B, C = add_one_program("test_extern.export")
    with pytest.raises(tex.BuildError, match="stage B is an extern stage.*target='llvm'"):
        tex.build(s, [A, C], target="cuda")
    with pytest.raises(tex.BuildError, match="stage B is an extern stage"):
        tex.lower(s, [A, C], target="cuda")
    f = tex.build(s, [A, C], name="add_one_twice")
    with pytest.raises(tex.ArgumentError, match=r"kernel #0 \(add_one_twice\) calls Python "
                                                "functions"):
        tex.export_library([f], tmp_path / "ops.so")


def child_build():
    """What a child process runs: register, build, check, report as JSON on stdout."""
    register_add_one("test_extern.disk")
    s, A, B, C = add_one_program("test_extern.disk")
    f = tex.build(s, [A, C])
    a = random_array((19,))
    print(json.dumps({"from_disk": f.loaded_from_disk,
                      "correct": bool(np.allclose(f(a), (a + 1) * 2))}))


def test_a_kernel_with_a_packed_call_loads_from_the_disk_cache(cache_dir):
    register_add_one("test_extern.disk")
    s, A, B, C = add_one_program("test_extern.disk")
    first = tex.build(s, [A, C])
    assert not first.loaded_from_disk
    env = dict(os.environ, TEX_CACHE_DIR=str(cache_dir),
               PYTHONPATH=os.pathsep.join(filter(None, [str(TESTS.parent),
                                                        os.environ.get("PYTHONPATH")])))
    code = f"import sys; sys.path.insert(0, {str(TESTS)!r}); import test_extern as t; " \
           "t.child_build()"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {"from_disk": True,
                                                               "correct": True}
