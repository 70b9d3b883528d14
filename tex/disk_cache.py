"""The files of the disk cache: their format, whole writes, recency and the size bound.

Two caches keep entries here, in `config.cache_dir()` (TEX_CACHE_DIR): the
kernels, LLVM and CUDA, and the thread pool (`tex.runtime.cache`) and NVRTC's
cubins and PTX (`tex.codegen.nvrtc`). This module knows files, not what they hold, so that
codegen and runtime both use it without codegen importing runtime.

Entries. An entry is a file `<name>.texk`, format version 2:

    tex-kernel 2\\n                                                  magic line
    {"name": S, "object": N, "ll": M, "tex": T, "sha256": H}\\n      JSON header, one line
    N bytes of object code, M bytes of LLVM IR, T bytes of loop program text (UTF-8)

A CUDA kernel's entry holds its cubin as the object code and, in place of the
LLVM IR, its module's description (`tex.codegen.cuda_json`). `name` is a
label its writer checks on reading (the entry symbol of an LLVM kernel,
"cuda" for a CUDA kernel, "cubin" or "ptx" for NVRTC output) and H the hex sha256 of the N + M + T
payload bytes. Anything else (bad magic or header, wrong length, checksum
mismatch) reads as a miss, and the caller rewrites the entry. A writer writes
a temporary file `<entry>.<random>.tmp` in the same directory and
`os.replace`s it into place, so readers see a whole entry or none, and
concurrent writers of one entry leave one whole entry. A directory that
cannot be written means no disk cache, with one warning per directory.

Trust. tex runs the object code it finds here, so the directory is created
0700, and an existing one is used only if this user owns it and nobody else
can write it (else one warning, and no disk cache there). An entry is read
only if it is a regular file, not through a symbolic link, and at most
MAX_ENTRY_BYTES: a FIFO, a device or a link put in its place is a miss.

The size bound. The directory is kept under `config.cache_max_bytes()`
(TEX_CACHE_MAX_MB, default 1024 MB) by deleting the least recently used
entries. An entry's mtime is its last use: a write sets it and a hit
refreshes it (`read_entry`, one `os.utime`). When a write takes the directory
over the bound, entries are deleted oldest first until it holds at most
LOW_WATER (80%) of the bound, so that the next eviction is many writes away.

What it costs. A write does not look at the directory, as a rule. A scan
(one `os.scandir`, one stat per file) costs ~5 us an entry: 0.1 s for 20,000
entries (1 GB of 50 KB kernels, on a 2-core host), more than most compiles,
so a write of `size` bytes scans with probability size / (SLACK * bound):
one scan per 5% of the bound written, on average, whichever processes wrote
it. That costs ~0.1 ms a write whatever the bound (the scan's cost and the
writes between scans both grow with it), a first write in a short process
no more than any other, and lets the directory pass the bound by about
SLACK, 5%, before a scan sees it. After its first scan a process also keeps a
running estimate (the total seen plus the bytes it has written since) and
scans as soon as that passes the bound, so its own writes cannot take the
directory past the bound by more than one entry unseen.

Several processes at once. A file that vanishes between listing and stat or
unlink is skipped, and one already deleted by another evicter counts as freed,
so two evicters together stop near the low-water mark. Temporary files younger
than STALE_TMP_SECONDS belong to a writer at work and are neither counted nor
touched; older ones are left by a writer that died, and are deleted. The entry
just written is never deleted. A reader that has opened an entry reads it
whole even if it is deleted meanwhile. Eviction swallows every OSError: it
never fails a build.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import random
import stat
import tempfile
import threading
import time
import warnings
from pathlib import Path

from tex import config

MAGIC = b"tex-kernel 2"
SUFFIX = ".texk"
#: The largest entry file read (a kernel's object code, IR and loop program).
MAX_ENTRY_BYTES = 256 << 20
LOW_WATER = 0.8
SLACK = 0.05
STALE_TMP_SECONDS = 3600.0

_PARTS = ("object", "ll", "tex")
_warned: set[Path] = set()


_estimates: dict[Path, int] = {}  # bytes per directory: the last scan, plus our writes since
_estimates_lock = threading.Lock()


@functools.lru_cache(maxsize=1)
def source_digest() -> str:
    """sha256 of tex's own Python sources, read once per process."""
    digest = hashlib.sha256()
    package = Path(__file__).resolve().parent
    for path in sorted(package.rglob("*.py")):
        digest.update(str(path.relative_to(package)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def format_entry(name: str, object_code: bytes, ll: str, tex_source: str) -> bytes:
    """The bytes of an entry file (see the module docstring)."""
    parts = [object_code, ll.encode(), tex_source.encode()]
    payload = b"".join(parts)
    header = {"name": name, **{p: len(b) for p, b in zip(_PARTS, parts)},
              "sha256": hashlib.sha256(payload).hexdigest()}
    return MAGIC + b"\n" + json.dumps(header).encode() + b"\n" + payload


def parse_entry(data: bytes) -> tuple[str, bytes, str, str] | None:
    """(name, object code, IR text, loop program text) of an entry file's bytes, or None
    unless the magic, header, lengths and checksum are all right."""
    magic, _, rest = data.partition(b"\n")
    header, _, payload = rest.partition(b"\n")
    if magic != MAGIC:
        return None
    try:
        fields = json.loads(header)
        name, checksum = fields["name"], fields["sha256"]
        sizes = [fields[part] for part in _PARTS]
        if not (isinstance(name, str) and all(isinstance(n, int) and n >= 0 for n in sizes)
                and len(payload) == sum(sizes)
                and hashlib.sha256(payload).hexdigest() == checksum):
            return None
        n_object, n_ll, _ = sizes
        return (name, payload[:n_object], payload[n_object:n_object + n_ll].decode(),
                payload[n_object + n_ll:].decode())
    except (ValueError, TypeError, KeyError):
        return None


def read_entry(path: Path) -> tuple[str, bytes, str, str] | None:
    """`parse_entry` of the file at `path`, or None if it cannot be read, is not a regular
    file of at most MAX_ENTRY_BYTES (a symbolic link, a FIFO, a device are not followed,
    waited on or read), or lies in a directory `trusted_directory` refuses. A whole entry
    is marked as just used (its mtime set to now), for eviction."""
    if not trusted_directory(path.parent):
        return None
    data = _read_regular_file(path)
    entry = parse_entry(data) if data is not None else None
    if entry is not None:
        try:
            os.utime(path)
        except OSError:
            pass  # evicted meanwhile, or a read-only directory: the hit stands
    return entry


def _read_regular_file(path: Path) -> bytes | None:
    """The bytes of `path` if it is a regular file (not a link to one) of at most
    MAX_ENTRY_BYTES, else None."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        return None
    try:
        status = os.fstat(fd)
        if not stat.S_ISREG(status.st_mode) or status.st_size > MAX_ENTRY_BYTES:
            return None
        with os.fdopen(fd, "rb", closefd=False) as file:
            return file.read(MAX_ENTRY_BYTES + 1)
    except OSError:
        return None
    finally:
        os.close(fd)


def trusted_directory(directory: Path) -> bool:
    """Whether kernels may be read from and written to the existing `directory`: tex runs
    the code it holds, so it must be owned by this user and writable by nobody else. One
    that fails the test turns the disk cache off there, with one warning."""
    try:
        status = os.stat(directory)
    except OSError:
        return False
    owner_ok = not hasattr(os, "getuid") or status.st_uid == os.getuid()
    if owner_ok and not status.st_mode & 0o022:
        return True
    if directory not in _warned:
        _warned.add(directory)
        why = "is not owned by this user" if not owner_ok else \
            f"can be written by other users (mode {status.st_mode & 0o777:o})"
        warnings.warn(f"tex: the kernel cache {directory} {why}, and tex would run code "
                      "found there: it is not used (chmod go-w it, or set TEX_CACHE_DIR to a "
                      "directory of your own, or to 'off')", RuntimeWarning, stacklevel=4)
    return False


def write_entry(path: Path, data: bytes):
    """Put `data` at `path` whole, or warn (once per directory) and give up; then keep
    the directory under its size bound (see the module docstring). A failing filesystem
    never raises; a malformed TEX_CACHE_MAX_MB raises ConfigError."""
    tmp = None
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not trusted_directory(path.parent):
            return
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
        with os.fdopen(fd, "wb") as file:
            file.write(data)
        os.replace(tmp, path)
    except OSError as err:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
        if path.parent not in _warned:
            _warned.add(path.parent)
            warnings.warn(f"tex: cannot write the kernel cache in {path.parent} ({err}); "
                          "kernels will be compiled in every process (set TEX_CACHE_DIR to "
                          "another directory, or to 'off')", RuntimeWarning, stacklevel=4)
        return
    _account(path, len(data))


def _account(written: Path, size: int):
    """Count a write of `size` bytes to the directory of `written`; scan it and evict, at
    random or when this process's estimate passes the bound (see the module docstring)."""
    limit = config.cache_max_bytes()
    if limit is None:
        return
    directory = written.parent
    with _estimates_lock:
        estimate = _estimates.get(directory)
        if estimate is not None:
            estimate += size
            _estimates[directory] = estimate
        if (estimate is None or estimate <= limit) and random.random() >= size / (SLACK * limit):
            return
        _estimates[directory] = evict(directory, limit, keep=written)


def evict(directory: Path, limit: int, keep: Path | None = None) -> int:
    """If the entries in `directory` hold more than `limit` bytes, delete them least
    recently used first (never `keep`) until they hold at most LOW_WATER * limit.
    Returns the bytes they hold afterwards (0 if the directory cannot be read)."""
    try:
        entries = _entries(directory)
    except OSError:
        return 0
    total = sum(size for _, size, _ in entries)
    if total <= limit:
        return total
    for _, size, path in sorted(entries):
        if total <= limit * LOW_WATER:
            break
        if path == keep:
            continue
        try:
            path.unlink()
        except FileNotFoundError:
            pass  # another process evicted it: freed all the same
        except OSError:
            continue
        total -= size
    return total


def _entries(directory: Path) -> list[tuple[float, int, Path]]:
    """(mtime, size, path) of each entry in `directory`; deletes temporary files older than
    STALE_TMP_SECONDS on the way."""
    found, now = [], time.time()
    with os.scandir(directory) as listing:
        for item in listing:
            try:
                if item.name.endswith(SUFFIX):
                    stat = item.stat()
                    found.append((stat.st_mtime, stat.st_size, Path(item.path)))
                elif (SUFFIX + "." in item.name and item.name.endswith(".tmp")
                      and now - item.stat().st_mtime > STALE_TMP_SECONDS):
                    os.unlink(item.path)
            except OSError:
                continue  # gone meanwhile, or not ours to delete
    return found

