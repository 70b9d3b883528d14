"""Scalar expression nodes.

Every node is a frozen dataclass that checks its own invariants and carries
its dtype. Nodes compare and hash structurally (`structurally_equal`), except
`Var`, which is an identity: two variables named "i" are different variables.

Python operators on expressions build new expressions; that sugar, with dtype
promotion and constant folding, lives in `tex.ops`. Because `==` builds an
expression, `a == b` used as a Python bool (in an `if`, or a dict lookup)
falls back to structural equality of the two operands.

Nodes used only by the loop IR (buffer loads, vector ramps) are in `tex.ir`;
nodes that name tensors and reduction axes (`TensorRead`, `Reduce`) are here
because tensor expressions are built from them, and so is `Broadcast`, a
scalar in every lane, which a constant of a vector dtype ("float32x4") is.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field, fields
from functools import lru_cache

from tex.dtype import DType, INDEX, bool_, int32
from tex.errors import ExprError


class Node:
    """Base of every IR node, expression or statement."""

    __slots__ = ()

    def __hash__(self):
        values = (_hash_key(getattr(self, f)) for f in field_names(type(self)))
        return hash((type(self), *values))

    def __str__(self):
        from tex.printer import to_text
        return to_text(self)

    __repr__ = __str__


@lru_cache(maxsize=None)
def field_names(cls) -> tuple[str, ...]:
    """The dataclass field names of a node class (computed once per class)."""
    return tuple(f.name for f in fields(cls))


def _hash_key(value):
    if isinstance(value, tuple):
        return tuple(_hash_key(v) for v in value)
    if isinstance(value, Node) or isinstance(value, (int, float, str, DType, type(None))):
        return value
    return id(value)


def structurally_equal(a, b) -> bool:
    """True when two IR values have the same structure (variables by identity)."""
    if a is b:
        return True
    if type(a) is not type(b):
        return False
    if isinstance(a, tuple):
        return len(a) == len(b) and all(structurally_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, Var) or not isinstance(a, Node):
        return a == b if isinstance(a, (int, float, str, DType, type(None))) else False
    return all(structurally_equal(getattr(a, f), getattr(b, f)) for f in field_names(type(a)))


class Expr(Node):
    """A scalar (or, in vectorized loop IR, vector) value with a dtype."""

    __slots__ = ()
    dtype: DType

    # Operator sugar: tex.ops does promotion and folding.
    def __add__(self, o): return ops.binary("add", self, o)
    def __radd__(self, o): return ops.binary("add", o, self)
    def __sub__(self, o): return ops.binary("sub", self, o)
    def __rsub__(self, o): return ops.binary("sub", o, self)
    def __mul__(self, o): return ops.binary("mul", self, o)
    def __rmul__(self, o): return ops.binary("mul", o, self)
    def __truediv__(self, o): return ops.true_div(self, o)
    def __rtruediv__(self, o): return ops.true_div(o, self)
    def __floordiv__(self, o): return ops.binary("floordiv", self, o)
    def __rfloordiv__(self, o): return ops.binary("floordiv", o, self)
    def __mod__(self, o): return ops.binary("floormod", self, o)
    def __rmod__(self, o): return ops.binary("floormod", o, self)
    def __pow__(self, o): return ops.power(self, o)
    def __neg__(self): return ops.binary("sub", ops.zero_like(self), self)
    def __lt__(self, o): return ops.compare("lt", self, o)
    def __le__(self, o): return ops.compare("le", self, o)
    def __gt__(self, o): return ops.compare("gt", self, o)
    def __ge__(self, o): return ops.compare("ge", self, o)
    def __eq__(self, o): return ops.compare("eq", self, o)
    def __ne__(self, o): return ops.compare("ne", self, o)
    def __and__(self, o): return ops.logical("and", self, o)
    def __rand__(self, o): return ops.logical("and", o, self)
    def __or__(self, o): return ops.logical("or", self, o)
    def __ror__(self, o): return ops.logical("or", o, self)
    def __invert__(self): return ops.logical_not(self)

    def __bool__(self):
        raise ExprError(
            f"the symbolic expression `{self}` has no Python truth value; use "
            "tex.if_then_else / tex.all / tex.any instead of `if`, `and`, `or`")

    __hash__ = Node.__hash__

    def astype(self, dtype) -> Expr:
        return ops.cast(dtype, self)

    def equal(self, other) -> Expr:
        """`self == other` as an expression (TVM: `PrimExpr.equal`)."""
        return ops.compare("eq", self, other)

    def same_as(self, other) -> bool:
        """Whether `other` is this very node (TVM: `same_as`; `==` builds an expression)."""
        return self is other


@dataclass(frozen=True, eq=False, slots=True, repr=False)
class Const(Expr):
    """A constant of a scalar dtype (bool, int or float)."""

    dtype: DType
    value: int | float | bool

    def __post_init__(self):
        if self.dtype.lanes != 1:
            raise ExprError(f"Const must be scalar, got dtype {self.dtype}; use Broadcast")
        if self.dtype.is_float:
            object.__setattr__(self, "value", float(self.value))
        elif self.dtype.is_bool:
            object.__setattr__(self, "value", bool(self.value))
        else:
            value = int(self.value)
            lo, hi = _int_range(self.dtype)
            if not lo <= value <= hi:
                raise ExprError(f"constant {value} does not fit in {self.dtype}")
            object.__setattr__(self, "value", value)


def _int_range(dtype: DType):
    if dtype.kind == "uint":
        return 0, 2 ** dtype.bits - 1
    return -(2 ** (dtype.bits - 1)), 2 ** (dtype.bits - 1) - 1


_var_ids = itertools.count()


@dataclass(frozen=True, eq=False, slots=True, repr=False)
class Var(Expr):
    """A variable: a loop index, a symbolic size, or a let-bound value.

    Compared by identity; `name` is only a hint for the printer.
    """

    name: str
    dtype: DType = INDEX
    uid: int = field(default_factory=lambda: next(_var_ids))

    def __hash__(self):
        return object.__hash__(self)


@dataclass(frozen=True, eq=False, slots=True, repr=False)
class Broadcast(Expr):
    """A scalar repeated in every lane: a constant (or scalar) of a vector dtype, or a
    lane-invariant value in vectorized loop IR."""

    value: Expr
    lanes: int
    dtype: DType = field(init=False)

    def __post_init__(self):
        if self.value.dtype.lanes != 1:
            raise ExprError("only scalars can be broadcast")
        object.__setattr__(self, "dtype", self.value.dtype.with_lanes(self.lanes))


BINARY_OPS = ("add", "sub", "mul", "div", "floordiv", "floormod", "min", "max")
COMPARE_OPS = ("eq", "ne", "lt", "le", "gt", "ge")
LOGICAL_OPS = ("and", "or")


@dataclass(frozen=True, eq=False, slots=True, repr=False)
class Binary(Expr):
    """Arithmetic on two operands of one dtype.

    `div` is true division (floats only); `floordiv`/`floormod` round toward
    negative infinity, and the remainder takes the divisor's sign.
    """

    op: str
    a: Expr
    b: Expr
    dtype: DType = field(init=False)

    def __post_init__(self):
        if self.op not in BINARY_OPS:
            raise ExprError(f"unknown binary operator {self.op!r}")
        _check_same_dtype(self.op, self.a, self.b)
        if self.a.dtype.is_bool:
            raise ExprError(f"operator {self.op} does not apply to bool operands")
        if self.op == "div" and not self.a.dtype.is_float:
            raise ExprError(f"true division needs float operands, got {self.a.dtype}")
        object.__setattr__(self, "dtype", self.a.dtype)


@dataclass(frozen=True, eq=False, slots=True, repr=False)
class Compare(Expr):
    """A comparison; its dtype is bool (with the operands' lanes)."""

    op: str
    a: Expr
    b: Expr
    dtype: DType = field(init=False)

    def __post_init__(self):
        if self.op not in COMPARE_OPS:
            raise ExprError(f"unknown comparison {self.op!r}")
        _check_same_dtype(self.op, self.a, self.b)
        object.__setattr__(self, "dtype", bool_.with_lanes(self.a.dtype.lanes))

    def __bool__(self):
        # `a == b` used as a Python bool asks whether the two are the same expression.
        if self.op == "eq":
            return structurally_equal(self.a, self.b)
        if self.op == "ne":
            return not structurally_equal(self.a, self.b)
        return Expr.__bool__(self)


@dataclass(frozen=True, eq=False, slots=True, repr=False)
class Logical(Expr):
    """`and` / `or` of two bool operands."""

    op: str
    a: Expr
    b: Expr
    dtype: DType = field(init=False)

    def __post_init__(self):
        if self.op not in LOGICAL_OPS:
            raise ExprError(f"unknown logical operator {self.op!r}")
        _check_same_dtype(self.op, self.a, self.b)
        if not self.a.dtype.is_bool:
            raise ExprError(f"logical {self.op} needs bool operands, got {self.a.dtype}")
        object.__setattr__(self, "dtype", self.a.dtype)


@dataclass(frozen=True, eq=False, slots=True, repr=False)
class Not(Expr):
    a: Expr
    dtype: DType = field(init=False)

    def __post_init__(self):
        if not self.a.dtype.is_bool:
            raise ExprError(f"logical not needs a bool operand, got {self.a.dtype}")
        object.__setattr__(self, "dtype", self.a.dtype)


@dataclass(frozen=True, eq=False, slots=True, repr=False)
class Select(Expr):
    """`cond ? true_value : false_value`, evaluating only the chosen side.

    Only the taken branch is evaluated, so a branch may read out of bounds
    where the condition rules it out (padding in a convolution).
    """

    cond: Expr
    true_value: Expr
    false_value: Expr
    dtype: DType = field(init=False)

    def __post_init__(self):
        _check_same_dtype("select", self.true_value, self.false_value)
        if not self.cond.dtype.is_bool:
            raise ExprError(f"select condition must be bool, got {self.cond.dtype}")
        if self.cond.dtype.lanes not in (1, self.true_value.dtype.lanes):
            raise ExprError("select condition lanes do not match its values")
        object.__setattr__(self, "dtype", self.true_value.dtype)


@dataclass(frozen=True, eq=False, slots=True, repr=False)
class Cast(Expr):
    dtype: DType
    value: Expr

    def __post_init__(self):
        if self.dtype.lanes != self.value.dtype.lanes:
            raise ExprError(f"cast from {self.value.dtype} to {self.dtype} changes lanes")


#: Math intrinsics on floats: name -> number of arguments. Each takes floats of one dtype
#: and returns that dtype (`abs` takes integers too).
INTRINSICS = {"exp": 1, "log": 1, "sqrt": 1, "rsqrt": 1, "tanh": 1, "sigmoid": 1, "erf": 1,
              "abs": 1, "floor": 1, "ceil": 1, "pow": 2, "fmax": 2, "fmin": 2,
              "nearbyint": 1, "round": 1, "trunc": 1, "exp2": 1, "exp10": 1, "log2": 1,
              "log10": 1, "log1p": 1, "sin": 1, "cos": 1, "tan": 1, "sinh": 1, "cosh": 1,
              "asin": 1, "acos": 1, "atan": 1, "asinh": 1, "acosh": 1, "atanh": 1,
              "atan2": 2, "hypot": 2, "copysign": 2, "nextafter": 2, "fmod": 2}
#: Bit counts: each takes an integer and returns a count of its dtype.
INTEGER_INTRINSICS = {"clz": 1, "popcount": 1}
#: Classifications: each takes a float and returns a bool.
PREDICATES = {"isnan": 1, "isinf": 1, "isfinite": 1}
#: Every intrinsic: the three tables above, and `ldexp(x, n)` = x * 2**n, which takes a float
#: and an int32 and returns the float's dtype.
_ALL_INTRINSICS = {**INTRINSICS, **INTEGER_INTRINSICS, **PREDICATES, "ldexp": 2}


@dataclass(frozen=True, eq=False, slots=True, repr=False)
class Call(Expr):
    """A math intrinsic (one of `INTRINSICS`, `INTEGER_INTRINSICS`, `PREDICATES`, or
    `ldexp`) applied to operands of the dtypes it takes; its dtype follows from them."""

    name: str
    args: tuple[Expr, ...]
    dtype: DType = field(init=False)

    def __post_init__(self):
        arity = _ALL_INTRINSICS.get(self.name)
        if arity is None:
            raise ExprError(f"unknown intrinsic {self.name!r}; known: "
                            f"{sorted(_ALL_INTRINSICS)}")
        if len(self.args) != arity:
            raise ExprError(f"{self.name} takes {arity} argument(s), got {len(self.args)}")
        object.__setattr__(self, "dtype", _call_dtype(self.name, self.args))

    @property
    def op(self) -> Op:
        """The operator called, by TVM's name: `tir.exp` (what lowering rules match)."""
        return Op(f"tir.{self.name}")


@dataclass(frozen=True, slots=True)
class Op:
    """The operator of a call, by name (`call.op.name == "tir.exp"`). TVM: `tvm.ir.Op`."""

    name: str


def _call_dtype(name: str, args: tuple[Expr, ...]) -> DType:
    """The dtype of the intrinsic `name` applied to `args`, checking what they are."""
    dtype = args[0].dtype
    if name == "ldexp":
        exponent = args[1].dtype
        if exponent.element.kind != "int" or exponent.bits != 32 or \
                exponent.lanes != dtype.lanes:
            raise ExprError(f"ldexp needs an int32 exponent with {dtype.lanes} lane(s), got "
                            f"{exponent}; cast it first")
    else:
        for arg in args[1:]:
            _check_same_dtype(name, args[0], arg)
    if name in INTEGER_INTRINSICS:
        if not dtype.is_int:
            raise ExprError(f"{name} needs an integer argument, got {dtype}; cast it first")
        return dtype
    if not dtype.is_float and name != "abs":
        raise ExprError(f"{name} needs a float argument, got {dtype}; cast it first")
    return bool_.with_lanes(dtype.lanes) if name in PREDICATES else dtype


@dataclass(frozen=True, eq=False, slots=True, repr=False)
class PureExternCall(Expr):
    """A call of the pure C function `name` (libm's `expf`, CUDA's `__expf`), whose result
    has `dtype`: TE's `call_pure_extern`. Pure: it depends on its arguments only, so a
    vector of it is one call per lane, and code may move or repeat it. A scalar call
    may take an argument of a vector dtype whole (CUDA's `__dp4a` of two `char4`s): in
    CUDA C it is the CUDA vector type (`char4`, `float4`); the CPU refuses it."""

    dtype: DType
    name: str
    args: tuple[Expr, ...]

    def __post_init__(self):
        if not self.name.isidentifier() or not self.name.isascii():
            raise ExprError(f"call_pure_extern needs a C function name, got {self.name!r}")
        for dtype in (self.dtype, *(arg.dtype for arg in self.args)):
            if dtype.is_bool or dtype.bits == 16:
                raise ExprError(f"call_pure_extern {self.name}: C functions take and return "
                                f"float32, float64 or integers here, got {dtype}; cast first")
        for arg in self.args:
            if arg.dtype.lanes != self.dtype.lanes and self.dtype.lanes != 1:
                raise ExprError(f"call_pure_extern {self.name}: argument {arg} has "
                                f"{arg.dtype.lanes} lane(s), the call {self.dtype.lanes}")


@dataclass(frozen=True, eq=False, slots=True, repr=False)
class OpCall(Expr):
    """A call of an intrinsic declared by the user (`tex.register_op_attr`, TVM's
    `call_intrin`), named as in TVM ("tir.mylog"), whose result has `dtype`. It has no
    code of its own: building replaces it by what its lowering rule for the target makes
    (`tex.register_intrin_lowering`), and a build without a rule fails."""

    dtype: DType
    name: str
    args: tuple[Expr, ...]

    def __post_init__(self):
        for arg in self.args:
            if arg.dtype.lanes != self.dtype.lanes:
                raise ExprError(f"call_intrin {self.name}: argument {arg} has "
                                f"{arg.dtype.lanes} lane(s), the call {self.dtype.lanes}")

    @property
    def op(self) -> Op:
        return Op(self.name)


@dataclass(frozen=True, eq=False, slots=True, repr=False)
class LLVMCall(Expr):
    """A call of the LLVM intrinsic `name` ("llvm.ctlz") of the arguments' types,
    returning `dtype`, in CPU code (TVM's `call_llvm_intrin` and `call_llvm_pure_intrin`:
    LLVM knows each intrinsic's effects and overloads). Scalars only."""

    dtype: DType
    name: str
    args: tuple[Expr, ...]

    def __post_init__(self):
        if not self.name.startswith("llvm.") or not self.name.isascii() or \
                not self.name.replace(".", "_").isidentifier():
            raise ExprError(f"call_llvm_intrin needs an LLVM intrinsic name such as "
                            f"'llvm.ctlz', got {self.name!r}")
        for dtype in (self.dtype, *(arg.dtype for arg in self.args)):
            if dtype.lanes != 1:
                raise ExprError(f"call_llvm_intrin {self.name}: scalar values only, got "
                                f"{dtype}")


#: The values SVE allows its vector length multiplier: vectors of 128 to 2048 bits.
VSCALE_RANGE = (1, 16)


@dataclass(frozen=True, eq=False, slots=True, repr=False)
class VScale(Expr):
    """The multiplier of a scalable vector's length (Arm SVE: the vector has `vscale`
    times 128 bits), an int32 in `VSCALE_RANGE` that the machine running the kernel
    fixes. Only a CPU target with scalable vectors (aarch64 with +sve) builds it
    (`llvm.vscale.i32`). TVM: `tir.vscale()`."""

    dtype: DType = field(default=int32, init=False)

    @property
    def name(self) -> str:
        return "vscale"

    @property
    def args(self) -> tuple:
        return ()

    @property
    def op(self) -> Op:
        return Op("tir.vscale")


@dataclass(frozen=True, eq=False, slots=True, repr=False)
class Let(Expr):
    """`body` with `var` bound to `value`."""

    var: Var
    value: Expr
    body: Expr
    dtype: DType = field(init=False)

    def __post_init__(self):
        object.__setattr__(self, "dtype", self.body.dtype)


@dataclass(frozen=True, eq=False, slots=True, repr=False)
class TensorRead(Expr):
    """`tensor[indices]` inside a tensor expression (before lowering)."""

    tensor: object  # tex.tensor.Tensor
    indices: tuple[Expr, ...]
    dtype: DType = field(init=False)

    def __post_init__(self):
        if len(self.indices) != len(self.tensor.shape):
            raise ExprError(f"tensor {self.tensor.name} has {len(self.tensor.shape)} "
                            f"dimension(s), indexed with {len(self.indices)}")
        for i, index in enumerate(self.indices):
            if not index.dtype.is_int or index.dtype.lanes != 1:
                raise ExprError(f"index {i} of {self.tensor.name} must be a scalar integer, "
                                f"got {index.dtype} ({index})")
        object.__setattr__(self, "dtype", self.tensor.dtype)


@dataclass(frozen=True, eq=False, slots=True, repr=False)
class Reduce(Expr):
    """A commutative reduction of `sources` over `axes`, keeping rows where `condition`.

    A tuple reducer (argmax) carries several sources; `value_index` says which
    result this node stands for. The node is legal only at the top of a
    compute body.
    """

    combiner: object  # tex.tensor.CommReducer
    sources: tuple[Expr, ...]
    axes: tuple  # tuple[tex.tensor.IterVar, ...]
    condition: Expr
    value_index: int
    dtype: DType = field(init=False)

    def __post_init__(self):
        if not self.axes:
            raise ExprError("a reduction needs at least one reduce axis")
        for k, axis in enumerate(self.axes):
            if axis.kind != "reduce":
                raise ExprError(f"axis {axis.name} is not a reduce axis; make it with "
                                "tex.reduce_axis")
            if any(other is axis for other in self.axes[:k]):
                raise ExprError(f"reduce axis {axis.name} is given twice; a reduction runs "
                                "over each of its axes once")
        object.__setattr__(self, "dtype", self.combiner.result_dtypes[self.value_index])

    @property
    def axis(self) -> tuple:
        """The reduce axes, by TVM's name (`Reduce.axis`)."""
        return self.axes

    @property
    def source(self) -> tuple[Expr, ...]:
        """The sources, by TVM's name (`Reduce.source`)."""
        return self.sources


def _check_same_dtype(op: str, a: Expr, b: Expr):
    if a.dtype != b.dtype:
        raise ExprError(f"operands of {op} have dtypes {a.dtype} and {b.dtype}; "
                        "build it with tex operators (they promote) or cast first")


from tex import ops  # noqa: E402  (operator sugar needs the node classes above)
