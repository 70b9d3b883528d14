"""A tuning template for matrix products on tensor cores: mma.sync over cp.async pipelines.

    task = autotune.Task.from_template(matmul_tensorcore, (4096, 4096, 4096, "float16"),
                                       target="cuda -arch=sm_90")

`matmul_tensorcore(M, N, K, dtype)` (dtype "float16" or "bfloat16", float32
out) schedules the product with `tex.intrin.cuda_mma.matmul_schedule` and makes
its tiles knobs: the block tile, the warp tile, the reduction steps per shared
panel (`k_tile`) and the pipeline's slots (`stages`). A configuration whose
warps do not tile the block, whose block holds more threads than the target
allows, or whose padded panels need more shared memory than the target gives
a block (dynamic shared memory past 48 KB), raises `InvalidConfig`: it is never
built or measured.
"""
from __future__ import annotations

from autotune.sketch import InvalidConfig
from autotune.space import ConfigSpace
from autotune.task import template
from tex.intrin import cuda_mma
from tex.target import Target, as_target

BLOCKS = ([128, 128], [128, 256], [256, 128], [64, 128], [128, 64], [64, 64])
WARPS = ([64, 64], [32, 64], [64, 32], [32, 32])
K_TILES = (16, 32)
STAGES = (2, 3, 4)


@template("matmul_tensorcore")
def matmul_tensorcore(cfg, M: int, N: int, K: int, dtype: str = "float16"):
    cfg.define_knob("block", list(BLOCKS))
    cfg.define_knob("warp", list(WARPS))
    cfg.define_knob("k_tile", list(K_TILES))
    cfg.define_knob("stages", list(STAGES))
    block, warp = tuple(cfg["block"].val), tuple(cfg["warp"].val)
    k_tile, stages = cfg["k_tile"].val, cfg["stages"].val
    if not isinstance(cfg, ConfigSpace):  # a configuration, not the space being collected
        _check(block, warp, k_tile, stages, dtype)
    return cuda_mma.matmul_schedule(M, N, K, dtype, block=block, warp=warp, k_tile=k_tile,
                                    stages=stages)


def _check(block, warp, k_tile: int, stages: int, dtype: str):
    """InvalidConfig for tiles the schedule or the target cannot take."""
    if block[0] % warp[0] or block[1] % warp[1]:
        raise InvalidConfig(f"warps of {warp[0]}x{warp[1]} do not tile a block of "
                            f"{block[0]}x{block[1]}")
    target = Target.current() or as_target("cuda")
    threads = cuda_mma.WARP * (block[0] // warp[0]) * (block[1] // warp[1])
    if threads > target.max_threads_per_block:
        raise InvalidConfig(f"{threads} threads exceed the target's "
                            f"{target.max_threads_per_block} per block")
    shared = cuda_mma.panel_bytes(block, k_tile, dtype) * stages
    limit = target.max_dynamic_shared_bytes or target.max_shared_bytes
    if shared > limit:
        raise InvalidConfig(f"{stages} stages of {block[0]}x{block[1]}x{k_tile} panels need "
                            f"{shared} bytes of shared memory; the target gives a block "
                            f"{limit}")
