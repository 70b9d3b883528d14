"""Calls of C functions by name (`tex.tir.call_extern`) in LLVM IR.

A kernel's `ExternCall`s call functions that the LLVM IR modules it imports
(`LoweredFunc.imports`, from pragma import_llvm) define, or else functions of
the process (libc, libm; `tex.codegen.llvm_jit` refuses a symbol that nothing
defines). `Imports` keeps those modules, for `build` to link in, and the types
of the functions they define, which their calls are declared with;
`call_arguments` converts each argument of a call to its parameter's type as
C converts them, so that a Python int (int64 in tex) may be passed for an
`int`. A function no module defines is declared as its first call's
arguments are typed.
"""
from __future__ import annotations

from llvmlite import ir

from tex.codegen import llvm_jit
from tex.dtype import DType, as_dtype, bool_, float16, float32, float64
from tex.errors import BuildError
from tex.ir import ExternCall

_FLOATS = {ir.HalfType: float16, ir.FloatType: float32, ir.DoubleType: float64}


class Imports:
    """The LLVM IR modules a kernel imports (`texts`) and the functions they define."""

    def __init__(self, imports):
        texts, self.functions = [], {}
        for language, text in imports:
            if language != "llvm":
                raise BuildError("pragma import_c gives C source, which tex compiles for CUDA "
                                 "targets only; for a CPU, compile it to LLVM IR (clang -S "
                                 "-emit-llvm) and give that with pragma import_llvm")
            self.functions.update(llvm_jit.defined_functions(
                text, "the value of pragma import_llvm"))
            texts.append(text)
        self.texts: tuple[str, ...] = tuple(texts)

    def declaration(self, module: ir.Module, name: str, result: ir.Type, args) -> ir.Function:
        """The declaration of `name` in `module`: as an earlier call declared it, typed as
        an imported module defines it, or else from `result` and `args`."""
        fn = module.globals.get(name)
        if fn is None:
            fn = ir.Function(module, self.functions.get(name) or
                             ir.FunctionType(result, list(args)), name)
        return fn


def call_arguments(em, call: ExternCall, fn: ir.Function, values: list) -> list:
    """`values`, the LLVM values of `call`'s arguments, as the parameters of `fn` take
    them; `em` (an ExprEmitter) converts scalars. Raises BuildError when the count or
    a kind (pointer or value) differs."""
    params = fn.function_type.args
    if len(values) != len(params) and not (fn.function_type.var_arg
                                           and len(values) > len(params)):
        raise BuildError(f"call_extern {call.name}: {len(values)} argument(s) passed, the "
                         f"function takes {len(params)} ({fn.function_type})")
    converted = []
    for k, (value, param) in enumerate(zip(values, params)):
        is_pointer = k in call.pointers
        if is_pointer != isinstance(param, ir.PointerType):
            given = "a pointer" if is_pointer else f"a {call.args[k].dtype} value"
            raise BuildError(f"call_extern {call.name}: argument {k} is {given}, where the "
                             f"function takes {param}")
        if is_pointer:
            converted.append(value if value.type == param else em.b.bitcast(value, param))
        else:
            converted.append(em.convert(value, call.args[k].dtype, _dtype_of(param, call, k)))
    return converted + values[len(params):]


def _dtype_of(param: ir.Type, call: ExternCall, k: int) -> DType:
    """The dtype of a scalar parameter of an extern function (a C int is int32)."""
    if isinstance(param, ir.IntType):
        return bool_ if param.width == 1 else as_dtype(f"int{param.width}")
    for kind, dtype in _FLOATS.items():
        if isinstance(param, kind):
            return dtype
    raise BuildError(f"call_extern {call.name}: parameter {k} has type {param}, which tex "
                     "does not pass; use integers, floats and pointers")
