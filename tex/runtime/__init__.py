"""Running compiled kernels: argument checking, the compile cache.

`build_kernel(func, target)` is the short way from a LoweredFunc to a callable
`Kernel`; `compile_cached` compiles each distinct program once.
"""
from tex.runtime.cache import clear_cache, compile_cached
from tex.runtime.kernel import Kernel, build_kernel

__all__ = ["Kernel", "build_kernel", "clear_cache", "compile_cached"]
