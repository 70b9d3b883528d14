"""CUDA streams as tex's kernels take them: handles, and the stream PyTorch names.

A stream is kept as its driver handle, an int. `LEGACY` (1, the driver's
CU_STREAM_LEGACY) is the legacy default stream, and it is also the number
`__cuda_array_interface__` and DLPack give that stream; a handle of 0 (the NULL
stream, PyTorch's `cuda_stream` of its default stream) is taken as `LEGACY`.
`PER_THREAD` (2) is the per-thread default stream, in all three numberings.

`as_stream` reads what a caller passes as `stream=`: a cuda-python `CUstream`,
an int handle, or an object that holds one (`.cuda_stream`: PyTorch;
`.ptr`: CuPy; `__cuda_stream__()`: the CUDA stream protocol of cuda.core).
`torch_stream` is PyTorch's current stream on a tensor's device, read from an
already imported torch: this module never imports it.
"""
from __future__ import annotations

import sys

from tex.errors import ArgumentError

LEGACY = 1
PER_THREAD = 2
_HANDLE_LIMIT = 2**64


def as_stream(value, label: str = "argument stream") -> int:
    """The handle of the stream `value` names (see the module docstring), or an
    ArgumentError naming `label` that says what was expected and what came."""
    handle = _handle(value)
    if handle is None:
        raise ArgumentError(f"{label}: expected a CUDA stream (a cuda-python CUstream, an int "
                            "handle, or an object with .cuda_stream, .ptr or "
                            f"__cuda_stream__), got {type(value).__name__} {value!r}")
    if not 0 <= handle < _HANDLE_LIMIT:
        raise ArgumentError(f"{label}: a stream handle is an int in [0, 2**64), got {handle}")
    return handle or LEGACY


def _handle(value) -> int | None:
    """The int handle in `value`, or None when it holds none."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if type(value).__name__ == "CUstream":  # cuda-python's, without importing it here
        return int(value)
    protocol = getattr(value, "__cuda_stream__", None)
    if callable(protocol):
        answer = protocol()
        return _handle(answer[1]) if isinstance(answer, tuple) and len(answer) == 2 else None
    for attribute in ("cuda_stream", "ptr"):
        inner = getattr(value, attribute, None)
        if isinstance(inner, int) and not isinstance(inner, bool):
            return inner
    return None


def is_torch_tensor(value) -> bool:
    """Whether `value` is a PyTorch tensor on a CUDA device (torch already imported)."""
    if not type(value).__module__.startswith("torch"):
        return False
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(value, torch.Tensor) and value.is_cuda


def torch_stream(tensor) -> int:
    """PyTorch's current stream on `tensor`'s device: the stream its pending writes are on
    when the program follows PyTorch's stream semantics."""
    torch = sys.modules["torch"]
    return torch.cuda.current_stream(tensor.device).cuda_stream or LEGACY
