"""`Map`, the read-only mapping `tex.InferBound` returns. TVM: `tvm.container.Map`."""
from __future__ import annotations

from collections.abc import Mapping


class Map(Mapping):
    """A read-only mapping: `m[key]`, `key in m`, `len(m)`, iteration over the keys,
    `keys()`, `values()`, `items()` and `get()`, as a dict's. Keys compare as in a
    dict (tex's axes and tensors by identity). TVM: `tvm.container.Map`."""

    __slots__ = ("_entries",)

    def __init__(self, entries=()):
        self._entries = dict(entries)

    def __getitem__(self, key):
        return self._entries[key]

    def __iter__(self):
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self):
        return "{" + ", ".join(f"{k!r}: {v!r}" for k, v in self._entries.items()) + "}"
