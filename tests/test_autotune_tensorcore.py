"""The tensor-core matmul template (autotune/tensorcore.py): its knobs, the configurations it
refuses, the shared memory it predicts against what ptxas reports, and a tuned kernel's
result against NumPy in the simulator."""
import numpy as np
import pytest

import autotune
import tex
from autotune.generate import InvalidConfig
from autotune.tensorcore import matmul_tensorcore
from checks import random_array
from tex.codegen import nvrtc
from tex.intrin import cuda_mma
from tex.runtime import cuda_simulator

TARGET = "cuda -arch=sm_90"


def _task(M=150, N=140, K=70, dtype="float16"):
    return autotune.Task.from_template(matmul_tensorcore, (M, N, K, dtype), target=TARGET)


def test_the_knobs_are_the_schedule_tiles():
    task = _task()
    assert set(task.space.knobs) == {"block", "warp", "k_tile", "stages"}
    assert len(task.space) == 6 * 4 * 2 * 3


def test_panels_past_the_shared_memory_of_a_block_are_invalid():
    task = _task()
    too_big = task.space.from_json({"block": [128, 256], "warp": [64, 64], "k_tile": 32,
                                    "stages": 4})   # 108,544 bytes
    task.instantiate(too_big)                        # sm_90 gives a block 227 KB
    with tex.Target("cuda -arch=sm_86"):             # 99 KB
        with pytest.raises(InvalidConfig, match="108544 bytes of shared memory"):
            task.instantiate(too_big)


@pytest.mark.parametrize("tiles", [
    {"block": [128, 128], "warp": [64, 64], "k_tile": 16, "stages": 2},   # static, 20 KB
    {"block": [64, 128], "warp": [32, 64], "k_tile": 32, "stages": 4},    # dynamic, 54 KB
    {"block": [128, 256], "warp": [64, 64], "k_tile": 32, "stages": 3}])  # dynamic, 80 KB
def test_predicted_shared_memory_is_what_ptxas_reports(tiles):
    """Static shared memory up to 48 KB (ptxas reports it), dynamic past it (the launch
    asks for it): the template's prediction either way."""
    task = _task(512, 512, 512)
    config = task.space.from_json(tiles)
    schedule, tensors = task.instantiate(config)
    kernel = tex.build(schedule, tensors, target=TARGET)
    usage = nvrtc.resource_usage(kernel.get_source("cuda"), "sm_90")
    static = max(function["shared_bytes"] for function in usage.values())
    dynamic = max(launch.shared_bytes for launch in kernel.imported_modules[0].launches)
    assert not (static and dynamic)  # past 48 KB all of it is dynamic
    shared = static or dynamic
    expected = cuda_mma.panel_bytes(tuple(config["block"].val), config["k_tile"].val,
                                    "float16") * config["stages"].val
    assert shared == expected, (config.to_json(), usage)


@pytest.mark.skipif(cuda_simulator.compiler() is None, reason="needs g++")
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_a_configuration_matches_numpy_in_the_simulator(dtype):
    task = _task(100, 72, 40, dtype)
    config = task.space.from_json({"block": [64, 64], "warp": [32, 32], "k_tile": 32,
                                   "stages": 3})
    schedule, tensors = task.instantiate(config)
    kernel = tex.build(schedule, tensors, target=TARGET)
    a, b = random_array((100, 40), dtype), random_array((40, 72), dtype)
    expected = a.astype("float64") @ b.astype("float64")
    np.testing.assert_allclose(kernel.simulate(a, b), expected, rtol=1e-3, atol=1e-3)
