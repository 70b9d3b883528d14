"""The GPU rows rule (autotune/generate_gpu.py, rule 3) on the registry's softmax and
layernorm: sampled configurations against NumPy in the CUDA simulator, the one-pass
facts of the code NVRTC makes (nvdisasm), and the configurations it refuses."""
import re

import numpy as np
import pytest

import tex
from autotune import ops
from autotune.generate import InvalidConfig, valid_configs
from autotune.generate_gpu import REGISTER_ELEMENTS
from bench import gpu_static
from checks import needs_nvdisasm
from tex.codegen import nvrtc
from tex.runtime import cuda_simulator
from tex.runtime.cuda_device import gpu_available

TARGET = "cuda -arch=sm_90"
OUTPUT = {"softmax": "softmax", "layernorm": "out"}

needs_compiler = pytest.mark.skipif(cuda_simulator.compiler() is None, reason="needs g++")
needs_gpu = pytest.mark.skipif(not gpu_available(), reason="needs an NVIDIA GPU")




def _config(task, op, **knobs):
    """`task`'s configuration of the given knobs (named without the output's prefix)."""
    return task.space.from_json({f"{OUTPUT[op]}.{k}": v for k, v in knobs.items()})


def _run_and_compare(task, config, run="simulate"):
    """Build `config` of `task`, run it on the GPU ("call") or in the simulator, compare."""
    schedule, tensors = task.instantiate(config)
    kernel = tex.build(schedule, tensors, target="cuda" if run == "call" else TARGET)
    inputs = task.random_inputs()
    expected = task.reference_outputs(inputs)[0]
    got = kernel(*inputs) if run == "call" else kernel.simulate(*inputs)
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-4,
                               atol=1e-5 * np.abs(expected).max())
    return kernel


@pytest.mark.parametrize("run", [pytest.param("call", marks=needs_gpu),
                                 pytest.param("simulate", marks=needs_compiler)])
@pytest.mark.parametrize("shape", [(37, 1000), (5, 4097)])
@pytest.mark.parametrize("op", ["softmax", "layernorm"])
def test_sampled_rows_configurations_match_numpy(op, shape, run):
    """Three random configurations and one of each place a row is kept."""
    task = ops.task_for(op, shape, TARGET)
    configs = valid_configs(task.space, 3, seed=sum(shape))
    for keep in ("registers", "shared"):
        configs.append(next(c for c in valid_configs(task.space, seed=len(keep))
                            if c[f"{OUTPUT[op]}.keep"].val == keep))
    for config in configs:
        _run_and_compare(task, config, run)


@needs_compiler
@pytest.mark.parametrize("op", ["softmax", "layernorm"])
def test_rows_too_long_for_registers_are_read_again(op):
    """Past what the registers of 1024 threads hold, each pass reads the row again."""
    task = ops.task_for(op, (2, 70001), TARGET)
    assert {c[f"{OUTPUT[op]}.keep"].val for c in valid_configs(task.space)} == {"none"}
    kernel = _run_and_compare(task, _config(task, op, threads=1024, strategy="warp", rows=1,
                                            keep="none"))
    assert "_local = allocate" not in kernel.get_source("tex")


def _sass(kernel) -> tuple[dict, list]:
    """({family: count}, the MUFU opcodes) of the kernel's SASS (one kernel function)."""
    source = kernel.get_source("cuda")
    (instructions,) = gpu_static.disassemble(nvrtc.compile_source(source, "sm_90")).values()
    mufu = [i.opcode for i in instructions if i.opcode.startswith("MUFU")]
    return gpu_static.count(instructions), mufu


def _kept_in_registers(op: str, strategy: str):
    """The kernel of `op` on 64 rows of 1000 columns, 256 threads a row: 4 elements per
    thread, kept in registers."""
    task = ops.task_for(op, (64, 1000), TARGET)
    schedule, tensors = task.instantiate(_config(task, op, threads=256, strategy=strategy,
                                                 rows=1, keep="registers"))
    return tex.build(schedule, tensors, target=TARGET)


@needs_nvdisasm
def test_softmax_reads_its_row_once_and_multiplies_by_one_reciprocal():
    """1000 columns over 256 threads: 4 elements per thread, kept in registers."""
    kernel = _kept_in_registers("softmax", "warp")
    text = kernel.get_source("tex")
    assert "A_local = allocate(float32[4], 'local')" in text   # the thread's part only
    assert "e = allocate(float32[4], 'local')" in text
    assert "reciprocal1 = 1.0 / row_sum[0]" in text
    assert not re.search(r"softmax\[.*\] = .* / ", text)            # no divide per element
    sass, mufu = _sass(kernel)
    assert sass["LDG.32"] == 4 and sass["STG.32"] == 4
    assert mufu.count("MUFU.EX2") == 4                             # each exponential once
    assert sass.get("CALL", 0) <= 1   # one division's slow path: the row's reciprocal


@needs_nvdisasm
def test_layernorm_reads_its_row_once():
    kernel = _kept_in_registers("layernorm", "shared")
    assert "A_local = allocate(float32[4], 'local')" in kernel.get_source("tex")
    sass, _ = _sass(kernel)
    assert sass["LDG.32"] == 3 * 4 and sass["STG.32"] == 4    # the row, gamma and beta once
    assert sass.get("CALL", 0) <= 2   # the mean and the variance divided once per thread


def test_rows_that_cannot_be_held_raise_invalid_config():
    softmax = ops.task_for("softmax", (5, 4097), TARGET)   # two stages kept: A and exp
    per_thread = 2 * -(-4097 // 32)
    assert per_thread > REGISTER_ELEMENTS
    with pytest.raises(InvalidConfig, match=f"a row of 4097 kept in 2 stage.s. across 32 "
                                            f"threads is {per_thread} elements per thread"):
        softmax.instantiate(_config(softmax, "softmax", threads=32, strategy="warp", rows=1,
                                    keep="registers"))
    with pytest.raises(InvalidConfig, match=r"2 row\(s\) of 4097 kept in 2 stage\(s\) take "
                                            r"65552 bytes of shared memory, more than the "
                                            r"target's 49152"):
        softmax.instantiate(_config(softmax, "softmax", threads=256, strategy="warp", rows=2,
                                    keep="shared"))
    with pytest.raises(InvalidConfig, match="a row of 4097 fits in the registers of 1024 "
                                            "threads"):
        softmax.instantiate(_config(softmax, "softmax", threads=256, strategy="warp", rows=1,
                                    keep="none"))
    layernorm = ops.task_for("layernorm", (5, 4097), TARGET)  # one stage kept: A
    layernorm.instantiate(_config(layernorm, "layernorm", threads=128, strategy="warp",
                                  rows=1, keep="registers"))   # 33 elements per thread
