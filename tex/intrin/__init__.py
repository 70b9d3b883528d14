"""Tensor intrinsics for `s[T].tensorize`, one module per instruction family.

* `cuda_wmma`: 16x16x16 float16 matrix multiply-accumulate on NVIDIA tensor
  cores through CUDA's WMMA API, and an example matmul schedule using it.
* `x86_amx`: int8 and bfloat16 matrix multiply-accumulate on Intel AMX tiles (CPU), and a
  matmul schedule using it (zero padding, VNNI packing of B, parallel row blocks).

Declare your own with `tex.decl_tensor_intrin`.
"""
from tex.intrin import cuda_wmma, x86_amx

__all__ = ["cuda_wmma", "x86_amx"]
