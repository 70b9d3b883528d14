"""Tensor intrinsics for `s[T].tensorize`, one module per instruction family.

* `cuda_wmma`: 16x16x16 float16 matrix multiply-accumulate on NVIDIA tensor
  cores through CUDA's WMMA API, and an example matmul schedule using it.
* `cuda_mma`: a warp's tile of float16 or bfloat16 matrix multiply-accumulate
  through PTX `mma.sync` m16n8k16 with `ldmatrix` operands (sm_80+), and a
  matmul schedule using it with a cp.async pipeline (`Stage.pipeline`).
* `x86_amx`: int8 and bfloat16 matrix multiply-accumulate on Intel AMX tiles (CPU), and a
  matmul schedule using it (zero padding, VNNI packing of B, parallel row blocks).

Declare your own with `tex.decl_tensor_intrin`.
"""
from tex.intrin import cuda_mma, cuda_wmma, x86_amx

__all__ = ["cuda_mma", "cuda_wmma", "x86_amx"]
