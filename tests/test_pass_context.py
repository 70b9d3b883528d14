"""`tex.PassContext` and each config key it knows (`tex.pass_context`): schedule records,
`tir.noalias`, bound checks and `tir.disable_assert`, user lowering passes, the CUDA
source directory, and the build caches keyed on what changes the code."""
import dataclasses
import re
import threading

import numpy as np
import pytest

import tex
from tex import ops
from tex.errors import ArgumentError, BuildError, ConfigError, OutOfBoundsError
from tex.ir import Broadcast, For, Load, Ramp, Store
from tex.visitor import collect, transform

from checks import gpu_elementwise

RNG = np.random.default_rng(5)
N, M = 37, 19  # neither divides the split factors below


def elementwise(n=N):
    A = tex.placeholder((n,), name="A")
    B = tex.compute((n,), lambda i: A[i] * 2 + 1, name="B")
    s = tex.create_schedule(B.op)
    xo, xi = s[B].split(B.op.axis[0], factor=8)
    s[B].vectorize(xi)
    return s, A, B


def matmul(rows=N):
    A = tex.placeholder((rows, M), name="A")
    B = tex.placeholder((M, N), name="B")
    k = tex.reduce_axis((0, M), name="k")
    C = tex.compute((rows, N), lambda i, j: tex.sum(A[i, k] * B[k, j], axis=k), name="C")
    return A, B, C, k


def tiled(C, k):
    """`C`'s schedule in 8 x 8 tiles, rows of tiles in parallel, columns vectorized."""
    s = tex.create_schedule(C.op)
    io, ii = s[C].split(C.op.axis[0], factor=8)
    jo, ji = s[C].split(C.op.axis[1], factor=8)
    s[C].reorder(io, jo, k, ii, ji)
    s[C].vectorize(ji)
    s[C].parallel(io)
    return s


def rand(*shape):
    return RNG.standard_normal(shape).astype("float32")


def shifted(buffer_name: str, offset: int, kind=Store):
    """A lowering pass adding `offset` to the flat index of every `kind` of `buffer_name`."""
    def shift(stmt):
        def post(node):
            if isinstance(node, kind) and node.buffer.name == buffer_name:
                (index,) = node.indices
                step = Broadcast(tex.const(offset), index.dtype.lanes) \
                    if index.dtype.lanes > 1 else tex.const(offset)
                moved = (ops.binary("add", index, step),)
                return Store(node.buffer, node.value, moved) if kind is Store else \
                    Load(node.buffer, moved)
            return node
        return transform(stmt, post=post)
    return shift


# --- the context ------------------------------------------------------------------------
def test_unknown_key_names_it_and_lists_the_known_ones():
    with pytest.raises(ConfigError, match=r"unknown config key 'tir.noalais'.*"
                       r"'te.keep_schedule_record'.*'tir.noalias'.*'tir.add_lower_pass'"):
        tex.PassContext(config={"tir.noalais": False})
    with pytest.raises(ConfigError, match="unknown config key 'nope'"):
        tex.PassContext.current().get("nope")


@pytest.mark.parametrize("config, message", [
    ({"tir.noalias": 0}, r"'tir.noalias' is True or False, got int 0"),
    ({"tir.add_lower_pass": [(4, lambda s: s)]}, r"phase is an int 0..3.*got 4"),
    ({"tir.add_lower_pass": [(1, "pass")]}, r"pass of phase 1 is a function"),
    ({"tir.add_lower_pass": lambda s: s}, r"list of \(phase, pass\) pairs"),
    ({"cuda.kernels_output_dir": 3}, r"directory's path, got 3"),
])
def test_a_value_of_the_wrong_kind_is_refused(config, message):
    with pytest.raises(ConfigError, match=message):
        tex.PassContext(config=config)


def test_bad_arguments_are_refused():
    with pytest.raises(ConfigError, match="opt_level is an int 0..4, got 7"):
        tex.PassContext(opt_level=7)
    with pytest.raises(ConfigError, match="disabled_pass is a list of pass names"):
        tex.PassContext(disabled_pass="tir.UnrollLoop")
    with pytest.raises(ConfigError, match="config is a dict"):
        tex.PassContext(config=[("tir.noalias", False)])


def test_contexts_nest_and_the_innermost_holds_alone():
    outside = tex.PassContext.current()
    assert dict(outside.config) == {} and outside.get("tir.noalias") is True
    with tex.PassContext(opt_level=3, config={"tir.noalias": False}) as outer:
        assert tex.PassContext.current() is outer and outer.opt_level == 3
        with tex.PassContext(config={"te.keep_schedule_record": True}) as inner:
            assert tex.PassContext.current() is inner
            assert inner.get("tir.noalias") is True  # not inherited, as in TVM
        assert tex.PassContext.current() is outer
    assert tex.PassContext.current() is outside


def test_each_thread_sees_its_own_context():
    seen = []
    with tex.PassContext(config={"tir.noalias": False}):
        worker = threading.Thread(target=lambda: seen.append(tex.PassContext.current()))
        worker.start()
        worker.join()
    assert seen[0].get("tir.noalias") is True


# --- te.keep_schedule_record ---------------------------------------------------------------
def test_records_name_each_primitive_tile_as_split_split_reorder():
    A, B, C, k = matmul()
    with tex.PassContext(config={"te.keep_schedule_record": True}):
        s = tex.create_schedule(C.op)
        CC = s.cache_write(C, "local")
        io, jo, ii, ji = s[C].tile(C.op.axis[0], C.op.axis[1], 8, 8)
    s[CC].compute_at(s[C], jo)  # applied outside: the schedule keeps recording
    s[CC].split(s[CC].op.reduce_axis[0], factor=4)
    s[C].vectorize(ji)
    s[C].parallel(io)
    assert s.primitive_record == ["vanilla", "cache_write", "split", "split", "reorder",
                                  "compute_at", "split", "vectorize", "parallel"]
    assert len(s.schedule_record) == 9
    f = tex.build(s, [A, B, C])
    a, b = rand(N, M), rand(M, N)
    np.testing.assert_allclose(f(a, b), a @ b, rtol=1e-4, atol=1e-4)


def test_a_snapshot_is_a_frozen_copy_later_primitives_leave_alone():
    A, B, C, k = matmul()
    with tex.PassContext(config={"te.keep_schedule_record": True}):
        s = tex.create_schedule(C.op)
    vanilla = s.schedule_record[0]
    i, j = C.op.axis
    io, ii = s[C].split(i, factor=8)
    after_split = s.schedule_record[1]
    s[C].reorder(ii, io)
    s[C].unroll(ii)
    assert vanilla["C"].leaf_iter_vars == (i, j, k)
    assert after_split["C"].leaf_iter_vars == (io, ii, j, k)
    assert dict(after_split["C"].annotations) == {}
    assert s.schedule_record[-1]["C"].leaf_iter_vars == (ii, io, j, k)
    assert dict(s.schedule_record[-1]["C"].annotations) == {ii: "unroll"}
    assert str(vanilla) == "stage C:\n  loops: i, j, k"
    with pytest.raises(dataclasses.FrozenInstanceError):
        vanilla.primitive = "split"
    with pytest.raises(TypeError):
        after_split["C"].annotations[ii] = "vectorize"
    with pytest.raises(AttributeError):
        after_split["C"].leaf_iter_vars.append(ii)
    s.schedule_record.clear()  # a copy of the list: the history stays
    assert len(s.schedule_record) == 4


def test_an_attachment_is_recorded_by_the_stage_name():
    A = tex.placeholder((N,), name="A")
    B = tex.compute((N,), lambda i: A[i] + 1, name="B")
    C = tex.compute((N,), lambda i: B[i] * 3, name="C")
    with tex.PassContext(config={"te.keep_schedule_record": True}):
        s = tex.create_schedule(C.op)
    xo, xi = s[C].split(C.op.axis[0], factor=4)
    s[B].compute_at(s[C], xo)
    attach = s.schedule_record[-1]["B"].attach
    assert (attach.kind, attach.stage, attach.axis) == ("at", "C", xo)
    assert s.schedule_record[1]["B"].attach.kind == "root"
    a = rand(N)
    np.testing.assert_allclose(tex.build(s, [A, C])(a), (a + 1) * 3, rtol=1e-6)


def test_a_failing_primitive_records_nothing_and_outside_nothing_is_kept():
    A, B, C, k = matmul()
    with tex.PassContext(config={"te.keep_schedule_record": True}):
        s = tex.create_schedule(C.op)
    with pytest.raises(tex.ScheduleError):
        s[C].split(C.op.axis[0], factor=0)
    with pytest.raises(tex.ScheduleError):
        s[C].parallel(k)
    assert s.primitive_record == ["vanilla"]
    plain = tex.create_schedule(C.op)  # created outside the context
    plain[C].split(C.op.axis[0], factor=4)
    assert plain.schedule_record == [] and plain.primitive_record == []
    assert plain.history is None


def test_an_empty_schedule_has_its_vanilla_record_inside_only():
    assert len(tex.create_schedule([]).schedule_record) == 0
    with tex.PassContext(config={"te.keep_schedule_record": True}):
        assert tex.create_schedule([]).primitive_record == ["vanilla"]


def test_rfactor_and_cache_read_are_recorded():
    A = tex.placeholder((N, M), name="A")
    k = tex.reduce_axis((0, M), name="k")
    B = tex.compute((N,), lambda i: tex.sum(A[i, k], axis=k), name="B")
    with tex.PassContext(config={"te.keep_schedule_record": True}):
        s = tex.create_schedule(B.op)
        ko, ki = s[B].split(k, factor=4)
        BF = s.rfactor(B, ki)
        s.cache_read(A, "local", [BF])
    assert s.primitive_record == ["vanilla", "split", "rfactor", "cache_read"]
    assert [stage.name for stage in s.schedule_record[-1].stages] == \
        [stage.name for stage in s.stages]
    a = rand(N, M)
    np.testing.assert_allclose(tex.build(s, [A, B])(a), a.sum(axis=1), rtol=1e-4, atol=1e-5)


# --- tir.noalias -------------------------------------------------------------------------
def test_noalias_off_leaves_no_noalias_in_the_llvm_ir():
    A, B, C, k = matmul()
    s = tiled(C, k)
    claimed = tex.build(s, [A, B, C])
    with tex.PassContext(config={"tir.noalias": False}):
        plain = tex.build(s, [A, B, C])
        assert "# buffers may alias" in str(tex.lower(s, [A, B, C]))
    assert "noalias" in claimed.get_source("ll")
    assert "noalias" not in plain.get_source("ll")
    assert not plain.func.noalias and claimed.func.noalias
    a, b = rand(N, M), rand(M, N)
    for f in (claimed, plain):
        np.testing.assert_allclose(f(a, b), a @ b, rtol=1e-4, atol=1e-4)


def test_noalias_off_drops_restrict_from_cuda_kernels():
    s, A, B = gpu_elementwise(N)
    claimed = tex.build(s, [A, B], "cuda")
    with tex.PassContext(config={"tir.noalias": False}):
        plain = tex.build(s, [A, B], "cuda")
    assert "__restrict__" in claimed.get_source("cuda")
    assert "__restrict__" not in plain.get_source("cuda")
    a = rand(N)
    np.testing.assert_allclose(plain.simulate(a), a * 2 + 1, rtol=1e-6)


# --- tir.instrument_bound_checkers and tir.disable_assert ------------------------------------
def test_a_right_kernel_passes_its_bound_checks():
    A, B, C, k = matmul(tex.var("n"))  # a symbolic size: LLVM cannot drop the checks
    s = tiled(C, k)
    with tex.PassContext(config={"tir.instrument_bound_checkers": True}):
        f = tex.build(s, [A, B, C])
        assert "checked against its buffer's extent" in str(tex.lower(s, [A, B, C]))
    assert f.bound_checked and f.func.bound_checked and "cmpxchg" in f.get_source("ll")
    a, b = rand(N, M), rand(M, N)
    np.testing.assert_allclose(f(a, b), a @ b, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("vectorized", [False, True])
def test_a_store_out_of_bounds_raises_naming_the_buffer(vectorized):
    s, A, B = elementwise()
    if not vectorized:
        s = tex.create_schedule(B.op)
    config = {"tir.instrument_bound_checkers": True,
              "tir.add_lower_pass": [(1, shifted("B", 3))]}
    with tex.PassContext(config=config):
        f = tex.build(s, [A, B])
    a, b = rand(N), np.zeros(N, "float32")
    with pytest.raises(OutOfBoundsError, match=r"kernel main: store to B \(shape \(37,\)\) at "
                                               r"flat index 37, outside the buffer"):
        f(a, b)
    # the accesses inside went ahead: B[i + 3] = 2 A[i] + 1 for i + 3 < N
    np.testing.assert_allclose(b[3:], a[:-3] * 2 + 1, rtol=1e-6)


def test_a_load_out_of_bounds_in_a_parallel_loop_raises():
    A = tex.placeholder((N, M), name="A")
    B = tex.compute((N, M), lambda i, j: A[i, j] - 1, name="B")
    s = tex.create_schedule(B.op)
    s[B].parallel(B.op.axis[0])
    config = {"tir.instrument_bound_checkers": True,
              "tir.add_lower_pass": [(1, shifted("A", -2, kind=Load))]}
    with tex.PassContext(config=config):
        f = tex.build(s, [A, B])
    a = rand(N, M)
    with pytest.raises(OutOfBoundsError, match=r"load from A \(shape \(37, 19\)\) at flat "
                                               r"index -(1|2), outside"):
        f(a)
    with tex.PassContext(config={"tir.instrument_bound_checkers": True}):
        right = tex.build(s, [A, B])
    np.testing.assert_allclose(right(a), a - 1)


def test_a_rank_zero_reduction_passes_its_checks():
    A = tex.placeholder((N,), name="A")
    scale = tex.placeholder((), name="scale")
    k = tex.reduce_axis((0, N), name="k")
    C = tex.compute((), lambda: tex.sum(A[k] * scale(), axis=k), name="C")
    D = tex.compute((), lambda: C() + 1, name="D")
    with tex.PassContext(config={"tir.instrument_bound_checkers": True}):
        f = tex.build(tex.create_schedule(D.op), [A, scale, D])
    a, sc = rand(N), np.array(rand(1)[0])
    np.testing.assert_allclose(f(a, sc), a.sum() * sc + 1, rtol=1e-5)


def test_disable_assert_builds_without_the_checks():
    s, A, B = elementwise(tex.var("n"))  # a symbolic size: LLVM cannot drop the checks
    config = {"tir.instrument_bound_checkers": True, "tir.disable_assert": True}
    with tex.PassContext(config=config):
        unchecked = tex.build(s, [A, B])
    with tex.PassContext(config={"tir.instrument_bound_checkers": True}):
        checked = tex.build(s, [A, B])
    assert checked.bound_checked and "cmpxchg" in checked.get_source("ll")
    assert not unchecked.bound_checked and "cmpxchg" not in unchecked.get_source("ll")
    a = rand(N)
    for f in (checked, unchecked):
        np.testing.assert_allclose(f(a), a * 2 + 1, rtol=1e-6)


def test_bound_checks_are_for_cpu_targets():
    s, A, B = gpu_elementwise(N)
    with tex.PassContext(config={"tir.instrument_bound_checkers": True}):
        with pytest.raises(BuildError, match="bounds in CPU kernels only.*'cuda"):
            tex.build(s, [A, B], "cuda")


def test_a_library_refuses_a_bound_checked_kernel(tmp_path):
    s, A, B = elementwise()
    with tex.PassContext(config={"tir.instrument_bound_checkers": True}):
        f = tex.build(s, [A, B])
    with pytest.raises(ArgumentError, match="kernel #0 \\(main\\) was built with bound checks"):
        tex.export_library([f], tmp_path / "ops.so")


# --- tir.add_lower_pass ---------------------------------------------------------------------
def test_each_phase_sees_the_program_at_its_point():
    s, A, B = elementwise()
    seen = {}

    def looking(phase):
        def look(stmt):
            seen[phase] = stmt
            return stmt
        return look

    config = {"tir.add_lower_pass": [(p, looking(p)) for p in (3, 2, 1, 0)]}
    with tex.PassContext(config=config):
        f = tex.build(s, [A, B])
    stores = {p: collect(stmt, lambda n: isinstance(n, Store)) for p, stmt in seen.items()}
    assert all(len(store.indices) == 1 for p in (0, 1, 2, 3) for store in stores[p])
    loops = {p: collect(stmt, lambda n: isinstance(n, For)) for p, stmt in seen.items()}
    assert any(loop.kind == "vectorized" for loop in loops[1])  # not yet vectorized
    assert not any(isinstance(st.indices[0], Ramp) for st in stores[1])
    assert all(isinstance(st.indices[0], Ramp) for st in stores[2])  # vectorized
    assert seen[3] is f.func.body
    a = rand(N)
    np.testing.assert_allclose(f(a), a * 2 + 1, rtol=1e-6)


def test_phase_zero_sees_multi_dimensional_buffers():
    A = tex.placeholder((N, M), name="A")
    B = tex.compute((N, M), lambda i, j: A[i, j] + 2, name="B")
    seen = []
    with tex.PassContext(config={"tir.add_lower_pass": [(0, lambda s: seen.append(s) or s)]}):
        tex.lower(tex.create_schedule(B.op), [A, B])
    assert [len(st.indices) for st in collect(seen[0], lambda n: isinstance(n, Store))] == [2]


def scaled_stores(factor: float):
    """A lowering pass multiplying every stored value by `factor`."""
    def scale(stmt):
        def post(node):
            if not isinstance(node, Store):
                return node
            lanes = node.value.dtype.lanes
            times = Broadcast(tex.const(factor), lanes) if lanes > 1 else tex.const(factor)
            return Store(node.buffer, node.value * times, node.indices)
        return transform(stmt, post=post)
    return scale


def test_a_user_pass_changes_what_the_kernel_computes():
    s, A, B = elementwise()
    with tex.PassContext(config={"tir.add_lower_pass": [(2, scaled_stores(2.0))]}):
        doubled = tex.build(s, [A, B])
        printed = str(tex.lower(s, [A, B]))
    plain = tex.build(s, [A, B])
    a = rand(N)
    np.testing.assert_allclose(doubled(a), (a * 2 + 1) * 2, rtol=1e-6)
    np.testing.assert_allclose(plain(a), a * 2 + 1, rtol=1e-6)
    assert "* broadcast(2.0, 8)" in printed


def test_a_pass_must_return_a_statement():
    s, A, B = elementwise()
    with tex.PassContext(config={"tir.add_lower_pass": [(1, lambda stmt: None)]}):
        with pytest.raises(BuildError, match="pass '<lambda>' of phase 1 returned NoneType"):
            tex.lower(s, [A, B])


# --- the caches, and CUDA's source directory -----------------------------------------------------
def test_a_kernel_built_under_one_config_is_not_reused_under_another(cache_dir):
    s, A, B = elementwise()
    default = tex.build(s, [A, B])
    with tex.PassContext(config={"tir.noalias": False}):
        aliasing = tex.build(s, [A, B])
    with tex.PassContext(config={"tir.instrument_bound_checkers": True}):
        checked = tex.build(s, [A, B])
    assert len({id(default), id(aliasing), id(checked)}) == 3
    assert "noalias" in default.get_source("ll") and "noalias" not in aliasing.get_source("ll")
    assert checked.bound_checked and not default.bound_checked
    assert tex.build(s, [A, B]) is default
    # from the disk cache, in a fresh schedule: each config finds its own code
    tex.runtime.clear_cache()
    again, A2, B2 = elementwise()
    with tex.PassContext(config={"tir.instrument_bound_checkers": True}):
        loaded = tex.build(again, [A2, B2])
    assert loaded.loaded_from_disk and loaded.bound_checked
    with tex.PassContext(config={"tir.noalias": False}):
        loaded = tex.build(again, [A2, B2])
    assert loaded.loaded_from_disk and "noalias" not in loaded.get_source("ll")
    a = rand(N)
    np.testing.assert_allclose(loaded(a), a * 2 + 1, rtol=1e-6)


def test_user_passes_are_not_cached_by_fingerprint(cache_dir):
    s, A, B = elementwise()
    a = rand(N)
    for factor in (2.0, 3.0):  # the same schedule, two passes: two programs
        with tex.PassContext(config={"tir.add_lower_pass": [(2, scaled_stores(factor))]}):
            f = tex.build(s, [A, B])
        np.testing.assert_allclose(f(a), (a * 2 + 1) * factor, rtol=1e-6)
    assert list(cache_dir.glob("*.texk")) == []  # nothing another process could reuse


def test_cuda_kernels_output_dir_gets_the_source(tmp_path):
    s, A, B = gpu_elementwise(N)
    built_before = tex.build(s, [A, B], "cuda")  # the directory gets it all the same
    with tex.PassContext(opt_level=3, config={"cuda.kernels_output_dir": str(tmp_path)}):
        f = tex.build(s, [A, B], "cuda")
    assert f is built_before
    source = (tmp_path / "main.cu").read_text()
    assert source == f.get_source("cuda") and re.search(r"__global__ void \w+\(", source)


def test_a_user_pass_need_not_be_hashable():
    class Doubling:  # compares by value, so it has no hash
        def __eq__(self, other):
            return isinstance(other, Doubling)

        def __call__(self, body):
            return transform(body, lambda n: Store(n.buffer, n.value * 2.0, n.indices)
                             if isinstance(n, Store) else None)
    s, A, B = elementwise()
    with tex.PassContext(config={"tir.add_lower_pass": [(0, Doubling())]}):
        f = tex.build(s, [A, B])
    a = np.random.default_rng(1).random(37).astype("float32")
    np.testing.assert_allclose(f(a), (a * 2 + 1) * 2, rtol=1e-6)
