"""bench/gpu_static.py: the facts it reads from NVRTC's report and the SASS of small kernels
(no GPU needed; skipped without the nvidia-cuda-nvdisasm wheel)."""
import json

import pytest

from bench import gpu_schedules as cases
from bench import gpu_static
from checks import needs_nvdisasm

ARCH = "sm_90"


def only(facts: dict) -> dict:
    (entry,) = facts.values()
    return entry


@needs_nvdisasm
def test_elementwise_loads_its_three_inputs_and_stores_once_without_tensor_cores():
    plain = only(gpu_static.kernel_facts(cases.elementwise(1000), ARCH))
    assert plain["sass_kernel"]["LDG.32"] == 3 and plain["sass_kernel"]["STG.32"] == 1
    assert "HMMA" not in plain["sass_kernel"] and plain["spills"] == 0
    assert 0 < plain["registers"] <= 255 and plain["shared_bytes"] == 0
    vector = only(gpu_static.kernel_facts(cases.elementwise(1000, threads=64, vector=4), ARCH))
    assert vector["sass_kernel"]["LDG.128"] == 3 and vector["sass_kernel"]["STG.128"] == 1


@needs_nvdisasm
def test_shared_memory_matmul_main_loop_is_one_step_of_the_reduction():
    # tile 64, 4 x 4 outputs per thread, 16 steps of k per staged panel: 16 * 4 * 4 FFMAs
    facts = only(gpu_static.kernel_facts(cases.matmul(64, 64, 256), ARCH))
    assert facts["sass"]["FFMA"] == 256 and facts["sass"]["BAR"] >= 1
    assert facts["shared_bytes"] == 2 * 64 * 16 * 4
    stores = [op for op in facts["sass_kernel"] if op.startswith("STG")]
    assert stores and not any(op.startswith("STG") for op in facts["sass"])  # after the loop
    assert facts["flops_per_byte"] == pytest.approx(2 * 64 * 64 * 256
                                                    / (4 * (2 * 64 * 256 + 64 * 64)), 1e-3)


@needs_nvdisasm
@pytest.mark.parametrize("fetch_ahead", [{}, {"double_buffer": True}, {"pipelined": True}])
def test_wide_matmul_main_loop_loads_16_bytes_and_waits_once_per_step(fetch_ahead):
    """bench/gpu.py's float32 GEMM (128 x 128 tiles, 8 x 8 per thread, k-steps of 8): each
    step of the main loop reads A's and B's panels from shared memory 16 bytes at a time
    (each thread 8 rows x 8 values of A, 8 values x 8 columns of B: 32 LDS.128) and
    fetches the global ones 16 bytes at a time (one A and one B access per thread); a
    fetch ahead (through registers or by cp.async) needs one barrier per step."""
    case = cases.matmul(4096, 4096, 4096, tile=128, per_thread=8, step=8, min_blocks=2,
                        **fetch_ahead)
    facts = only(gpu_static.kernel_facts(case, ARCH))
    loop = facts["sass"]
    steps = loop["FFMA"] // (8 * 8 * 8)
    assert steps >= 1 and loop["FFMA"] == steps * 8 * 8 * 8
    assert facts["registers"] <= 128 and facts["spills"] == 0
    assert loop["LDS.128"] == 32 * steps
    assert [op for op in loop if op.startswith("LDS")] == ["LDS.128"]
    fetches = "LDGSTS" if fetch_ahead.get("pipelined") else "LDG.128"
    assert loop[fetches] == 2 * steps
    assert [op for op in loop if op.startswith("LDG")] == [fetches]
    assert loop["BAR"] == (2 * steps if not fetch_ahead else steps)


@needs_nvdisasm
def test_wmma_matmul_runs_on_tensor_cores():
    facts = only(gpu_static.kernel_facts(cases.matmul_wmma(64, 64, 64), ARCH))
    assert facts["sass_kernel"].get("HMMA", 0) >= 1 and facts["shared_bytes"] > 0


@needs_nvdisasm
def test_atomic_row_sum_gives_each_kernel_function_its_entry():
    facts = gpu_static.kernel_facts(cases.row_reduce(13, 4000, "atomic", threads=64), ARCH)
    assert sorted(facts) == ["row_sum_atomic.kernel0", "row_sum_atomic.kernel1"]
    assert facts["row_sum_atomic.kernel1"]["sass_kernel"]["REDG"] == 1


@needs_nvdisasm
def test_main_writes_the_json_it_promises(tmp_path, capsys):
    path = tmp_path / "static.json"
    assert gpu_static.main(["--only", "elementwise", "--json", str(path)]) == 0
    facts = json.loads(path.read_text())["elementwise"]
    assert {"registers", "spills", "shared_bytes", "sass", "flops_per_byte"} <= set(facts)
    assert "nvidia-cuda-nvrtc" in capsys.readouterr().out


SASS = """
.text.k:
        /*0000*/                   S2R R0, SR_TID.X ;
.L_x_0:
        /*0010*/                   LDG.E.128 R4, desc[UR4][R2.64] ;
.L_x_1:
        /*0020*/                   FFMA R1, R4, R5, R1 ;
        /*0030*/                   FFMA R1, R6, R7, R1 ;
        /*0040*/               @P0 BRA `(.L_x_1) ;
.L_x_2:
        /*0050*/                   LDS.U.128 R8, [R9] ;
        /*0060*/                   LDS R8, [R9] ;
        /*0070*/                   STG.E.U16 desc[UR4][R2.64], R8 ;
        /*0080*/               @P1 BRA `(.L_x_2) ;
        /*0090*/               @P2 BRA `(.L_x_0) ;
        /*00a0*/                   EXIT ;
.L_x_3:
        /*00b0*/                   BRA `(.L_x_3);
        /*00c0*/                   NOP;
"""


def test_main_loop_is_the_longest_innermost_backward_branch_body():
    (code,) = gpu_static.parse_sass(SASS).values()
    assert len(gpu_static.loops(code)) == 3          # the trap at the end is no loop
    loop = gpu_static.main_loop(code)
    assert [i.address for i in loop] == [0x50, 0x60, 0x70, 0x80]
    assert gpu_static.count(loop) == {"LDS.32": 1, "LDS.128": 1, "STG.16": 1}
    assert gpu_static.count(code)["FFMA"] == 2


def test_a_kernel_without_loops_has_no_main_loop():
    code = gpu_static.parse_sass(".text.k:\n /*0000*/ EXIT ;\n")["k"]
    assert gpu_static.main_loop(code) is None


def _opcodes(case) -> list[str]:
    from tex.codegen import nvrtc
    source = case.build(f"cuda -arch={ARCH}").get_source("cuda")
    (code,) = gpu_static.disassemble(nvrtc.compile_source(source, ARCH)).values()
    return [i.opcode for i in code]


@needs_nvdisasm
@pytest.mark.parametrize("cols, threads", [(1000, 128), (8192, 512)])
def test_softmax_reads_and_writes_each_element_once_with_one_exp(cols, threads):
    per_thread = -(-cols // threads)
    opcodes = _opcodes(cases.softmax(5, cols, threads=threads))
    assert sum(op.startswith("LDG") for op in opcodes) == per_thread
    assert sum(op.startswith("STG") for op in opcodes) == per_thread
    assert opcodes.count("MUFU.EX2") == per_thread
    # one divide per thread (1 / sum: its slow path is the one call), none per element
    assert sum(op.startswith("CALL") for op in opcodes) <= 1
    assert opcodes.count("MUFU.RCP") < per_thread


@needs_nvdisasm
def test_layernorm_reads_the_row_gamma_and_beta_once_each():
    per_thread = -(-1000 // 128)
    opcodes = _opcodes(cases.layernorm(5, 1000, threads=128))
    assert sum(op.startswith("LDG") for op in opcodes) == 3 * per_thread
    assert sum(op.startswith("STG") for op in opcodes) == per_thread
    assert opcodes.count("MUFU.RSQ") == 1


def test_resource_usage_reports_each_entry_function_of_a_source():
    from tex.codegen import nvrtc
    source = r"""
    __device__ __noinline__ float dot(const float* p, int n) {
      float s = 0; for (int i = 0; i < n; ++i) s += p[i] * p[n - i]; return s; }
    extern "C" __global__ void staged(float* p, int n) {
      __shared__ float tile[64]; tile[threadIdx.x] = p[threadIdx.x]; __syncthreads();
      p[threadIdx.x] = dot(tile, n); }
    extern "C" __global__ void indexed(float* p, int n) {
      float local[32] = {}; for (int i = 0; i < n; ++i) local[(i * n) & 31] += p[i];
      p[threadIdx.x] = local[threadIdx.x & 31]; }
    """
    usage = nvrtc.resource_usage(source, ARCH)
    assert sorted(usage) == ["indexed", "staged"]           # not the device function
    assert usage["staged"]["shared_bytes"] == 64 * 4 and usage["indexed"]["shared_bytes"] == 0
    assert usage["indexed"]["stack_bytes"] >= 32 * 4         # a local array indexed at run time
    assert all(0 < u["registers"] <= 255 and u["spill_bytes"] == 0 for u in usage.values())
