"""tex's thread pool: runs the chunks of a parallel loop on worker threads.

Kernels call one function, defined here in LLVM IR and JIT-compiled once per
process (`install`, which `tex.codegen.llvm_jit` calls before it loads a kernel
that declares it):

    void tex_parallel_for(void (*body)(i8* closure, i64 begin, i64 end), i8* closure, i64 n)

It runs `body` over [0, n) cut into contiguous chunks: about four per thread,
at least one iteration each. The calling thread and the workers claim chunks
from one atomic counter, so a thread that is not running (the machine is
busy, a worker is still waking up) takes none and delays nobody: the caller
returns once every chunk is claimed and every claimed chunk is finished.

The counter is one 64-bit word: job number (bits 32-63), chunk count (16-31)
and next chunk to claim (0-15). A thread reads the job's body, closure and n,
then claims a chunk with a compare-and-swap on the word it read; the swap
fails if the job changed meanwhile, so a late thread never runs a chunk of a
finished job with a newer job's body or closure. The caller publishes a job
with a release store of the word; claims are acquire.

Only one job runs at a time. A call that finds the pool busy (another Python
thread calls a kernel, or a parallel loop is called from inside one) runs
its whole loop on the calling thread. So does n == 1, and every call when
there are no workers: TEX_NUM_THREADS=1, or a machine without the futex
support below.

Workers (`config.num_threads() - 1`, read when the pool is compiled) are
started by the first call that uses them. An idle worker spins SPINS `pause`
instructions (some tens of microseconds), then sleeps on a futex; the caller
makes the wake-up system call only when a worker sleeps. The pool records the
pid that started its workers: a forked child (whose copy of the pool has no
threads) starts workers of its own at its first call. A child forked while a
job was running in another thread finds the pool busy and runs every loop
serially.

`void tex_set_num_threads(int n)` bounds every later job to n threads, the
caller included (n < 1: all of them); a library exports it. Worker k claims
chunks only while k < n - 1, so the others spin a while and sleep.
"""
from __future__ import annotations

import platform
import string
import sys

import llvmlite.binding as llvm

from tex import config
from tex.codegen import object_file
from tex.errors import BuildError

SYMBOL = "tex_parallel_for"
#: `void tex_set_num_threads(int n)`: bounds the threads of later jobs (n < 1: all).
SET_THREADS = "tex_set_num_threads"

#: Per machine: the futex system call's number and the spin-wait instruction's intrinsic
#: (an intrinsic, not inline assembly, which LLVM could assemble for this machine only).
_ARCHES = {"x86_64": (202, "declare void @llvm.x86.sse2.pause()",
                      "call void @llvm.x86.sse2.pause()"),
           "aarch64": (98, "declare void @llvm.aarch64.hint(i32)",
                       "call void @llvm.aarch64.hint(i32 1)")}  # 1: YIELD

#: Spin-wait instructions before an idle worker sleeps (and before a caller waiting for
#: claimed chunks yields its core): about 45 us on a Xeon where `pause` takes 11 ns.
SPINS = 4000

_IR = string.Template(r"""
; @word: job number << 32 | chunk count << 16 | next chunk to claim.
@word = internal global i64 0, align 64
@done = internal global i64 0, align 64       ; chunks of the current job finished
@job_body = internal global ptr null
@job_closure = internal global ptr null
@job_n = internal global i64 0
@sleepers = internal global i32 0, align 64   ; workers asleep or about to sleep
@wake = internal global i32 0                 ; the futex word; bumped to wake them
@busy = internal global i32 0                 ; the try-lock: 1 while a job runs
@wanted = internal global i32 ${workers}      ; workers to start
@workers = internal global i32 0              ; workers started by process @owner
@owner = internal global i32 0
@limit = internal global i32 ${threads}       ; threads a job may use (tex_set_num_threads)

declare i64 @syscall(i64, ...)
declare i32 @getpid()
declare i32 @sched_yield()
declare i32 @pthread_create(ptr, ptr, ptr, ptr)
declare i32 @pthread_detach(i64)

${pause_declaration}
define internal void @relax() {
  ${pause_call}
  ret void
}

define internal i1 @has_work(i64 %w) {
  %next = and i64 %w, 65535
  %shifted = lshr i64 %w, 16
  %chunks = and i64 %shifted, 65535
  %left = icmp ult i64 %next, %chunks
  ret i1 %left
}

; Chunk %k of %chunks over [0, %n): q = n / chunks iterations, one more for k < n % chunks.
define internal void @run_chunk(ptr %body, ptr %closure, i64 %n, i64 %chunks, i64 %k) {
  %q = udiv i64 %n, %chunks
  %r = urem i64 %n, %chunks
  %longer = icmp ult i64 %k, %r
  %longer_before = select i1 %longer, i64 %k, i64 %r
  %kq = mul i64 %k, %q
  %begin = add i64 %kq, %longer_before
  %extra = zext i1 %longer to i64
  %len = add i64 %q, %extra
  %end = add i64 %begin, %len
  call void %body(ptr %closure, i64 %begin, i64 %end)
  ret void
}

; Claims chunks of the current job and runs them until none is left to claim.
define internal void @run_chunks() {
entry:
  %first = load atomic i64, ptr @word acquire, align 8
  br label %check
check:
  %w = phi i64 [%first, %entry], [%seen, %claim], [%after, %run]
  %left = call i1 @has_work(i64 %w)
  br i1 %left, label %claim, label %out
claim:
  %body = load atomic ptr, ptr @job_body monotonic, align 8
  %closure = load atomic ptr, ptr @job_closure monotonic, align 8
  %n = load atomic i64, ptr @job_n monotonic, align 8
  %next = add i64 %w, 1
  %pair = cmpxchg ptr @word, i64 %w, i64 %next acq_rel acquire
  %seen = extractvalue {i64, i1} %pair, 0
  %won = extractvalue {i64, i1} %pair, 1
  br i1 %won, label %run, label %check
run:
  %k = and i64 %w, 65535
  %shifted = lshr i64 %w, 16
  %chunks = and i64 %shifted, 65535
  call void @run_chunk(ptr %body, ptr %closure, i64 %n, i64 %chunks, i64 %k)
  %ignored = atomicrmw add ptr @done, i64 1 release
  %after = load atomic i64, ptr @word acquire, align 8
  br label %check
out:
  ret void
}

; Whether worker %index (0, 1, ...) may claim chunks under the bound on threads.
define internal i1 @may_work(i32 %index) {
  %limit = load atomic i32, ptr @limit monotonic, align 4
  %others = sub i32 %limit, 1
  %allowed = icmp slt i32 %index, %others
  ret i1 %allowed
}

; Whether there are chunks to claim that worker %index may claim.
define internal i1 @work_for(i32 %index) {
  %w = load atomic i64, ptr @word seq_cst, align 8
  %left = call i1 @has_work(i64 %w)
  %allowed = call i1 @may_work(i32 %index)
  %both = and i1 %left, %allowed
  ret i1 %both
}

; A worker (its index passed as the pointer): runs chunks while there are any it may
; claim, spins, then sleeps until woken.
define internal ptr @worker(ptr %index_pointer) {
entry:
  %index = ptrtoint ptr %index_pointer to i32
  br label %work
work:
  %allowed = call i1 @may_work(i32 %index)
  br i1 %allowed, label %run, label %spin
run:
  call void @run_chunks()
  br label %spin
spin:
  %i = phi i32 [0, %work], [0, %run], [%i1, %idle]
  %left = call i1 @work_for(i32 %index)
  br i1 %left, label %work, label %idle
idle:
  call void @relax()
  %i1 = add i32 %i, 1
  %patient = icmp ult i32 %i1, ${spins}
  br i1 %patient, label %spin, label %sleep
sleep:
  ; Dekker with the caller: it stores @word then reads @sleepers; all seq_cst.
  %s0 = atomicrmw add ptr @sleepers, i32 1 seq_cst
  %seq = load atomic i32, ptr @wake seq_cst, align 4
  %left2 = call i1 @work_for(i32 %index)
  br i1 %left2, label %awake, label %wait
wait:
  %seq64 = zext i32 %seq to i64
  ; FUTEX_WAIT_PRIVATE: sleep unless @wake changed since %seq was read.
  %r = call i64 (i64, ...) @syscall(i64 ${futex}, ptr @wake, i64 128, i64 %seq64, ptr null)
  br label %awake
awake:
  %s1 = atomicrmw sub ptr @sleepers, i32 1 seq_cst
  br label %work
}

; Starts up to @wanted detached workers for process %pid; @workers counts those started.
define internal void @start_workers(i32 %pid) {
entry:
  %thread = alloca i64
  store i32 %pid, ptr @owner
  store i32 0, ptr @workers
  store atomic i32 0, ptr @sleepers seq_cst, align 4
  %wanted = load i32, ptr @wanted
  br label %loop
loop:
  %k = phi i32 [0, %entry], [%k1, %started]
  %more = icmp ult i32 %k, %wanted
  br i1 %more, label %create, label %out
create:
  %index = inttoptr i32 %k to ptr
  %err = call i32 @pthread_create(ptr %thread, ptr null, ptr @worker, ptr %index)
  %ok = icmp eq i32 %err, 0
  br i1 %ok, label %started, label %out
started:
  %t = load i64, ptr %thread
  %ignored = call i32 @pthread_detach(i64 %t)
  %k1 = add i32 %k, 1
  store i32 %k1, ptr @workers
  br label %loop
out:
  ret void
}

; Bounds the threads of every later job to %n (the caller included); %n < 1: all of them.
define void @${set_threads}(i32 %n) {
  %positive = icmp sgt i32 %n, 0
  %limit = select i1 %positive, i32 %n, i32 ${threads}
  store atomic i32 %limit, ptr @limit monotonic, align 4
  ret void
}

define void @${symbol}(ptr %body, ptr %closure, i64 %n) {
entry:
  %nothing = icmp sle i64 %n, 0
  br i1 %nothing, label %out, label %some
some:
  %one = icmp eq i64 %n, 1
  %wanted = load i32, ptr @wanted
  %alone = icmp eq i32 %wanted, 0
  %limit = load atomic i32, ptr @limit monotonic, align 4
  %bounded = icmp slt i32 %limit, 2
  %single = or i1 %alone, %bounded
  %serial = or i1 %one, %single
  br i1 %serial, label %inline, label %lock
lock:
  %pair = cmpxchg ptr @busy, i32 0, i32 1 acquire monotonic
  %got = extractvalue {i32, i1} %pair, 1
  br i1 %got, label %locked, label %inline
locked:
  %owner = load i32, ptr @owner
  %pid = call i32 @getpid()
  %ours = icmp eq i32 %owner, %pid
  br i1 %ours, label %ready, label %start
start:
  call void @start_workers(i32 %pid)
  br label %ready
ready:
  %workers = load i32, ptr @workers
  %none = icmp eq i32 %workers, 0
  br i1 %none, label %unlock_inline, label %publish
publish:
  ; chunks = min(n, 4 * threads, 65535), threads = min(workers + 1, limit)
  %all_threads = add i32 %workers, 1
  %limited = icmp slt i32 %limit, %all_threads
  %threads = select i1 %limited, i32 %limit, i32 %all_threads
  %threads64 = zext i32 %threads to i64
  %four = mul i64 %threads64, 4
  %fewer = icmp ult i64 %n, %four
  %c1 = select i1 %fewer, i64 %n, i64 %four
  %fits = icmp ult i64 %c1, 65535
  %chunks = select i1 %fits, i64 %c1, i64 65535
  store atomic ptr %body, ptr @job_body monotonic, align 8
  store atomic ptr %closure, ptr @job_closure monotonic, align 8
  store atomic i64 %n, ptr @job_n monotonic, align 8
  store atomic i64 0, ptr @done monotonic, align 8
  %old = load atomic i64, ptr @word monotonic, align 8
  %job = lshr i64 %old, 32
  %job1 = add i64 %job, 1
  %high = shl i64 %job1, 32
  %mid = shl i64 %chunks, 16
  %word = or i64 %high, %mid
  store atomic i64 %word, ptr @word seq_cst, align 8
  %asleep = load atomic i32, ptr @sleepers seq_cst, align 4
  %anyone = icmp ne i32 %asleep, 0
  br i1 %anyone, label %wake, label %work
wake:
  %bumped = atomicrmw add ptr @wake, i32 1 seq_cst
  ; FUTEX_WAKE_PRIVATE, all of them
  %r = call i64 (i64, ...) @syscall(i64 ${futex}, ptr @wake, i64 129, i64 2147483647)
  br label %work
work:
  call void @run_chunks()
  br label %wait
wait:
  %i = phi i32 [0, %work], [%i1, %relax], [%i1, %yield]
  %finished = load atomic i64, ptr @done acquire, align 8
  %all = icmp eq i64 %finished, %chunks
  br i1 %all, label %unlock, label %patience
patience:
  %i1 = add i32 %i, 1
  %patient = icmp ult i32 %i, ${spins}
  br i1 %patient, label %relax, label %yield
relax:
  call void @relax()
  br label %wait
yield:
  %y = call i32 @sched_yield()
  br label %wait
unlock:
  store atomic i32 0, ptr @busy release, align 4
  br label %out
unlock_inline:
  store atomic i32 0, ptr @busy release, align 4
  br label %inline
inline:
  call void %body(ptr %closure, i64 0, i64 %n)
  br label %out
out:
  ret void
}
""")

_address = None  # of SYMBOL, once compiled
_engine = None  # the pool's machine code: kept for the life of the process


def _arch(machine: str | None):
    """(futex system call number, declaration and call of the spin-wait intrinsic) of
    Linux on `machine` (default: this one), or None."""
    if machine is None:
        machine = platform.machine() if sys.platform.startswith("linux") else None
    return _ARCHES.get(machine)


def ir_text(machine: str | None = None) -> str:
    """The pool's LLVM module for Linux on `machine` ("x86_64", "aarch64"; default: this
    one): `config.num_threads() - 1` workers (none without futexes)."""
    futex, declaration, call = _arch(machine) or (0, "", "")
    workers = config.num_threads() - 1 if futex else 0
    return _IR.substitute(symbol=SYMBOL, set_threads=SET_THREADS, workers=workers,
                          threads=workers + 1, futex=futex, spins=SPINS,
                          pause_declaration=declaration, pause_call=call)


def _machine() -> llvm.TargetMachine:
    """The machine the pool is compiled for. Without optimisation: its IR is written in
    SSA form already, O0 compiles it in a third of O2's time (3 against 9 ms), and a
    parallel call costs the same (5.1-5.3 us per call of bench/overhead.py's kernel)."""
    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    return llvm.Target.from_triple(llvm.get_process_triple()).create_target_machine(opt=0,
                                                                                    jit=True)


def machine_description() -> str:
    """What the pool's object code depends on besides its IR: LLVM and the host CPU."""
    _machine()  # initialises LLVM's native target
    return (f"llvm {llvm.llvm_version_info}; {llvm.get_process_triple()}; "
            f"{llvm.get_host_cpu_name()}; {llvm.get_host_cpu_features().flatten()}")


def compile_object() -> bytes:
    """The pool's object code for this machine (what `install_object` loads). The caller
    holds `llvm_jit.LLVM_LOCK`."""
    module = llvm.parse_assembly(ir_text())
    module.verify()
    return _machine().emit_object(module)


def installed() -> bool:
    return _address is not None


def install_object(object_code: bytes) -> int:
    """Load the pool from `compile_object`'s output (this process's or an earlier one's,
    on the same machine) and define SYMBOL for the JIT's symbol lookup, so that kernels
    loaded afterwards call it; returns its address. Does nothing once installed. Raises
    BuildError, before MCJIT sees it, if the object is malformed, lacks SYMBOL or calls
    what this process does not define (`object_file.check_object`). The caller holds
    `llvm_jit.LLVM_LOCK` (LLVM's global state is not thread-safe)."""
    global _address, _engine
    if _address is None:
        externals = object_file.check_object(object_code, platform.machine(), (SYMBOL,))
        engine = llvm.create_mcjit_compiler(llvm.parse_assembly(""), _machine())
        missing = sorted(name for name in externals if llvm.address_of_symbol(name) is None)
        if missing:
            raise BuildError(f"the thread pool calls {', '.join(missing)}, which this "
                             "process does not define")
        engine.add_object_file(llvm.ObjectFileRef.from_data(object_code))
        engine.finalize_object()
        address = engine.get_function_address(SYMBOL)
        if not address:
            raise BuildError(f"the thread pool's object code has no {SYMBOL}")
        _engine, _address = engine, address
        llvm.add_symbol(SYMBOL, _address)
    return _address


def install() -> int:
    """Compile and install the pool (once per process); see `install_object`."""
    return _address if _address is not None else install_object(compile_object())
