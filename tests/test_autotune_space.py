"""Knobs, spaces, configurations and templates: enumeration, replay, errors."""
import json
import random

import numpy as np
import pytest

import autotune
import tex
from autotune import ops
from autotune.generate import register_budget, valid_configs
from autotune.space import ConfigSpace, split_candidates
from tex.dtype import as_dtype
from tex.target import as_target


@autotune.template("tiled_add")
def tiled_add(cfg, n, m):
    A = tex.placeholder((n, m), name="A")
    B = tex.placeholder((n, m), name="B")
    C = tex.compute((n, m), lambda i, j: A[i, j] + B[i, j], name="C")
    s = tex.create_schedule(C.op)
    i, j = C.op.axis
    cfg.define_split("tile_j", j, num_outputs=2, max_factor=16)
    cfg.define_reorder("order", [0, 1], candidates=[[0, 1], [1, 0]])
    cfg.define_knob("parallel", [False, True])
    j_outer, j_inner = cfg["tile_j"].apply(s[C], j)
    cfg.define_annotate("ann", [j_inner], policy="try_vectorize")
    if cfg["order"].perm == (1, 0):
        s[C].reorder(j_outer, i)
    cfg["ann"].apply(s[C], [j_inner])
    if cfg["parallel"].val:
        s[C].parallel(s[C].leaf_iter_vars[0])
    return s, [A, B, C]


def test_split_candidates_cover_divisors_and_powers_of_two():
    sizes = {c.size for c in split_candidates(12, 2)}
    assert {(-1, 1), (-1, 2), (-1, 3), (-1, 4), (-1, 6), (-1, 8), (-1, 12)} == sizes
    three = split_candidates(8, 3, policy="power2")
    assert all(c.size[1] * c.size[2] <= 8 for c in three) and len(three) == 10
    with pytest.raises(autotune.TuneError, match="policy"):
        split_candidates(8, 2, policy="odd")


def test_every_index_is_a_distinct_config_that_replays_through_json():
    space = tiled_add.space(37, 29)
    assert len(space) == len(space.knobs["tile_j"]) * 2 * 2 * 2
    seen = set()
    for index in range(len(space)):
        config = space.get(index)
        assert config.index == index
        replayed = space.from_json(json.loads(json.dumps(config.to_json())))
        assert replayed == config and replayed.index == index
        seen.add(config)
    assert len(seen) == len(space)


def test_every_config_of_the_template_computes_the_sum():
    space = tiled_add.space(37, 29)
    rng = np.random.default_rng(0)
    a, b = (rng.random((37, 29), dtype=np.float32) for _ in range(2))
    for config in [space.get(i) for i in range(0, len(space), 7)]:
        s, args = space.instantiate(config)
        np.testing.assert_allclose(tex.build(s, args)(a, b), a + b, rtol=1e-6)


def test_mutate_changes_one_knob_and_crossover_mixes_parents():
    space = tiled_add.space(37, 29)
    rng = random.Random(1)
    for _ in range(20):
        a, b = space.random(rng), space.random(rng)
        child = space.mutate(a, rng)
        assert sum(x != y for x, y in zip(a.picks, child.picks)) == 1
        mixed = space.crossover(a, b, rng)
        assert all(m in (x, y) for m, x, y in zip(mixed.picks, a.picks, b.picks))


def test_bad_configurations_are_refused_with_the_knob_named():
    space = tiled_add.space(37, 29)
    good = space.get(3).to_json()
    with pytest.raises(autotune.TuneError, match="tile_j"):
        space.from_json({**good, "tile_j": [-1, 5]})
    with pytest.raises(autotune.TuneError, match="missing knobs"):
        space.from_json({k: v for k, v in good.items() if k != "parallel"})
    with pytest.raises(autotune.TuneError, match="outside"):
        space.get(len(space))
    with pytest.raises(autotune.TuneError, match="no knob named"):
        space.get(0)["nope"]


def test_knobs_that_depend_on_other_choices_are_refused():
    @autotune.template
    def sneaky(cfg):
        A = tex.placeholder((8,), name="A")
        B = tex.compute((8,), lambda i: A[i] * 2.0, name="B")
        cfg.define_knob("first", [1, 2])
        cfg.define_knob("second", [cfg["first"].val, 3])
        return tex.create_schedule(B.op), [A, B]

    space = sneaky.space()
    config = space.from_json({"first": 2, "second": 1})
    with pytest.raises(autotune.TuneError, match="not defined the same way"):
        space.instantiate(config)


def test_task_of_a_template_counts_flops_and_names_its_workload():
    task = autotune.Task.from_template(tiled_add, (37, 29))
    assert task.flops == 37 * 29
    assert task.unit == "GB/s"  # one add per 12 bytes moved
    assert json.loads(task.workload_key) == ["template", "tiled_add", [37, 29]]
    with pytest.raises(autotune.TuneError, match="JSON"):
        autotune.Task.from_template(tiled_add, (object(), 2))


def test_tasks_need_static_shapes():
    n = tex.var("n")
    A = tex.placeholder((n, 4), name="A")
    B = tex.compute((n, 4), lambda i, j: A[i, j] + 1.0, name="B")
    with pytest.raises(autotune.TuneError, match="static"):
        autotune.Task.from_compute([A, B])


def declare_matmul(m, n, k):
    A = tex.placeholder((m, k), name="A")
    B = tex.placeholder((k, n), name="B")
    r = tex.reduce_axis((0, k), name="k")
    C = tex.compute((m, n), lambda i, j: tex.sum(A[i, r] * B[r, j], axis=r), name="C")
    return [A, B, C]


def instantiate_and_check(space, knobs: dict, m, n, k) -> str:
    """Build the configuration `knobs` of a matmul space, compare with NumPy; the loop nest."""
    s, args = space.instantiate(space.from_json(knobs))
    rng = np.random.default_rng(0)
    a, b = rng.random((m, k), dtype=np.float32), rng.random((k, n), dtype=np.float32)
    np.testing.assert_allclose(tex.build(s, args)(a, b), a @ b, rtol=1e-4)
    return str(tex.lower(s, args))


def test_matmul_flops_and_workload_key_is_stable_across_declarations():
    first = autotune.Task.from_compute(declare_matmul(64, 32, 48))
    second = autotune.Task.from_compute(declare_matmul(64, 32, 48))
    assert first.flops == 2 * 64 * 32 * 48 and first.unit == "GFLOP/s"
    assert first.workload_key == second.workload_key
    assert first.workload_key.startswith("compute:")


def test_the_generated_matmul_space_holds_the_packed_register_tile():
    space = autotune.space_for(declare_matmul(96, 80, 70)[-1])
    lanes = as_target("llvm").vector_lanes(as_dtype("float32"))  # 6 x 2 vectors fit any CPU
    knobs = {"C.vector_axis": 1, "C.vector": 2 * lanes, "C.tile_0": 6, "C.order": [0],
             "C.pack_A": False, "C.pack_B": True, "C.unroll_reduce": 2, "C.write_back": "tile"}
    text = instantiate_and_check(space, knobs, 96, 80, 70)
    assert "B_global" in text and "parallel" in text and "ramp(" in text
    with pytest.raises(autotune.InvalidConfig, match="gather A: it must be packed"):
        space.instantiate(space.from_json({**knobs, "C.vector_axis": 0}))
    with pytest.raises(autotune.InvalidConfig, match="register tile"):
        space.instantiate(space.from_json({**knobs, "C.vector": 4 * lanes, "C.tile_0": 8}))



def test_a_convolution_of_a_small_image_is_tiled_along_its_channels():
    """A 7 x 7 image is too short a last axis for the vector; the channels (48, a multiple
    of every CPU's lanes) take it, and the configurations compute the convolution."""
    task = ops.task_for("conv2d", (1, 24, 7, 7, 48, 3, 3, 1, 1))
    assert task.space.knobs["Y.vector_axis"].candidates[0].to_json() == 1
    check_configs(task, seed=1)


def test_a_vector_matrix_product_is_tiled_along_the_matrix_rows():
    """C[1, n] = A[1, k] @ B[k, n]: the vector runs along B's rows (contiguous), not down
    its columns as the reduce rule's partial sums would."""
    task = ops.task_for("matmul", (1, 600, 70))
    assert task.space.knobs["C.vector_axis"].candidates[0].to_json() == 1
    check_configs(task, seed=2)


def check_configs(task, seed: int):
    """Three valid configurations of `task`, each built and compared with its reference."""
    inputs = task.random_inputs()
    expected = task.reference_outputs(inputs)[0]
    for config in valid_configs(task.space, 3, seed=seed):
        kernel = tex.build(*task.instantiate(config))
        np.testing.assert_allclose(kernel(*inputs), expected, rtol=1e-4,
                                   atol=1e-4 * np.abs(expected).max())


def test_the_register_budget_follows_the_target():
    assert register_budget("llvm -mcpu=x86-64-v4") == 28  # 32 AVX-512 registers
    assert register_budget("llvm -mcpu=x86-64-v3") == 12  # 16 AVX2 registers
    knobs = {"C.vector_axis": 1, "C.vector": 32, "C.tile_0": 6, "C.order": [0],
             "C.pack_A": False, "C.pack_B": True, "C.unroll_reduce": 2, "C.write_back": "tile"}
    avx512 = autotune.space_for(declare_matmul(96, 80, 70)[-1], "llvm -mcpu=x86-64-v4")
    avx512.instantiate(avx512.from_json(knobs))  # 6 x 2 vectors of 16
    avx2 = autotune.space_for(declare_matmul(96, 80, 70)[-1], "llvm -mcpu=x86-64-v3")
    with pytest.raises(autotune.InvalidConfig, match="24 vectors exceeds 12"):
        avx2.instantiate(avx2.from_json(knobs))  # 6 x 4 vectors of 8
    avx2.instantiate(avx2.from_json({**knobs, "C.vector": 16}))


#: A 64 x 20 x 30 matmul's register tile with the vectors down the rows (64 rows make whole
#: vectors, 20 columns would not), A packed.
DOWN_THE_ROWS = {"C.vector_axis": 0, "C.vector": 16, "C.tile_0": 3, "C.order": [0],
                 "C.pack_A": True, "C.pack_B": False, "C.unroll_reduce": 1}


def test_a_transposed_panel_when_the_vector_runs_down_the_rows():
    space = autotune.space_for(declare_matmul(64, 20, 30)[-1])
    text = instantiate_and_check(space, {**DOWN_THE_ROWS, "C.write_back": "tile"}, 64, 20, 30)
    # A is copied with its rows innermost, and the accumulator holds whole vectors
    assert "A_global[ramp(" in text and "C_local[ramp(0, 1, 16)]" in text


def test_a_transposed_result_written_back_by_rows():
    # C_local holds 16 whole rows, each register tile of 16 x 3 is computed in
    # C_local_local, and C is written along its rows
    space = autotune.space_for(declare_matmul(64, 20, 30)[-1])
    knobs = {**DOWN_THE_ROWS, "C.write_back": "row"}
    text = instantiate_and_check(space, knobs, 64, 20, 30)
    assert "C_local_local[ramp(" in text and "C[ramp(" in text
    assert text.index("A_global = allocate") < text.index("in parallel(")  # packed first
    with pytest.raises(autotune.InvalidConfig, match="row write-back"):
        space.instantiate(space.from_json({**knobs, "C.tile_0": 1}))
    wide = autotune.space_for(declare_matmul(96, 80, 70)[-1])  # the vector along the rows
    with pytest.raises(autotune.InvalidConfig, match="row write-back"):
        wide.instantiate(wide.from_json({**knobs, "C.vector_axis": 1, "C.pack_A": False,
                                         "C.pack_B": True}))


def test_config_space_collects_without_a_template_and_says_so():
    space = ConfigSpace()
    space.define_knob("x", [1, 2])
    assert len(space) == 2
    with pytest.raises(autotune.TuneError, match="template"):
        space.instantiate(space.get(0))
