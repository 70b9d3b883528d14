"""Tensor intrinsics for `s[T].tensorize`, one module per instruction family.

* `cuda_wmma`: 16x16x16 float16 matrix multiply-accumulate on NVIDIA tensor
  cores through CUDA's WMMA API, and an example matmul schedule using it.

Declare your own with `tex.decl_tensor_intrin`.
"""
from tex.intrin import cuda_wmma

__all__ = ["cuda_wmma"]
