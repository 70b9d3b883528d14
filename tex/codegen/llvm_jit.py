"""LLVM IR text -> machine code in this process: verify, optimise at O3, MCJIT.

One `llvmlite.binding.TargetMachine` per `Target` (cached) runs the O3 pass
pipeline and prints assembly on demand. Each compiled module gets its own
MCJIT execution engine, because an engine takes ownership of the target
machine handed to it; creating that second machine costs about a millisecond.
The engine (and so the machine code) lives exactly as long as its
`CompiledModule`.

Parallel loops call libgomp (`GOMP_parallel`); `openmp_available()` loads it
into the process once, so that the JIT's symbol lookup finds it.
"""
from __future__ import annotations

import ctypes.util
import threading
import warnings
from functools import lru_cache

import llvmlite.binding as llvm

from tex.errors import ArgumentError, BuildError
from tex.target import Target

SOURCE_FORMATS = ("ll", "asm")
_LOCK = threading.RLock()


@lru_cache(maxsize=1)
def _initialize():
    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    return True


def _llvm_features(target: Target) -> str:
    features = target.features
    if target.vector_bits == 512:
        # Many AVX-512 CPUs are tuned to prefer 256-bit vectors, which makes LLVM split
        # our explicit 512-bit vectors in two; the Target says 512, so use 512.
        features = ",".join(filter(None, (features, "-prefer-256-bit")))
    return features


def _new_target_machine(target: Target) -> llvm.TargetMachine:
    _initialize()
    if target.kind != "llvm":
        raise BuildError(f"the LLVM backend cannot compile for target {str(target)!r}")
    llvm_target = llvm.Target.from_triple(llvm.get_process_triple())
    return llvm_target.create_target_machine(cpu=target.cpu, features=_llvm_features(target),
                                             opt=3, jit=True)


@lru_cache(maxsize=None)
def target_machine(target: Target) -> llvm.TargetMachine:
    """The shared machine of `target`: runs the pass pipeline, prints assembly."""
    return _new_target_machine(target)


def module_header(target: Target) -> tuple[str, str]:
    """(triple, data layout) a module for `target` must declare."""
    tm = target_machine(target)
    return tm.triple, str(tm.target_data)


@lru_cache(maxsize=1)
def openmp_available() -> bool:
    """Load libgomp into the process (once); False, with one warning, if it is missing."""
    for name in (ctypes.util.find_library("gomp"), "libgomp.so.1"):
        if not name:
            continue
        try:
            llvm.load_library_permanently(name)
            return True
        except RuntimeError:
            continue
    warnings.warn("tex: libgomp (the OpenMP runtime) was not found; parallel loops will "
                  "run serially", RuntimeWarning, stacklevel=3)
    return False


def _optimize(module: llvm.ModuleRef, target: Target):
    pto = llvm.create_pipeline_tuning_options(speed_level=3)
    pto.loop_vectorization = True
    pto.slp_vectorization = True
    pto.loop_unrolling = True
    pb = llvm.create_pass_builder(target_machine(target), pto)
    pb.getModulePassManager().run(module, pb)


class CompiledModule:
    """Machine code for one kernel, with its optimised IR and assembly for reading.

    `address` is the entry point `void name(i8** buffers, i64* sizes)`.
    """

    def __init__(self, name: str, ll: str, engine, target: Target):
        self.name = name
        self.target = target
        self._ll = ll
        self._asm = None
        self._engine = engine  # keeps the machine code alive
        self.address = engine.get_function_address(name)
        if not self.address:
            raise BuildError(f"compiled module has no function {name!r}")

    def get_source(self, fmt: str = "ll") -> str:
        if fmt == "ll":
            return self._ll
        if fmt == "asm":
            if self._asm is None:
                # Print from a fresh parse: codegen mutates the module it runs on.
                with _LOCK:
                    module = llvm.parse_assembly(self._ll)
                    self._asm = target_machine(self.target).emit_assembly(module)
            return self._asm
        raise ArgumentError(f"unknown source format {fmt!r}; expected one of {SOURCE_FORMATS}")


def compile_ir(ir_text: str, name: str, target: Target) -> CompiledModule:
    """Verify, optimise (O3) and JIT-compile an LLVM module whose entry point is `name`."""
    _initialize()
    with _LOCK:  # LLVM's global context is not thread-safe
        return _compile(ir_text, name, target)


def _compile(ir_text: str, name: str, target: Target) -> CompiledModule:
    try:
        module = llvm.parse_assembly(ir_text)
        module.verify()
    except RuntimeError as err:
        raise BuildError(f"tex produced invalid LLVM IR for {name!r}: {err}\n{ir_text}") from None
    _optimize(module, target)
    ll = str(module)
    engine = llvm.create_mcjit_compiler(module, _new_target_machine(target))
    engine.finalize_object()
    return CompiledModule(name, ll, engine, target)
