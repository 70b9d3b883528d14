"""Every illegal schedule or call raises a TexError subclass naming what is wrong."""
import numpy as np
import pytest

import tex


def two_stages(n=37):
    A = tex.placeholder((n, 16), name="A")
    B = tex.compute((n, 16), lambda i, j: A[i, j] + 1.0, name="B")
    k = tex.reduce_axis((0, 16), name="k")
    C = tex.compute((n,), lambda i: tex.sum(B[i, k], axis=k), name="C")
    return A, B, C, k


def raises(error, *fragments):
    """Context manager: `error` is raised and its message contains every fragment."""
    class _Check:
        def __enter__(self):
            self.ctx = pytest.raises(error)
            self.info = self.ctx.__enter__()

        def __exit__(self, *exc):
            handled = self.ctx.__exit__(*exc)
            message = str(self.info.value)
            for fragment in fragments:
                assert fragment in message, f"{fragment!r} not in {message!r}"
            assert isinstance(self.info.value, tex.TexError)
            return handled
    return _Check()


def test_split_axis_of_another_stage():
    A, B, C, k = two_stages()
    s = tex.create_schedule(C.op)
    with raises(tex.ScheduleError, "stage C", "axis i", "belongs to stage B"):
        s[C].split(B.op.axis[0], factor=4)


def test_split_axis_already_split():
    A, B, C, k = two_stages()
    s = tex.create_schedule(C.op)
    s[C].split(k, factor=4)
    with raises(tex.ScheduleError, "stage C", "axis k", "split or fused"):
        s[C].split(k, factor=2)


@pytest.mark.parametrize("kwargs,fragment", [
    ({}, "exactly one"), ({"factor": 2, "nparts": 2}, "exactly one"),
    ({"factor": 0}, "factor"), ({"nparts": -1}, "nparts"), ({"factor": 2.5}, "factor")])
def test_split_bad_factor(kwargs, fragment):
    A, B, C, k = two_stages()
    s = tex.create_schedule(C.op)
    with raises(tex.ScheduleError, "stage C", fragment):
        s[C].split(C.op.axis[0], **kwargs)


def test_fuse_non_adjacent():
    A = tex.placeholder((4, 5, 6), name="A")
    B = tex.compute((4, 5, 6), lambda i, j, l: A[i, j, l] * 2.0, name="B")
    s = tex.create_schedule(B.op)
    i, j, l = B.op.axis
    with raises(tex.ScheduleError, "stage B", "i and l", "not adjacent"):
        s[B].fuse(i, l)
    with raises(tex.ScheduleError, "stage B", "not adjacent"):
        s[B].fuse(j, i)
    assert s[B].fuse(j) is j  # one axis fuses to itself


def test_rfactor_of_a_data_axis_fused_with_a_reduce_axis():
    A, B, C, k = two_stages()
    s = tex.create_schedule(C.op)
    fused = s[C].fuse(C.op.axis[0], k)
    with raises(tex.ScheduleError, "rfactor on stage C", "axis i_k_fused", "data axis and "
                "reduction axis"):
        s.rfactor(C, fused)


def test_reorder_with_duplicates():
    A, B, C, k = two_stages()
    s = tex.create_schedule(B.op)
    i, j = B.op.axis
    with raises(tex.ScheduleError, "stage B", "axis i", "twice"):
        s[B].reorder(i, j, i)


def test_vectorize_symbolic_extent():
    n = tex.var("n")
    A, B, C, k = two_stages(n)
    s = tex.create_schedule(C.op)
    s[B].vectorize(B.op.axis[0])
    with raises(tex.LoweringError, "vectorize", "stage B", "axis i", "constant", "n"):
        tex.lower(s, [A, C])


def test_unroll_symbolic_extent():
    n = tex.var("n")
    A, B, C, k = two_stages(n)
    s = tex.create_schedule(C.op)
    s[C].unroll(C.op.axis[0])
    with raises(tex.LoweringError, "unroll", "stage C", "axis i", "constant"):
        tex.lower(s, [A, C])


def test_parallel_reduction_axis():
    A, B, C, k = two_stages()
    s = tex.create_schedule(C.op)
    with raises(tex.ScheduleError, "parallel", "stage C", "axis k", "reduction"):
        s[C].parallel(k)


def test_conflicting_annotations():
    A, B, C, k = two_stages()
    s = tex.create_schedule(B.op)
    s[B].vectorize(B.op.axis[1])
    with raises(tex.ScheduleError, "stage B", "axis j", "already marked vectorize"):
        s[B].unroll(B.op.axis[1])


def test_compute_at_non_consumer():
    A = tex.placeholder((8,), name="A")
    B = tex.compute((8,), lambda i: A[i] + 1.0, name="B")
    C = tex.compute((8,), lambda i: A[i] * 2.0, name="C")
    D = tex.compute((8,), lambda i: B[i] * 3.0, name="D")
    E = tex.compute((8,), lambda i: C[i] * 3.0, name="E")
    s = tex.create_schedule([D.op, E.op])
    s[C].compute_at(s[D], D.op.axis[0])  # recorded, as in TE; refused when lowering
    with raises(tex.LoweringError, "stage C", "stage D does not use C"):
        tex.lower(s, [A, D, E])


def test_compute_at_self_and_output():
    A, B, C, k = two_stages()
    s = tex.create_schedule(C.op)
    s[B].compute_at(s[B], B.op.axis[0])
    with raises(tex.LoweringError, "stage B", "inside itself"):
        tex.lower(s, [A, C])
    s[B].compute_root()
    s[C].compute_at(s[B], B.op.axis[0])
    with raises(tex.LoweringError, "stage C", "output"):
        tex.lower(s, [A, C])


def test_compute_at_each_other():
    """Two stages computed at each other's loops: a cycle, refused when lowering (in TE
    too), and never followed round forever."""
    A = tex.compute((16, 16), lambda i, j: 1.0, name="A")
    B = tex.compute((16, 16), lambda i, j: 2.0, name="B")
    C = tex.compute((16, 16), lambda i, j: A[i, j] + B[i, j], name="C")
    D = tex.compute((16, 16), lambda i, j: C[i, j] * 2.0, name="D")
    s = tex.create_schedule(D.op)
    s[A].compute_at(s[C], C.op.axis[0])
    s[C].compute_at(s[A], A.op.axis[0])
    with raises(tex.LoweringError, "compute_at of stage C", "stage A does not use C"):
        tex.lower(s, [D])


def test_compute_at_axis_of_the_wrong_stage():
    A, B, C, k = two_stages()
    s = tex.create_schedule(C.op)
    with raises(tex.ScheduleError, "compute_at", "axis j", "belongs to stage B"):
        s[B].compute_at(s[C], B.op.axis[1])


def test_compute_at_with_a_consumer_outside_the_loop():
    A = tex.placeholder((8,), name="A")
    B = tex.compute((8,), lambda i: A[i] + 1.0, name="B")
    C = tex.compute((8,), lambda i: B[i] * 2.0, name="C")
    D = tex.compute((8,), lambda i: B[i] + C[i], name="D")
    s = tex.create_schedule(D.op)
    s[B].compute_at(s[C], C.op.axis[0])
    with raises(tex.LoweringError, "stage B", "stage D", "outside"):
        tex.lower(s, [A, D])


def test_compute_at_an_axis_that_is_gone():
    A, B, C, k = two_stages()
    s = tex.create_schedule(C.op)
    ko, ki = s[C].split(k, factor=4)
    s[B].compute_at(s[C], ki)
    s.rfactor(C, ko)  # C's reduction loops are now ko's partial sums: ki is gone
    with raises(tex.LoweringError, "stage B", "axis k_inner", "no longer a loop"):
        tex.lower(s, [A, C])


def test_inline_output_and_reduction():
    A, B, C, k = two_stages()
    D = tex.compute((37,), lambda i: C[i] * 2.0, name="D")
    s = tex.create_schedule(D.op)
    with raises(tex.ScheduleError, "stage D", "output"):
        s[D].compute_inline()
    with raises(tex.ScheduleError, "stage C", "reduction"):
        s[C].compute_inline()


def test_placeholder_has_no_stage():
    A, B, C, k = two_stages()
    s = tex.create_schedule(C.op)
    with raises(tex.ScheduleError, "A", "placeholder"):
        s[A]


def test_cache_write_after_split_and_cache_read_of_non_reader():
    A, B, C, k = two_stages()
    s = tex.create_schedule(C.op)
    io, _ = s[C].split(C.op.axis[0], factor=4)
    s[B].compute_at(s[C], io)
    with raises(tex.ScheduleError, "cache_write of C", "stage B is computed at loop i_outer",
                "compute_at after cache_write"):
        s.cache_write(C, "local")
    with raises(tex.ScheduleError, "cache_read of A", "stage C does not read A"):
        s.cache_read(A, "local", [C])
    with raises(tex.ScheduleError, "scope"):
        s.cache_read(A, "shared_memory", [B])


def test_rfactor_errors():
    A, B, C, k = two_stages()
    s = tex.create_schedule(C.op)
    with raises(tex.ScheduleError, "rfactor", "stage B", "not a reduction"):
        s.rfactor(B, B.op.axis[0])
    with raises(tex.ScheduleError, "rfactor", "stage C", "data axis"):
        s.rfactor(C, C.op.axis[0])
    with raises(tex.ScheduleError, "rfactor", "factor_axis"):
        s.rfactor(C, k, factor_axis=5)


def test_storage_align_errors():
    A, B, C, k = two_stages()
    s = tex.create_schedule(C.op)
    with raises(tex.ScheduleError, "storage_align", "stage B", "offset"):
        s[B].storage_align(B.op.axis[0], 8, 9)
    io, ii = s[B].split(B.op.axis[0], factor=2)
    with raises(tex.ScheduleError, "storage_align", "stage B", "own data axes"):
        s[B].storage_align(io, 8, 1)


def test_prefetch_errors():
    A, B, C, k = two_stages()
    s = tex.create_schedule(C.op)
    with raises(tex.ScheduleError, "prefetch", "stage C", "expected a tensor", "str"):
        s[C].prefetch("A", C.op.axis[0])
    for offset in (0, -1, 1.5, True):
        with raises(tex.ScheduleError, "prefetch of A on stage C", "positive int",
                    repr(offset)):
            s[C].prefetch(A, C.op.axis[0], offset)
    s[B].vectorize(B.op.axis[1])
    with raises(tex.ScheduleError, "prefetch of A on stage B", "axis j is vectorized"):
        s[B].prefetch(A, B.op.axis[1])
    s[C].prefetch(A, C.op.axis[0])  # C reads B, not A
    with raises(tex.LoweringError, "prefetch on stage C", "axis i", "A is not read"):
        tex.lower(s, [A, C])
    s = tex.create_schedule(C.op)
    s[B].compute_at(s[C], C.op.axis[0])
    s[C].prefetch(B, C.op.axis[0])
    with raises(tex.LoweringError, "prefetch of B on stage C", "computed at a loop",
                "computed at the root"):
        tex.lower(s, [A, C])
    rows = tex.placeholder((8,), "int64", name="rows")
    D = tex.compute((8, 16), lambda i, j: A[rows[i], j], name="D")
    s = tex.create_schedule(D.op)
    s[D].prefetch(A, D.op.axis[0])
    with raises(tex.LoweringError, "prefetch on stage D", "every read of A", "gather"):
        tex.lower(s, [A, rows, D])


def test_prefetch_in_a_gpu_kernel_is_refused():
    A, B, C, k = two_stages()
    s = tex.create_schedule(C.op)
    s[B].compute_inline()
    i_outer, i_inner = s[C].split(C.op.axis[0], factor=8)
    s[C].bind(i_outer, tex.thread_axis("blockIdx.x"))
    s[C].bind(i_inner, tex.thread_axis("threadIdx.x"))
    s[C].prefetch(A, k)
    with raises(tex.LoweringError, "prefetch on stage C", "axis k", "GPU kernel", "CPU loops"):
        tex.lower(s, [A, C], target="cuda")


def test_bind_names_the_stage_the_axis_and_what_came():
    A, B, C, k = two_stages()
    s = tex.create_schedule(C.op)
    with raises(tex.ScheduleError, "bind on stage C", "axis i", "got 'blockIdx.w'"):
        s[C].bind(C.op.axis[0], "blockIdx.w")
    with raises(tex.ScheduleError, "bind on stage C", "axis j belongs to stage B"):
        s[C].bind(B.op.axis[1], tex.thread_axis("threadIdx.x"))


def test_missing_and_bad_build_arguments():
    A, B, C, k = two_stages()
    s = tex.create_schedule(C.op)
    with raises(tex.LoweringError, "output C", "missing"):
        tex.lower(s, [A])
    with raises(tex.LoweringError, "tensor A", "args"):
        tex.lower(s, [C])
    io, _ = s[C].split(C.op.axis[0], factor=8)
    s[B].compute_at(s[C], io)  # B's tile is guarded, stays in its buffer, and reads A
    with raises(tex.LoweringError, "tensor A", "args"):
        tex.lower(s, [C])
    with raises(tex.LoweringError, "argument 1", "tensor"):
        tex.lower(s, [A, "C"])
    with raises(tex.TexError, "schedule"):
        tex.lower(C, [A, C])


def test_unknown_target():
    A, B, C, k = two_stages()
    s = tex.create_schedule(C.op)
    with raises(tex.BuildError, "opencl"):
        tex.build(s, [A, C], target="opencl")


def test_symbolic_size_no_argument_defines():
    n, m = tex.var("n"), tex.var("m")
    A = tex.placeholder((n,), name="A")
    B = tex.compute((n,), lambda i: A[i] + tex.cast("float32", m), name="B")
    with raises(tex.LoweringError, "variable m", "shape"):
        tex.lower(tex.create_schedule(B.op), [A, B])


@pytest.fixture(scope="module")
def kernel():
    n = tex.var("n")
    A = tex.placeholder((n, 4), name="A")
    B = tex.placeholder((n,), "float64", name="B")
    C = tex.compute((n, 4), lambda i, j: A[i, j] * tex.cast("float32", B[i]), name="C")
    return tex.build(tex.create_schedule(C.op), [A, B, C])


class TestKernelCalls:
    def test_works(self, kernel):
        a, b = np.ones((3, 4), np.float32), np.arange(3.0)
        np.testing.assert_allclose(kernel(a, b), a * b[:, None])

    def test_wrong_count(self, kernel):
        with raises(tex.ArgumentError, "3", "2", "1"):
            kernel(np.ones((3, 4), np.float32))

    def test_wrong_dtype(self, kernel):
        with raises(tex.ArgumentError, "B", "float64", "float32"):
            kernel(np.ones((3, 4), np.float32), np.ones(3, np.float32))

    def test_wrong_rank(self, kernel):
        with raises(tex.ArgumentError, "A", "2", "1"):
            kernel(np.ones(12, np.float32), np.ones(3))

    def test_wrong_constant_dimension(self, kernel):
        with raises(tex.ArgumentError, "A", "4", "5"):
            kernel(np.ones((3, 5), np.float32), np.ones(3))

    def test_sizes_disagree(self, kernel):
        with raises(tex.ArgumentError, "n", "3", "2"):
            kernel(np.ones((3, 4), np.float32), np.ones(2))

    def test_non_contiguous(self, kernel):
        a = np.ones((3, 8), np.float32)[:, ::2]
        with raises(tex.ArgumentError, "A", "contiguous"):
            kernel(a, np.ones(3))

    def test_not_an_array(self, kernel):
        with raises(tex.ArgumentError, "A"):
            kernel([[1.0] * 4] * 3, np.ones(3))

    def test_output_shape_checked(self, kernel):
        with raises(tex.ArgumentError, "C"):
            kernel(np.ones((3, 4), np.float32), np.ones(3), np.empty((2, 4), np.float32))

    def test_unknown_source_format(self, kernel):
        with raises(tex.ArgumentError, "ptx"):
            kernel.get_source("ptx")


def test_vector_and_unroll_limits():
    """Beyond 1024 lanes or copies LLVM works for minutes or aborts the process."""
    A = tex.placeholder((70000,), name="A")
    B = tex.compute((70000,), lambda i: A[i] + 1.0, name="B")
    for primitive in ("vectorize", "unroll"):
        s = tex.create_schedule(B.op)
        getattr(s[B], primitive)(B.op.axis[0])
        with raises(tex.LoweringError, primitive, "stage B", "axis i", "70000", "1024"):
            tex.build(s, [A, B])


def test_reduce_strategy_on_a_cpu_build():
    A = tex.placeholder((8, 64), name="A")
    k = tex.reduce_axis((0, 64), name="k")
    B = tex.compute((8,), lambda i: tex.sum(A[i, k], axis=k), name="B")
    s = tex.create_schedule(B.op)
    s[B].reduce_strategy(k, "warp")
    with raises(tex.BuildError, "reduce_strategy", "stage B", "axis k", "CPU"):
        tex.build(s, [A, B])


def test_an_output_of_negative_or_overflowing_size_is_refused():
    n, m = tex.var("n"), tex.var("m")
    A = tex.placeholder((n,), name="A")
    B = tex.compute((n - 4,), lambda i: A[i] + 1.0, name="B")
    f = tex.build(tex.create_schedule(B.op), [A, B])
    with raises(tex.ArgumentError, "output B", "n - 4", "n = 3", "negative"):
        f(np.ones(3, "float32"))
    np.testing.assert_array_equal(f(np.arange(7, dtype="float32")), np.arange(3) + 1.0)
    C = tex.placeholder((m, 1), name="C")
    D = tex.compute((m * m * m * m, 1), lambda i, j: C[0, 0] * 2.0, name="D")
    g = tex.build(tex.create_schedule(D.op), [C, D])
    with raises(tex.ArgumentError, "output D", "m = 65536", "too large"):  # 2**64 wraps to 0
        g(np.ones((2 ** 16, 1), "float32"))


def test_an_exception_from_a_user_dlpack_object_becomes_an_argument_error():
    class Broken:
        def __dlpack__(self, stream=None):
            raise KeyError("no such tensor")

        def __dlpack_device__(self):
            return (1, 0)

    A = tex.placeholder((4,), name="A")
    B = tex.compute((4,), lambda i: A[i] * 2.0, name="B")
    f = tex.build(tex.create_schedule(B.op), [A, B])
    with pytest.raises(tex.ArgumentError, match="argument A.*KeyError") as info:
        f(Broken())
    assert isinstance(info.value.__cause__, KeyError)


@pytest.mark.parametrize("dtype", ["int32", "int8"])
def test_narrow_size_variables_bind_and_are_range_checked(dtype):
    k = tex.var("k", dtype)
    A = tex.placeholder((k,), name="A")
    B = tex.compute((k,), lambda i: A[i] * 2.0, name="B")
    f = tex.build(tex.create_schedule(B.op), [A, B])
    a = np.random.default_rng(0).standard_normal(101).astype("float32")
    np.testing.assert_array_equal(f(a), a * 2)
    if dtype == "int8":
        with raises(tex.ArgumentError, "argument A", "k = 300", "int8"):
            f(np.ones(300, "float32"))
