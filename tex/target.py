"""`Target`: the one description of the machine a kernel is compiled for.

A target is parsed from a string, TVM style::

    Target("llvm")                              # this host: its CPU, features, cores
    Target("llvm -mcpu=skylake-avx512")         # another x86 CPU (features from its name)
    Target("llvm -mattr=-avx512f")              # the host, minus a feature
    Target("llvm -fastmath")                    # allow LLVM's fast-math flags
    Target("llvm -mtriple=aarch64-linux-gnu -mcpu=neoverse-v1")   # cross-compile for aarch64
    Target("cuda")                              # the GPU present (else sm_80)
    Target("cuda -arch=sm_90")                  # a given NVIDIA architecture

Options of `llvm`:

=============  ==============================================================
``-mcpu=X``    the CPU to tune and select instructions for: ``native`` (the
               host), an x86-64 level (``x86-64-v2|v3|v4``) or any CPU LLVM
               knows for the triple
``-mattr=L``   comma-separated ``+feature`` / ``-feature`` changes
``-mtriple=T`` the machine to compile for, ``x86_64-linux-gnu`` or
               ``aarch64-linux-gnu`` (default: this one); another machine's
               kernels can be printed and exported, not run here
``-fastmath``  float arithmetic may be reassociated and assume no NaN/Inf
=============  ==============================================================

Options of `cuda`: ``-arch=sm_NN`` (default: the architecture of the first GPU
present, else sm_80, so that building works on a machine without one).
`cuda(arch="sm_90")` builds the same target, as TVM's `tvm.target.cuda` does.

`str(target)` is canonical (options in a fixed order, ``-mcpu=native``
dropped), round-trips through `Target(...)`, and is what targets compare and
hash by; codegen, legality checks, tuner features and cache keys all read
the machine from here.

As in TVM, a target is also a context: inside ``with Target("cuda"):``,
`Target.current()` is that target and `tex.build` without a target builds
for it. `Target("cuda", host="llvm")` keeps `host` as a Target; tex's host
code is Python and the CUDA driver, so the host changes nothing that is built.
"""
from __future__ import annotations

import contextvars
import os
import re
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

from tex.dtype import DType
from tex.errors import BuildError

_OPTIONS = {"llvm": {"mcpu": "value", "mattr": "value", "mtriple": "value", "fastmath": "flag"},
            "cuda": {"arch": "value"}}

# x86 CPUs LLVM knows, by widest vector unit the rules below care about.
_AVX512_CPUS = frozenset("""
    knl knm skylake-avx512 skx cascadelake cooperlake cannonlake icelake-client icelake-server
    rocketlake tigerlake sapphirerapids emeraldrapids graniterapids graniterapids-d
    diamondrapids znver4 znver5 x86-64-v4""".split())
_AVX2_CPUS = frozenset("""
    haswell core-avx2 broadwell skylake alderlake raptorlake meteorlake arrowlake arrowlake-s
    lunarlake pantherlake gracemont sierraforest grandridge clearwaterforest znver1 znver2
    znver3 bdver4 x86-64-v3""".split())
_SSE_CPUS = frozenset("""
    generic x86-64 x86-64-v2 core2 penryn nehalem corei7 westmere sandybridge corei7-avx
    ivybridge core-avx-i bonnell atom silvermont slm goldmont goldmont-plus tremont btver1
    btver2 bdver1 bdver2 bdver3 k8 opteron athlon64 amdfam10 barcelona""".split())
_X86_CPUS = _AVX512_CPUS | _AVX2_CPUS | _SSE_CPUS

#: The machines tex compiles for: LLVM's architecture name -> the name Linux reports.
_MACHINES = {"x86_64": "x86_64", "aarch64": "aarch64", "arm64": "aarch64"}


class TargetKind(str):
    """A target's kind, "llvm" or "cuda": a string (`target.kind == "cuda"`) with TVM's
    `target.kind.name`."""

    __slots__ = ()

    @property
    def name(self) -> str:
        return str(self)


#: Per CUDA architecture number: (shared bytes per block with opt-in, threads per SM),
#: from the CUDA C Programming Guide's table of compute capabilities.
_GPU_LIMITS = {70: (96 * 1024, 2048), 72: (96 * 1024, 2048), 75: (64 * 1024, 1024),
               80: (163 * 1024, 2048), 86: (99 * 1024, 1536), 87: (163 * 1024, 1536),
               89: (99 * 1024, 1536), 90: (227 * 1024, 2048), 100: (227 * 1024, 2048),
               120: (99 * 1024, 1536)}

#: The targets of the `with Target(...):` blocks being run, innermost last.
_entered: contextvars.ContextVar = contextvars.ContextVar("entered_targets", default=())


class Target:
    """A compilation target parsed from a string such as ``"llvm -mcpu=skylake-avx512"``.

    Attributes (CPU targets): `kind` ("llvm"), `triple` (LLVM's target triple),
    `machine` ("x86_64" or "aarch64"), `cpu` (LLVM CPU name), `features`
    (the LLVM feature string: the host's when `-mcpu` is not given, else only
    the `-mattr` changes, LLVM deriving the rest from the CPU name),
    `enabled_features` (the features known on, by name: all the host's without
    `-mcpu`, else those tex knows of the CPU, `-mattr` applied),
    `vector_bits` (512 with avx512f, 256 with avx2, else 128), `vector_registers`
    (32 with AVX-512 and on aarch64, else 16), `cache_bytes` (the sizes of the L1
    data and L2 caches of one core and of the last-level cache, which the cores
    share: this machine's, read from Linux, when `-mcpu` is not given, else typical
    sizes), `num_cores` (cores of this machine), `fastmath`, and `scalable_vectors`
    (aarch64 with +sve or +sve2, which `tex.tir.vscale()` needs). CUDA targets have
    `kind` "cuda",
    `arch` (e.g. "sm_80") and the limits lowering checks: `max_threads_per_block`,
    `max_block` and `max_grid` (per dimension x, y, z), `max_shared_bytes`
    (static shared memory per block), `max_dynamic_shared_bytes` (shared memory per
    block a kernel may opt in to, as dynamic shared memory: 163 KB on sm_80, 227 KB on
    sm_90), `max_threads_per_sm` (resident threads per multiprocessor) and
    `warp_size`. Every target has `host`: the
    CPU Target given as `host=` (None without one). TVM: `tvm.target.Target`.
    """

    __slots__ = ("kind", "host", "triple", "machine", "cpu", "features", "enabled_features",
                 "vector_bits", "vector_registers", "cache_bytes", "num_cores", "fastmath",
                 "arch", "max_threads_per_block", "max_block", "max_grid", "max_shared_bytes",
                 "max_dynamic_shared_bytes", "max_threads_per_sm", "warp_size", "_mcpu",
                 "_mattr", "_mtriple", "_text")

    def __init__(self, target: str, host=None):
        spec = target
        if not isinstance(spec, str) or not spec.split():
            raise BuildError(f"a target is a string such as 'llvm' or 'cuda -arch=sm_80', "
                             f"got {spec!r}")
        kind, *tokens = spec.split()
        if kind not in _OPTIONS:
            raise BuildError(f"unknown target kind {kind!r} in {spec!r}; "
                             f"expected one of {sorted(_OPTIONS)}")
        options = _parse_options(kind, tokens, spec)
        self.kind = TargetKind(kind)
        self.host = None if host is None else _host_target(host, spec)
        self.cpu, self.features, self.vector_bits, self.num_cores = None, "", 128, None
        self.triple = self.machine = self.vector_registers = self.cache_bytes = None
        self.enabled_features = frozenset()  # a CPU's, by name ("avx2"), -mattr applied
        self.max_threads_per_block = self.max_block = self.max_grid = None
        self.max_shared_bytes = self.warp_size = None
        self.max_dynamic_shared_bytes = self.max_threads_per_sm = None
        self.fastmath = "fastmath" in options
        self.arch = options.get("arch")
        self._mcpu = options.get("mcpu", "native")
        self._mattr = options.get("mattr", "")
        self._mtriple = options.get("mtriple")
        if kind == "llvm":
            self._describe_cpu(spec)
        else:
            self._describe_gpu(spec)
        self._text = self._canonical()

    def _describe_cpu(self, spec: str):
        changes = _parse_mattr(self._mattr, spec)
        host_triple = _host_triple()
        self.triple = _normalized_triple(self._mtriple, spec) if self._mtriple else host_triple
        self.machine = _MACHINES[self.triple.split("-")[0]]
        foreign = self.machine != _MACHINES.get(host_triple.split("-")[0])
        if self._mcpu == "native" and not foreign:
            self.cpu, base_features = _host_cpu()
            self.features = ",".join(filter(None, (base_features, self._mattr)))
            enabled = {f[1:] for f in base_features.split(",") if f.startswith("+")}
        elif (self._mcpu == "native"  # another machine's: its generic CPU
              or (self._mcpu in _X86_CPUS and self.machine == "x86_64")
              or self._mcpu in _llvm_cpus(self.triple)):
            self.cpu = "generic" if self._mcpu == "native" else self._mcpu
            self.features = self._mattr
            enabled = _features_of_cpu(self.cpu, self.machine)
        else:
            raise BuildError(f"unknown CPU {self._mcpu!r} for {self.machine} in {spec!r}; use "
                             f"-mcpu=native or one of {sorted(_llvm_cpus(self.triple))}")
        for change in changes:
            (enabled.add if change[0] == "+" else enabled.discard)(change[1:])
        self.enabled_features = frozenset(enabled)
        self.vector_bits = 512 if "avx512f" in enabled else 256 if "avx2" in enabled else 128
        self.vector_registers = 32 if self.vector_bits == 512 or self.machine == "aarch64" \
            else 16
        self.cache_bytes = _host_caches() if self._mcpu == "native" and not foreign \
            else _TYPICAL_CACHES
        self.num_cores = os.cpu_count() or 1

    def _describe_gpu(self, spec: str):
        explicit = self.arch
        if explicit is not None and not re.fullmatch(r"sm_\d+a?", explicit):
            raise BuildError(f"bad CUDA architecture {explicit!r} in {spec!r}; "
                             "expected e.g. -arch=sm_80")
        self.arch = explicit or _present_gpu_arch() or "sm_80"
        self.max_threads_per_block, self.warp_size = 1024, 32
        self.max_block, self.max_grid = (1024, 1024, 64), (2**31 - 1, 65535, 65535)
        self.max_shared_bytes = 48 * 1024
        number = int(re.sub(r"\D", "", self.arch))
        self.max_dynamic_shared_bytes, self.max_threads_per_sm = _GPU_LIMITS.get(
            number, (self.max_shared_bytes, 2048))

    def _canonical(self) -> str:
        parts = [self.kind]
        if self.kind == "llvm":
            if self._mtriple:
                parts.append(f"-mtriple={self._mtriple}")
            if self._mcpu != "native":
                parts.append(f"-mcpu={self._mcpu}")
            if self._mattr:
                parts.append(f"-mattr={self._mattr}")
            if self.fastmath:
                parts.append("-fastmath")
        else:
            parts.append(f"-arch={self.arch}")
        return " ".join(parts)

    @property
    def scalable_vectors(self) -> bool:
        """Whether the CPU has vectors of a length fixed by the machine, not the code (Arm
        SVE: +sve or +sve2 among its features), which `tex.tir.vscale()` measures."""
        return self.machine == "aarch64" and bool({"sve", "sve2"} & self.enabled_features)

    def vector_lanes(self, dtype: DType) -> int:
        """How many elements of `dtype` fill one vector register (at least 1)."""
        bits = 8 if dtype.is_bool else dtype.bits
        return max(1, self.vector_bits // bits)

    def __enter__(self) -> "Target":
        _entered.set(_entered.get() + (self,))
        return self

    def __exit__(self, *exc_info):
        _entered.set(_entered.get()[:-1])

    @staticmethod
    def current(allow_none: bool = True) -> "Target | None":
        """The target of the innermost `with Target(...):` block being run; without one,
        None, or a BuildError when `allow_none` is False. TVM: `Target.current()`."""
        entered = _entered.get()
        if entered:
            return entered[-1]
        if not allow_none:
            raise BuildError("Target.current(allow_none=False): no target is set; build "
                             "inside `with tex.Target(...):` or pass target=")
        return None

    def __str__(self):
        return self._text

    def __repr__(self):
        return f"Target({self._text!r})"

    def __eq__(self, other):
        return isinstance(other, Target) and other._text == self._text

    def __hash__(self):
        return hash(self._text)


def as_target(target) -> Target:
    """Accept a `Target` or a target string."""
    if isinstance(target, Target):
        return target
    if isinstance(target, str):
        return _parse_cached(target)
    raise BuildError(f"expected a Target or a target string, got {type(target).__name__} "
                     f"{target!r}")


def cuda(model: str = "unknown", arch: str | None = None, options=None) -> Target:
    """The CUDA target `Target("cuda -arch=ARCH OPTIONS")`: without `arch`, the present
    GPU's architecture (else sm_80); `options` is a string or a list of further options.
    `model` names the GPU for TVM's tuning logs; tex's records name the architecture
    instead, so it is accepted and not kept. TVM: `tvm.target.cuda`."""
    if not isinstance(model, str):
        raise BuildError(f"tex.target.cuda: model must be a string, got {model!r}")
    extra = [options] if isinstance(options, str) else list(options or [])
    arch_option = [] if arch is None else [f"-arch={arch}"]
    return Target(" ".join(["cuda", *arch_option, *extra]))


def _host_target(host, spec: str) -> Target:
    """`host=` of the target `spec`, checked to be a CPU target."""
    host = as_target(host)
    if host.kind != "llvm":
        raise BuildError(f"the host of target {spec!r} must be a CPU target such as 'llvm', "
                         f"got {str(host)!r}")
    return host


@lru_cache(maxsize=64)
def _parse_cached(spec: str) -> Target:
    return Target(spec)


def _parse_options(kind: str, tokens: list[str], spec: str) -> dict:
    allowed = _OPTIONS[kind]
    options = {}
    for token in tokens:
        key, has_value, value = token.lstrip("-").partition("=")
        if not token.startswith("-") or key not in allowed:
            raise BuildError(f"unknown option {token!r} for target {kind!r} in {spec!r}; "
                             f"known: {', '.join('-' + k for k in allowed)}")
        wants_value = allowed[key] == "value"
        if wants_value != bool(has_value) or (wants_value and not value):
            form = f"-{key}=VALUE" if wants_value else f"-{key} (no value)"
            raise BuildError(f"option {token!r} in {spec!r} is written {form}")
        if key in options:
            raise BuildError(f"option -{key} given twice in {spec!r}")
        options[key] = value if wants_value else True
    return options


def _parse_mattr(mattr: str, spec: str) -> list[str]:
    changes = [f for f in mattr.split(",") if f] if mattr else []
    for f in changes:
        if f[0] not in "+-" or len(f) < 2:
            raise BuildError(f"bad -mattr entry {f!r} in {spec!r}; write +feature or -feature")
    return changes


@lru_cache(maxsize=1)
def _host_cpu() -> tuple[str, str]:
    import llvmlite.binding as llvm
    try:
        features = llvm.get_host_cpu_features().flatten()
    except RuntimeError:  # LLVM cannot read the host's features on some platforms
        features = ""
    return llvm.get_host_cpu_name(), features


#: On Linux, the NVIDIA driver shows itself through one of these (the kernel module's
#: /proc entry, its control device, or WSL's GPU device); without any, cuInit would fail.
_LINUX_DRIVER_SIGNS = ("/proc/driver/nvidia", "/dev/nvidiactl", "/dev/dxg")


@lru_cache(maxsize=1)
def _present_gpu_arch() -> str | None:
    """`sm_XY` of the first CUDA device, or None without a GPU, driver or cuda-python.

    On Linux without a sign of the NVIDIA driver this answers None at once, not
    importing cuda-python and initialising the driver library (30-50 ms)."""
    if sys.platform == "linux" and not any(map(os.path.exists, _LINUX_DRIVER_SIGNS)):
        return None
    try:
        from cuda.bindings import driver
        if driver.cuInit(0)[0] != driver.CUresult.CUDA_SUCCESS:
            return None
        err, device = driver.cuDeviceGet(0)
        attrs = driver.CUdevice_attribute
        _, major = driver.cuDeviceGetAttribute(
            attrs.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, device)
        _, minor = driver.cuDeviceGetAttribute(
            attrs.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, device)
        return f"sm_{major}{minor}" if err == driver.CUresult.CUDA_SUCCESS else None
    except Exception:  # no cuda-python, no libcuda, no device: build for the default
        return None


def _features_of_cpu(cpu: str, machine: str) -> set[str]:
    if machine == "aarch64":
        return {"neon"}
    if cpu in _AVX512_CPUS:
        return {"avx512f", "avx2"}
    if cpu in _AVX2_CPUS:
        return {"avx2"}
    return set()


@lru_cache(maxsize=1)
def _host_triple() -> str:
    import llvmlite.binding as llvm
    return llvm.get_process_triple()


def _normalized_triple(triple: str, spec: str) -> str:
    """`triple` (e.g. "aarch64-linux-gnu") as LLVM spells it, if tex compiles for it."""
    parts = triple.split("-")
    if parts[0] not in _MACHINES or "linux" not in parts:
        raise BuildError(f"tex compiles for Linux on x86_64 or aarch64; -mtriple={triple} in "
                         f"{spec!r} is not one of them (e.g. -mtriple=aarch64-linux-gnu)")
    arch = "aarch64" if parts[0] == "arm64" else parts[0]
    return "-".join([arch, "unknown", *parts[parts.index("linux"):]])


@lru_cache(maxsize=None)
def _llvm_cpus(triple: str) -> frozenset[str]:
    """The CPU names LLVM knows for `triple`. LLVM prints them only to the standard error
    of its process when asked for the CPU "help", so a child process asks."""
    script = ("import llvmlite.binding as l; l.initialize_all_targets(); "
              "l.initialize_all_asmprinters(); "
              f"m = l.Target.from_triple({triple!r}).create_target_machine(cpu='help'); "
              "mod = l.parse_assembly('define void @f() { ret void }'); "
              f"mod.triple = {triple!r}; m.emit_assembly(mod)")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    listing = result.stderr.split("Available CPUs for this target:")[-1]
    listing = listing.split("Available features for this target:")[0]
    return frozenset(re.findall(r"^\s+([\w.-]+)\s+- ", listing, re.MULTILINE))


#: L1 data, L2 and last-level cache of a core, for a CPU named by -mcpu (what most
#: current server cores have; the host's own are read from Linux).
_TYPICAL_CACHES = (32 * 1024, 1024 * 1024, 32 * 1024 * 1024)


@lru_cache(maxsize=1)
def _host_caches() -> tuple[int, int, int]:
    """(L1 data, L2, last level) cache sizes of CPU 0 in bytes, from Linux's sysfs; the
    typical sizes where it does not say."""
    sizes = {}
    for index in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*"):
        try:
            kind = (index / "type").read_text().strip()
            level = int((index / "level").read_text())
            text = (index / "size").read_text().strip()
        except (OSError, ValueError):
            continue
        if kind in ("Data", "Unified") and text[:-1].isdigit():
            sizes[level] = int(text[:-1]) * {"K": 1024, "M": 1024**2, "G": 1024**3}.get(
                text[-1], 1)
    last = max(sizes, default=0)
    return (sizes.get(1, _TYPICAL_CACHES[0]), sizes.get(2, _TYPICAL_CACHES[1]),
            sizes[last] if last >= 3 else _TYPICAL_CACHES[2])
