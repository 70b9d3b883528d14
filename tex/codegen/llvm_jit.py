"""LLVM IR text -> machine code in this process: verify, optimise at O3, MCJIT.

One `llvmlite.binding.TargetMachine` per `Target` (cached) runs the O3 pass
pipeline, emits the object code and prints assembly on demand. The object
code is then loaded into an MCJIT execution engine of its own (built around
an empty module), so a compile and a load of stored object code
(`load_object`, used by the disk cache in `tex.runtime.cache`) go through
the same path. Each module gets its own engine, because an engine takes
ownership of the target machine handed to it; creating that second machine
costs about a millisecond. The engine (and so the machine code) lives
exactly as long as its `CompiledModule`: when that is collected, the engine is
disposed of (under LLVM_LOCK) and its machine code unmapped.

A module compiled for the disk cache defines a key symbol, `tex_key_<sha256
of the entry's key>` (`key_symbol`, `compile_ir(..., key=...)`): the object
code itself says which entry it belongs to, so that object code moved from
one entry into another is refused when it is loaded (`load_object`).

Object code that tex did not just compile is checked before MCJIT sees it
(`object_file.check_object`: its ELF structure, the machine, relocations
MCJIT implements, the entry point and key symbol defined): LLVM trusts the
objects it loads, and aborts the process on a damaged one. Before any object
code is loaded, its undefined symbols are read
(`tex.codegen.object_file`) and each must resolve: tex's thread pool
(`tex_parallel_for`, `tex.codegen.thread_pool`) and the runtime routines
LLVM's code generator may call (`tex.codegen.llvm_builtins`) are compiled and
made known to the JIT's symbol lookup first, and so is the entry of packed
calls (`tex_call_packed`, `tex.codegen.packed_func`); anything else must be
defined by the process (libm, libc), or the load raises BuildError naming it.

Code for another machine (`-mtriple`) is compiled and kept, to print and
export, but never loaded.
"""
from __future__ import annotations

import hashlib
import re
import threading
import weakref
from functools import lru_cache

import llvmlite.binding as llvm
from llvmlite import ir

from tex import config
from tex.codegen import (build_worker, cpu_support, llvm_builtins, object_file, packed_func,
                         thread_pool)
from tex.errors import ArgumentError, BuildError
from tex.target import Target

SOURCE_FORMATS = ("ll", "asm")
KEY_SYMBOL_PREFIX = "tex_key_"
#: Held around every use of LLVM's global context, which is not thread-safe.
LLVM_LOCK = threading.RLock()


@lru_cache(maxsize=1)
def _initialize():
    llvm.initialize_all_targets()  # this machine's and the ones -mtriple may name
    llvm.initialize_all_asmprinters()
    return True


def _llvm_features(target: Target) -> str:
    features = target.features
    if target.vector_bits == 512:
        # Many AVX-512 CPUs are tuned to prefer 256-bit vectors, which makes LLVM split
        # our explicit 512-bit vectors in two; the Target says 512, so use 512.
        features = ",".join(filter(None, (features, "-prefer-256-bit")))
    return features


def _new_target_machine(target: Target, reloc: str = "default") -> llvm.TargetMachine:
    _initialize()
    if target.kind != "llvm":
        raise BuildError(f"the LLVM backend cannot compile for target {str(target)!r}")
    llvm_target = llvm.Target.from_triple(target.triple)
    return llvm_target.create_target_machine(cpu=target.cpu, features=_llvm_features(target),
                                             opt=3, reloc=reloc, jit=reloc == "default")


def shared_library_object(ll: str, exported, target: Target, hidden=None) -> bytes:
    """The object code of the optimised module `ll` for a shared library: compiled as a
    kernel is for `target`, but position-independent, and with every function and
    variable it defines but those named in `exported` made internal (so that modules
    linked together cannot clash). `hidden` maps names of functions it defines to new
    names, kept external for the library's other objects but hidden from its users."""
    hidden = hidden or {}
    with LLVM_LOCK:
        _initialize()
        module = llvm.parse_assembly(ll)
        module.triple = target.triple
        for value in list(module.functions) + list(module.global_variables):
            if value.is_declaration:
                continue
            if value.name in hidden:
                value.name = hidden[value.name]
                value.visibility = "hidden"
            elif value.name not in exported:
                value.linkage = "internal"
        return _new_target_machine(target, reloc="pic").emit_object(module)


@lru_cache(maxsize=None)
def target_machine(target: Target) -> llvm.TargetMachine:
    """The shared machine of `target`: runs the pass pipeline, prints assembly."""
    return _new_target_machine(target)


def module_header(target: Target) -> tuple[str, str]:
    """(triple, data layout) a module for `target` must declare."""
    tm = target_machine(target)
    return tm.triple, str(tm.target_data)


def machine_description(target: Target) -> str:
    """Everything about `target`'s machine that the object code depends on, as one line:
    LLVM's version, the triple, CPU name, feature string and data layout given to LLVM,
    and whether TEX_LLVM_CLAIMS=0 strips the IR's claims."""
    return _machine_line(target) + ("" if config.llvm_claims() else "; claims stripped")


@lru_cache(maxsize=None)
def _machine_line(target: Target) -> str:
    tm = target_machine(target)
    version = ".".join(map(str, llvm.llvm_version_info))
    return f"llvm {version}; {tm.triple}; {target.cpu}; {_llvm_features(target)}; " \
           f"{tm.target_data}"


def _optimize(module: llvm.ModuleRef, target: Target):
    pto = llvm.create_pipeline_tuning_options(speed_level=3)
    pto.loop_vectorization = True
    pto.slp_vectorization = True
    pto.loop_unrolling = True
    pb = llvm.create_pass_builder(target_machine(target), pto)
    pb.getModulePassManager().run(module, pb)


class CompiledModule:
    """Machine code for one kernel, with its optimised IR and assembly for reading.

    `address` is the entry point `void name(i8** buffers, i64* sizes)`;
    `object_code` the relocatable object it was loaded from (what the disk
    cache stores). `loaded_from_disk` is False here; `tex.runtime.cache` sets
    it on modules it loaded from its directory. `cannot_run` says why this
    process must not run the code (AMX it may not use: `tex.codegen.cpu_support`),
    else None.
    """

    def __init__(self, name: str, ll: str, object_code: bytes, engine, target: Target):
        self.name = name
        self.target = target
        self.object_code = object_code
        self.loaded_from_disk = False
        self._ll = ll
        self._asm = None
        self._engine = engine  # keeps the machine code alive; None for another machine's
        if engine is not None:
            weakref.finalize(self, _dispose, engine).atexit = False
        self.cannot_run = cpu_support.cannot_run(target, ll)
        self.address = engine.get_function_address(name) if engine is not None else None
        if engine is not None and not self.address:
            raise BuildError(f"compiled module has no function {name!r}")

    def get_source(self, fmt: str = "ll") -> str:
        if fmt == "ll":
            return self._ll
        if fmt == "asm":
            if self._asm is None:
                # Print from a fresh parse: codegen mutates the module it runs on.
                with LLVM_LOCK:
                    module = llvm.parse_assembly(self._ll)
                    self._asm = target_machine(self.target).emit_assembly(module)
            return self._asm
        raise ArgumentError(f"unknown source format {fmt!r}; expected one of {SOURCE_FORMATS}")


def _dispose(engine):
    """Free `engine` and its machine code, holding LLVM's lock (it edits LLVM's context)."""
    with LLVM_LOCK:
        engine.close()


def key_symbol(key: str) -> str:
    """The symbol that marks the object code of the disk cache entry of `key`."""
    return KEY_SYMBOL_PREFIX + hashlib.sha256(key.encode()).hexdigest()


def compile_ir(ir_text: str, name: str, target: Target, definitions=(),
               key: str | None = None) -> CompiledModule:
    """Verify, optimise (O3) and JIT-compile an LLVM module whose entry point is `name`:
    the module's object code is emitted and loaded as `load_object` would load it.
    `definitions` are LLVM IR modules defining functions the module declares (intrinsic
    calls); they are linked in, their functions made internal. With `key` (a disk cache
    entry's), the module also defines `key_symbol(key)`. With TEX_LLVM_CLAIMS=0 the
    claims of `ir_text` and `definitions` are stripped. With TEX_BUILD_TIMEOUT, the
    object code is made in a helper process within that bound (`build_worker`)."""
    _initialize()
    if not config.llvm_claims():
        ir_text = strip_claims(ir_text)
        definitions = [strip_claims(text) for text in definitions]
    if key is not None:
        ir_text += f"\n@{key_symbol(key)} = constant i8 0\n"
    seconds = config.build_timeout()
    if seconds is None:
        ll, object_code = optimized_object(ir_text, name, target, definitions)
    else:
        ll, object_code = build_worker.optimized_object(ir_text, name, target, definitions,
                                                        seconds)
    with LLVM_LOCK:
        return _load(object_code, name, ll, target)


def optimized_object(ir_text: str, name: str, target: Target, definitions=()):
    """(optimised IR text, object code) of the module `ir_text` (see `compile_ir`)."""
    _initialize()
    with LLVM_LOCK:  # LLVM's global context is not thread-safe
        try:
            module = llvm.parse_assembly(ir_text)
            for text in definitions:
                _link_definition(module, text)
            module.verify()
        except RuntimeError as err:
            raise BuildError(f"tex produced invalid LLVM IR for {name!r}: {err}\n{ir_text}") \
                from None
        _optimize(module, target)
        ll = str(module)  # before emitting: codegen mutates the module
        return ll, target_machine(target).emit_object(module)


#: The flags and attributes that promise LLVM facts about values and pointers. tex emits
#: `nsw`, `inbounds` and `noalias` (`tex.codegen.llvm`, `llvm_expr`); the others are
#: stripped too, should an imported module or a later emitter carry them.
CLAIM_TOKENS = ("nsw", "nuw", "exact", "inbounds", "noalias", "nonnull", "dereferenceable",
                "!range", "!nonnull", "!invariant.load", "!alias.scope", "!noalias")
_CLAIMS = re.compile(r" (?:nsw|nuw|exact|inbounds|noalias|nonnull)\b"
                     r"| dereferenceable(?:_or_null)?\(\d+\)"
                     r", !(?:range|nonnull|invariant\.load|alias\.scope|noalias) !\d+")


def strip_claims(ir_text: str) -> str:
    """`ir_text` without the flags, attributes and metadata that promise LLVM facts about
    values and pointers (`CLAIM_TOKENS`): what TEX_LLVM_CLAIMS=0 compiles, so that a test
    run can show no result depends on one of them being wrong. (The alignment loads and
    stores claim is made 1 where it is emitted, `llvm_expr.element_align`.)"""
    return _CLAIMS.sub("", ir_text)


def defined_functions(text: str, what: str) -> dict[str, ir.FunctionType]:
    """The functions the LLVM IR module `text` defines, by name, with their types; raises
    BuildError naming `what` when `text` is not LLVM IR."""
    _initialize()
    with LLVM_LOCK:
        try:
            module = llvm.parse_assembly(text)
        except RuntimeError as err:
            raise BuildError(f"{what} is not an LLVM IR module: {str(err).strip()}") from None
        return {f.name: f.global_value_type.as_ir(ir.global_context)
                for f in module.functions if not f.is_declaration}


def _link_definition(module: llvm.ModuleRef, text: str):
    """Link the LLVM IR module `text` into `module`; the functions it defines become internal."""
    other = llvm.parse_assembly(text)
    other.triple, other.data_layout = module.triple, module.data_layout
    defined = [f.name for f in other.functions if not f.is_declaration]
    try:
        module.link_in(other)
    except RuntimeError as err:
        raise BuildError(f"cannot link the LLVM IR module defining {', '.join(defined)} into "
                         f"the kernel: {str(err).strip()}") from None
    for fn in defined:
        module.get_function(fn).linkage = "internal"


def load_object(object_code: bytes, name: str, ll: str, target: Target,
                key: str) -> CompiledModule:
    """The CompiledModule of object code that `compile_ir(..., key=key)` produced (in any
    process) for `target`, whose entry point is `name` and optimised IR `ll`; the IR is not
    parsed. Raises BuildError, before MCJIT sees the object, if it is malformed or for
    another machine (`object_file.check_object`), if it or `ll` does not define `name` and
    `key_symbol(key)`, or if a function it declares cannot be found in this process.
    """
    marker = key_symbol(key)
    externals = object_file.check_object(object_code, target.machine, (name, marker))
    if f"@{marker} = " not in ll or f"@{name}(" not in ll:
        raise BuildError(f"the IR stored with {name!r} is not that of its object code")
    _initialize()
    with LLVM_LOCK:
        return _load(object_code, name, ll, target, externals)


def _load(object_code: bytes, name: str, ll: str, target: Target,
          externals: frozenset[str] | None = None) -> CompiledModule:
    """Load `object_code` into an engine of its own; `externals` are its undefined symbols
    when the caller has read them."""
    if not cpu_support.runs_on_this_machine(target):
        return CompiledModule(name, ll, object_code, None, target)  # to print or export
    engine = llvm.create_mcjit_compiler(llvm.parse_assembly(""), _new_target_machine(target))
    if externals is None:
        externals = object_file.undefined_symbols(object_code)
    _resolve_externals(externals, name)  # after the engine: it loads the process's symbols
    engine.add_object_file(llvm.ObjectFileRef.from_data(object_code))
    engine.finalize_object()
    return CompiledModule(name, ll, object_code, engine, target)


def _resolve_externals(externals: frozenset[str], name: str):
    """Make sure every symbol in `externals` (those an object refers to) resolves to code
    we know, or raise BuildError naming the ones that do not. (MCJIT leaves an unresolved
    call pointing at address 0.)

    tex's thread pool and tex's own runtime routines (`tex.codegen.llvm_builtins`: float
    conversions the code generator lowered to calls) are compiled and defined first when
    the object calls them, and so is the entry of packed calls (`tex.codegen.packed_func`);
    anything else (libm, memcpy) must be defined by the process.
    """
    if thread_pool.SYMBOL in externals:
        thread_pool.install()
    if externals & llvm_builtins.ROUTINES:
        llvm_builtins.install()
    if packed_func.SYMBOL in externals:
        packed_func.install()
    missing = sorted(f for f in externals if llvm.address_of_symbol(f) is None)
    if missing:
        raise BuildError(f"{name!r} calls {', '.join(missing)}, which neither tex nor this "
                         "process defines")
