"""Data types and the promotion rules of tex expressions.

A `DType` is a scalar kind (`bool`, `int`, `uint`, `float`, `bfloat`), a bit
width and a lane count. Vectorized loop IR computes on vectors (lanes > 1); so
do tensors of a vector dtype, named as in TVM: "float32x4" is four float32
lanes (`.lanes` 4, `.element` float32), and so are "int8x4", "float16x2",
"bfloat16x2". Each element of such a tensor is a vector: arithmetic on it is
lane-wise, a constant or a scalar meeting it is broadcast to every lane
(`tex.const(1, "float32x4")`), casts keep the lanes ("int32x4" to
"float32x4"). Its memory is the element dtype with the lanes as one more,
last, dimension: a (n,) float32x4 tensor is passed as an (n, 4) float32 array.
bfloat16 is float32's exponent with an 8-bit significand; NumPy knows it
through the `ml_dtypes` package, imported when a bfloat16 array is checked.
Arithmetic on bfloat16 rounds to bfloat16 after every operation (computed in
float32, as `ml_dtypes` and the hardware do; CPUs with AVX512-BF16 flush
subnormal results to zero), so sums over long axes lose precision fast:
accumulate in float32 with `tex.cast`.

Promotion, applied when a binary operator meets two different dtypes:

1. A Python `int` takes the dtype of the other operand; a Python `float`
   takes the other operand's dtype if that is a float, else float32.
2. bool < integers < floats: the operand of the higher category wins, so
   int32 + float16 is float16.
3. Two floats, or two integers of the same signedness: the wider wins;
   float16 meets bfloat16: float32, which holds both exactly.
4. Signed meets unsigned: a signed integer wide enough for both
   (uint8 + int8 is int16; uint64 + int64 is int64).
5. A scalar meets a vector: the scalar is broadcast to the vector's lanes,
   the elements promoted as above (int8x4 + 1.5 is float32x4); vectors of
   different lanes do not combine.

Casts never happen silently across a narrowing; use `tex.cast` for those.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from tex.errors import ExprError

_KINDS = ("bool", "int", "uint", "float", "bfloat")


@dataclass(frozen=True, slots=True)
class DType:
    kind: str
    bits: int
    lanes: int = 1

    def __post_init__(self):
        if self.kind not in _KINDS:
            raise ExprError(f"unknown dtype kind {self.kind!r}; expected one of {_KINDS}")
        if self.lanes < 1:
            raise ExprError(f"dtype lanes must be >= 1, got {self.lanes}")

    def __str__(self):
        base = "bool" if self.kind == "bool" else f"{self.kind}{self.bits}"
        return base if self.lanes == 1 else f"{base}x{self.lanes}"

    __repr__ = __str__

    def __eq__(self, other):
        """Equal to the same dtype, and to its name (`A.dtype == "float32"`, as in TVM)."""
        if isinstance(other, str):
            return str(self) == _ALIASES.get(other, other)
        if isinstance(other, DType):
            return (self.kind, self.bits, self.lanes) == (other.kind, other.bits, other.lanes)
        return NotImplemented

    def __hash__(self):
        return hash(str(self))

    @property
    def dtype(self) -> np.dtype:
        """The NumPy dtype, so that NumPy takes a DType wherever it takes a dtype:
        `np.zeros(shape, dtype=A.dtype)`, `x.astype(A.dtype)`."""
        return self.numpy

    @property
    def is_float(self):
        return self.kind in ("float", "bfloat")

    @property
    def is_int(self):
        """Signed or unsigned integer (not bool)."""
        return self.kind in ("int", "uint")

    @property
    def is_bool(self):
        return self.kind == "bool"

    @property
    def is_signed(self):
        return self.kind in ("int", "float", "bfloat")

    @property
    def element(self) -> DType:
        return self if self.lanes == 1 else DType(self.kind, self.bits)

    def with_lanes(self, lanes: int) -> DType:
        return DType(self.kind, self.bits, lanes)

    @property
    def numpy(self) -> np.dtype:
        if self.lanes != 1:
            raise ExprError(f"vector dtype {self} has no NumPy equivalent: its arrays are "
                            f"{self.element} with the {self.lanes} lanes as a last dimension "
                            "(tex.empty(shape, dtype) makes one)")
        if self.kind == "bfloat":
            try:
                import ml_dtypes  # 0.1 s to import: only when bfloat16 arrays are used
            except ImportError:
                raise ExprError("bfloat16 arrays need the ml_dtypes package "
                                "(pip install ml_dtypes)") from None
            return np.dtype(ml_dtypes.bfloat16)
        return np.dtype("bool" if self.is_bool else str(self))

    def round(self, value) -> float:
        """`value` rounded to this float dtype, to nearest even (bfloat16 through float32, as
        LLVM, the hardware and `ml_dtypes` convert)."""
        if self.bits == 64:
            return float(value)
        if self.kind == "bfloat":
            value = np.float32(value)
        return float(np.float64(value).astype(self.numpy))

    @property
    def itemsize(self) -> int:
        return 1 if self.is_bool else self.bits // 8


bool_ = DType("bool", 1)
int8, int16, int32, int64 = (DType("int", b) for b in (8, 16, 32, 64))
uint8, uint16, uint32, uint64 = (DType("uint", b) for b in (8, 16, 32, 64))
float16, float32, float64 = (DType("float", b) for b in (16, 32, 64))
bfloat16 = DType("bfloat", 16)

#: The dtype of loop variables, shapes and every index computation.
INDEX = int64

_BY_NAME = {str(t): t for t in (bool_, int8, int16, int32, int64, uint8, uint16, uint32,
                                uint64, float16, bfloat16, float32, float64)}


#: Other names of dtypes, as TVM spells them.
_ALIASES = {"float": "float32", "double": "float64", "int": "int32", "uint": "uint32",
            "int1": "bool", "uint1": "bool"}  # TVM's one-bit integers are bools


_VECTOR_NAME = re.compile(r"(?P<element>[a-z]+[0-9]*)x(?P<lanes>[0-9]*)")


def as_dtype(value) -> DType:
    """Accept a DType, a name such as "float32" (or "float", TVM's float32; "int1", its
    bool) or "float32x4" (a vector of 4 lanes, 2 or more), or a NumPy dtype."""
    if isinstance(value, DType):
        return value
    name = str(np.dtype(value)) if not isinstance(value, str) else _ALIASES.get(value, value)
    if name in _BY_NAME:
        return _BY_NAME[name]
    vector = _VECTOR_NAME.fullmatch(name) if isinstance(value, str) else None
    if vector and _ALIASES.get(vector["element"], vector["element"]) in _BY_NAME:
        lanes = vector["lanes"]
        if not lanes or int(lanes) < 2:
            raise ExprError(f"vector dtype {value!r}: the lanes after 'x' must be a number "
                            f">= 2 (as in 'float32x4'), got {lanes or 'none'!r}")
        element = _BY_NAME[_ALIASES.get(vector["element"], vector["element"])]
        return element.with_lanes(int(lanes))
    raise ExprError(f"unsupported dtype {value!r}; expected one of {sorted(_BY_NAME)}, "
                    "or one of them with lanes, as in 'float32x4'")


def array_layout(shape: tuple, dtype) -> tuple[tuple, np.dtype]:
    """The NumPy shape and dtype of an array of `shape` elements of `dtype` (a tex dtype,
    a name or a NumPy dtype): a vector dtype's lanes are one more, last, dimension."""
    if isinstance(dtype, str) and _VECTOR_NAME.fullmatch(dtype):
        dtype = as_dtype(dtype)
    if not isinstance(dtype, DType):
        return tuple(shape), np.dtype(dtype)
    lanes = (dtype.lanes,) if dtype.lanes > 1 else ()
    return (*shape, *lanes), dtype.element.numpy


def promote(a: DType, b: DType) -> DType:
    """The common dtype of two operands (rules in the module docstring)."""
    if a == b:
        return a
    if a.lanes != b.lanes:
        raise ExprError(f"cannot combine vectors of {a.lanes} and {b.lanes} lanes")
    rank = {"bool": 0, "uint": 1, "int": 1, "float": 2, "bfloat": 2}
    if rank[a.kind] != rank[b.kind]:
        return a if rank[a.kind] > rank[b.kind] else b
    if a.is_float and a.bits == b.bits:  # float16 and bfloat16
        return DType("float", 32, a.lanes)
    if a.kind == b.kind or a.is_float:
        return a if a.bits >= b.bits else b
    signed, unsigned = (a, b) if a.kind == "int" else (b, a)
    bits = signed.bits if signed.bits > unsigned.bits else min(64, unsigned.bits * 2)
    return DType("int", bits, a.lanes)
