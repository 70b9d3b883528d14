"""LLVM's optimisation and code generation in a helper process, under a time bound.

With TEX_BUILD_TIMEOUT set (seconds), `llvm_jit.compile_ir` hands the module
to a worker process (`spawn`ed once, then reused) and waits at most that
long for its object code; the object is loaded in this process as stored
object code is. A build that runs over has its worker killed (never left
running) and raises BuildError naming the kernel; the next build starts a
fresh worker. Without the variable, builds run in this process, unbounded.
"""
from __future__ import annotations

import multiprocessing
import threading

from tex.errors import BuildError

_LOCK = threading.Lock()
_worker = None  # (process, connection), started on first use


def _serve(connection):
    """The worker's loop: (ir_text, name, target text, definitions) in, (ll, object code)
    or ("error", message) out."""
    from tex.codegen import llvm_jit
    from tex.target import as_target
    while True:
        try:
            ir_text, name, target, definitions = connection.recv()
        except EOFError:
            return
        try:
            connection.send(llvm_jit.optimized_object(ir_text, name, as_target(target),
                                                      definitions))
        except BuildError as err:
            connection.send(("error", str(err)))


def _started():
    global _worker
    if _worker is None or not _worker[0].is_alive():
        context = multiprocessing.get_context("spawn")
        ours, theirs = context.Pipe()
        process = context.Process(target=_serve, args=(theirs,), daemon=True,
                                  name="tex-build-worker")
        process.start()
        theirs.close()
        _worker = (process, ours)
    return _worker


def _stop():
    """Kill the worker and wait for it: a build it was running is abandoned."""
    global _worker
    if _worker is not None:
        process, connection = _worker
        process.kill()
        process.join()
        connection.close()
        _worker = None


def optimized_object(ir_text: str, name: str, target, definitions, seconds: float):
    """(optimised IR text, object code) of the module, made by the worker within `seconds`;
    BuildError when it takes longer (the worker is killed) or fails."""
    with _LOCK:
        process, connection = _started()
        connection.send((ir_text, name, str(target), tuple(definitions)))
        if not connection.poll(seconds):
            _stop()
            raise BuildError(f"building kernel {name!r} took more than {seconds:g} s "
                             "(TEX_BUILD_TIMEOUT); LLVM was stopped. Make the loop nest "
                             "smaller (less unrolling, narrower vectors) or raise the bound")
        try:
            result = connection.recv()
        except EOFError:
            _stop()
            raise BuildError(f"the build worker died while building kernel {name!r}") from None
    if result[0] == "error":
        raise BuildError(result[1])
    return result
