"""The generated CUDA spaces (autotune/generate_gpu.py), their features, measurement and
tex-tune without a GPU, and bench/tune_gpu.py's logic on a fake measurer. Kernels are
compiled with NVRTC everywhere, and run against NumPy where there is a GPU."""
import json
import math

import numpy as np
import pytest

import tex
from autotune import cli, ops
from autotune.features import GPU_FEATURE_DOCS, GPU_FEATURE_NAMES, FEATURE_NAMES, feature
from autotune.features import program_features
from autotune.generate import InvalidConfig, valid_configs
from autotune.measure import Measurer, MeasureResult
from bench import tune_gpu
from tex.runtime import cuda_simulator
from tex.runtime.cuda_device import gpu_available

needs_gpu = pytest.mark.skipif(not gpu_available(), reason="needs an NVIDIA GPU")
no_gpu = pytest.mark.skipif(gpu_available(), reason="checks what happens without a GPU")
needs_compiler = pytest.mark.skipif(cuda_simulator.compiler() is None, reason="needs g++")

#: Sizes that divide none of the thread counts or tiles.
SHAPES = {"matmul": (70, 90, 50), "batch_matmul": (2, 33, 45, 19), "conv2d": (1, 5, 13, 13, 6),
          "depthwise_conv2d": (1, 5, 13, 13), "reduce_sum": (13, 1000), "reduce_max": (7, 300),
          "full_sum": (10007,), "softmax": (9, 1000), "layernorm": (5, 700),
          "elementwise": (1000,), "matmul_bias_relu": (70, 90, 50)}


def _task(op):
    return ops.task_for(op, SHAPES[op], "cuda")


def _valid(task, count, seed=0):
    """`count` random valid configurations (fewer if the space has fewer)."""
    return valid_configs(task.space, count, seed)


def _source(task, config):
    schedule, tensors = task.instantiate(config)
    return tex.build(schedule, tensors, target="cuda").get_source("cuda")


def test_every_registry_op_has_a_gpu_space():
    assert set(SHAPES) == set(ops.OPS)
    for op in SHAPES:
        task = _task(op)
        assert len(task.space) >= 2, op
        assert not any(".vector_axis" in name or ".pack_" in name  # the CPU rules' knobs
                       for name in task.space.knobs), op


@pytest.mark.parametrize("op", sorted(SHAPES))
def test_sampled_configurations_compile_with_nvrtc(op):
    task = _task(op)
    configs = _valid(task, 4)
    assert configs, op
    for config in configs:
        source = _source(task, config)
        assert "__global__" in source and "threadIdx.x" in source, (op, config)


@pytest.mark.parametrize("op", ["reduce_sum", "full_sum"])
def test_each_reduction_strategy_shows_in_the_source(op):
    task = _task(op)
    name = f"{task.outputs[0].name}.strategy"
    assert [c.val for c in task.space.knobs[name].candidates] == ["serial", "shared", "warp",
                                                                  "atomic"]
    seen = {}
    for config in _valid(task, len(task.space)):
        seen.setdefault(config[name].val, config)
    sources = {strategy: _source(task, config) for strategy, config in seen.items()}
    assert set(sources) == {"serial", "shared", "warp", "atomic"}
    assert "__shared__" not in sources["serial"] and "__shfl" not in sources["serial"]
    assert "__shared__" in sources["shared"] and "__syncthreads();" in sources["shared"]
    assert "__shfl_xor_sync(" in sources["warp"]
    assert "atomicAdd(" in sources["atomic"] and sources["atomic"].count("__global__") == 2


def test_rows_and_tiles_use_shared_memory_where_their_knobs_say():
    softmax = _task("softmax")
    warp = [c for c in _valid(softmax, 12) if c["softmax.strategy"].val == "warp"][0]
    assert "__shfl_xor_sync(" in _source(softmax, warp)
    matmul = _task("matmul")
    staged = [c for c in _valid(matmul, 40) if c["C.shared"].val][0]
    source = _source(matmul, staged)
    assert source.count("__shared__") == 2 and "__syncthreads();" in source



@needs_compiler
@pytest.mark.parametrize("stages", [2, 3])
def test_pipelined_tiles_fetch_asynchronously_and_match_numpy(stages):
    """The tile rule's `stages` knob: staged panels filled by cp.async in a pipeline."""
    task = _task("matmul")
    config = [c for c in _valid(task, len(task.space), seed=stages)
              if c["C.shared"].val and c["C.stages"].val == stages][0]
    schedule, tensors = task.instantiate(config)
    kernel = tex.build(schedule, tensors, target="cuda -arch=sm_80")
    source = kernel.get_source("cuda")
    assert "tex_cp_async_commit()" in source and "_stages[" in source
    inputs = task.random_inputs()
    np.testing.assert_allclose(kernel.simulate(*inputs), task.reference_outputs(inputs)[0],
                               rtol=1e-4, atol=1e-4)
    without = dict(config.to_json(), **{"C.shared": False, "C.step": 4})
    with pytest.raises(InvalidConfig, match="no pipeline"):
        task.instantiate(task.space.from_json(without))


def test_vector_and_min_blocks_knobs_reach_the_code():
    elementwise = ops.task_for("elementwise", (4096,), "cuda")
    config = elementwise.space.from_json({name: knob.candidates[0].to_json() for name, knob
                                          in elementwise.space.knobs.items()})
    four = [c for c in _valid(elementwise, len(elementwise.space))
            if c["out.vector"].val == 4][0]
    assert "float4" not in _source(elementwise, config) and "float4" in _source(elementwise,
                                                                                four)
    matmul = _task("matmul")
    two = [c for c in _valid(matmul, 40) if c["C.min_blocks"].val == 2][0]
    threads = two["C.threads_y"].val * two["C.threads_x"].val
    assert f"__launch_bounds__({threads}, 2)" in _source(matmul, two)

def test_half_precision_elementwise_offers_eight_elements_per_thread_in_one_access():
    """float16's vector knob goes to 8 elements (16 bytes, one aligned struct access);
    float32's stops at 4 (a float4)."""
    half = ops.task_for("elementwise", (1003,), "cuda", dtype="float16")
    assert [c.to_json() for c in half.space.knobs["out.vector"].candidates] == [1, 2, 4, 8]
    single = ops.task_for("elementwise", (1003,), "cuda")
    assert [c.to_json() for c in single.space.knobs["out.vector"].candidates] == [1, 2, 4]
    eight = [c for c in _valid(half, len(half.space)) if c["out.vector"].val == 8][0]
    source = _source(half, eight)
    assert "tex_float16x8" in source
    schedule, tensors = half.instantiate(eight)
    kernel = tex.build(schedule, tensors, target="cuda")
    inputs = half.random_inputs()
    np.testing.assert_allclose(kernel.simulate(*inputs).astype("float32"),
                               half.reference_outputs(inputs)[0].astype("float32"),
                               rtol=1e-2, atol=1e-2)


def test_invalid_configurations_raise_invalid_config():
    task = _task("reduce_sum")  # 13 rows of 1000
    space = task.space
    serial_1024 = {name: knob.candidates[0].to_json() for name, knob in space.knobs.items()}
    serial_1024.update({"row_sum.strategy": "serial", "row_sum.threads": 1024})
    with pytest.raises(InvalidConfig, match="1024 threads for 13 points"):
        task.instantiate(space.from_json(serial_1024))
    blocks_without_atomic = dict(serial_1024, **{"row_sum.threads": 32, "row_sum.blocks": 4})
    with pytest.raises(InvalidConfig, match="atomic strategy only"):
        task.instantiate(space.from_json(blocks_without_atomic))
    serial_rows = dict(serial_1024, **{"row_sum.threads": 32, "row_sum.rows": 4})
    with pytest.raises(InvalidConfig, match="shared and warp strategies only"):
        task.instantiate(space.from_json(serial_rows))
    too_many = dict(serial_1024, **{"row_sum.strategy": "warp", "row_sum.rows": 16})
    with pytest.raises(InvalidConfig, match="1024 x 16 threads exceed 1024 per block"):
        task.instantiate(space.from_json(too_many))
    softmax = _task("softmax")  # 9 rows of 1000
    with pytest.raises(InvalidConfig, match="512 x 4 threads exceed 1024 per block"):
        softmax.instantiate(softmax.space.from_json(
            {"softmax.threads": 512, "softmax.strategy": "shared", "softmax.rows": 4,
             "softmax.keep": "registers"}))


@pytest.mark.skipif(cuda_simulator.compiler() is None, reason="needs g++")
@pytest.mark.parametrize("strategy", ["shared", "warp"])
def test_short_rows_share_a_block(strategy):
    """77 rows of 32: 8 rows per block (threadIdx.y), 32 threads along each."""
    task = ops.task_for("reduce_sum", (77, 32), "cuda")
    config = task.space.from_json({"row_sum.strategy": strategy, "row_sum.threads": 32,
                                   "row_sum.blocks": 1, "row_sum.rows": 8})
    schedule, tensors = task.instantiate(config)
    kernel = tex.build(schedule, tensors, target="cuda")
    assert "launch main_kernel0(grid=(10, 1, 1), block=(32, 8, 1)):" in kernel.get_source("tex")
    inputs = task.random_inputs()
    np.testing.assert_allclose(kernel.simulate(*inputs, seed=1), task.reference_outputs(inputs)[0],
                               rtol=1e-4, atol=1e-4)


@pytest.mark.skipif(cuda_simulator.compiler() is None, reason="needs g++")
@pytest.mark.parametrize("op, out", [("softmax", "softmax"), ("layernorm", "out")])
@pytest.mark.parametrize("strategy", ["shared", "warp"])
def test_short_softmax_and_layernorm_rows_share_a_block(op, out, strategy):
    """77 rows of 45: 8 rows per block (threadIdx.y), 32 threads along each; the row
    reductions keep one shared slot per row of the block."""
    task = ops.task_for(op, (77, 45), "cuda")
    config = task.space.from_json({f"{out}.threads": 32, f"{out}.strategy": strategy,
                                   f"{out}.rows": 8, f"{out}.keep": "registers"})
    schedule, tensors = task.instantiate(config)
    kernel = tex.build(schedule, tensors, target="cuda")
    text = kernel.get_source("tex")
    assert "grid=(10, 1, 1), block=(32, 8, 1)" in text and "float32[8], 'shared')" in text
    inputs = task.random_inputs()
    np.testing.assert_allclose(kernel.simulate(*inputs, seed=1), task.reference_outputs(inputs)[0],
                               rtol=1e-4, atol=1e-5)


def test_configurations_replay_from_json():
    task = _task("reduce_sum")
    for config in _valid(task, 4, seed=1):
        again = task.space.from_json(json.loads(json.dumps(config.to_json())))
        assert again == config and _source(task, again) == _source(task, config)


def test_gpu_features_of_a_warp_row_sum():
    task = _task("reduce_sum")  # 13 rows of 1000: one block per row
    config = task.space.from_json({"row_sum.strategy": "warp", "row_sum.threads": 64,
                                   "row_sum.blocks": 1, "row_sum.rows": 1})
    schedule, tensors = task.instantiate(config)
    vector = program_features(tex.lower(schedule, tensors, target="cuda"), task.target)
    assert vector.shape == (len(GPU_FEATURE_NAMES),)
    assert list(GPU_FEATURE_NAMES[:len(FEATURE_NAMES)]) == list(FEATURE_NAMES)
    assert all(GPU_FEATURE_DOCS[name] for name in GPU_FEATURE_NAMES)
    assert feature(vector, "gpu.n_kernels") == 1.0
    assert feature(vector, "gpu.threads_per_block") == pytest.approx(math.log2(65))
    assert feature(vector, "gpu.blocks") == pytest.approx(math.log2(14))
    assert feature(vector, "gpu.warp_fill") == 1.0
    assert feature(vector, "gpu.shared_bytes") == pytest.approx(math.log2(1 + 2 * 4))
    flags = [feature(vector, f"gpu.reduce_{s}") for s in ("serial", "shared", "warp", "atomic")]
    assert flags == [0.0, 0.0, 1.0, 0.0]
    cpu = program_features(tex.lower(schedule, tensors, target="cuda"))
    assert cpu.shape == (len(FEATURE_NAMES),)
    assert np.array_equal(cpu, vector[:len(FEATURE_NAMES)])


@no_gpu
def test_measuring_without_a_gpu_says_it_needs_one():
    task = _task("reduce_sum")
    with Measurer(task, timeout=60.0) as measurer:
        (result,) = measurer.measure(_valid(task, 1))
    assert result.error == "run" and "needs an NVIDIA GPU" in result.message


@no_gpu
def test_tex_tune_for_cuda_without_a_gpu_fails_early(tmp_path, capsys):
    log = tmp_path / "gpu.jsonl"
    status = cli.main(["reduce_sum", "--shape", "13,1000", "--target", "cuda", "--trials", "4",
                       "--log", str(log)])
    err = capsys.readouterr().err
    assert status == cli.EXIT_USAGE and not log.exists()
    assert "tuning reduce_sum 13,1000 for cuda" in err and "needs an NVIDIA GPU" in err


class FakeMeasurer:
    """Times by strategy alone: warp is fastest, then shared, atomic, serial."""

    def __init__(self, task):
        self.task = task

    def measure(self, configs, best_seconds=None, on_result=None):
        results = []
        for config in configs:
            strategy = tune_gpu.strategy_of(config)
            base = {"warp": 1.0, "shared": 2.0, "atomic": 3.0, "serial": 4.0}[strategy]
            results.append(MeasureResult(config, (base * 1e-5,), None, "", 0.0))
        return results

    def close(self):
        pass


def test_bench_compare_finds_the_fastest_strategy_on_a_fake_measurer():
    row = tune_gpu.compare("reduce_sum", (13, 1000), FakeMeasurer, trials=6)
    assert row["fastest"] == "warp" and row["fastest_seconds"] == pytest.approx(1e-5)
    assert set(row["strategies"]) == {"serial", "shared", "warp", "atomic"}
    assert row["slowdown"] >= 1.0 and row["agree"] == (row["tuned"] == "warp")
    text = tune_gpu.table([row], "a fake GPU")
    assert "a fake GPU" in text and "reduce_sum" in text and "13x1000" in text


@no_gpu
def test_bench_without_a_gpu_stops_with_a_clear_message(capsys):
    assert tune_gpu.main(["--quick"]) == 1
    assert "needs an NVIDIA GPU" in capsys.readouterr().err


@pytest.mark.parametrize("run", [pytest.param("call", marks=needs_gpu),
                                 pytest.param("simulate", marks=needs_compiler)])
@pytest.mark.parametrize("op", sorted(SHAPES))
def test_sampled_kernels_match_numpy(op, run):
    task = _task(op)
    inputs = task.random_inputs()
    expected = task.reference_outputs(inputs)
    for config in _valid(task, 4):
        schedule, tensors = task.instantiate(config)
        kernel = tex.build(schedule, tensors, target="cuda")
        got = kernel(*inputs) if run == "call" else kernel.simulate(*inputs)
        got = list(got) if isinstance(got, tuple) else [got]
        for g, e in zip(got, expected):
            np.testing.assert_allclose(np.asarray(g), e, rtol=2e-3, atol=2e-3 * np.abs(e).max())
