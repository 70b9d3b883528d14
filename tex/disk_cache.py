"""The files of the disk cache: their format, whole writes, recency and the size bound.

Several caches keep entries here, in `config.cache_dir()` (TEX_CACHE_DIR): the
kernels, LLVM and CUDA, and the thread pool (`tex.runtime.cache`), NVRTC's
cubins and PTX (`tex.codegen.nvrtc`) and the CUDA simulator's libraries
(`tex.runtime.cuda_simulator`). This module knows files, not what they hold,
so that codegen and runtime both use it without codegen importing runtime.

Entries. An entry is a file `<prefix><sha256 of its key>.texk`, format 3:

    tex-kernel 3\\n                                          magic line
    H\\n                                                     authentication code
    {"key": K, "name": S, "object": N, "ll": M, "tex": T}\\n  JSON header, one line
    N bytes of object code, M bytes of LLVM IR, T bytes of loop program text (UTF-8)

K is the full text of the entry's key (what its file name is the sha256 of),
and a reader asks for an entry by its key: an entry that holds another key
(renamed or copied onto this one) is refused. A CUDA kernel's entry holds its
cubin as the object code and, in place of the LLVM IR, its module's
description (`tex.codegen.cuda_json`). `name` is a label its writer checks on
reading (the entry symbol of an LLVM kernel, "cuda" for a CUDA kernel, "cubin"
or "ptx" for NVRTC output). H is the hex HMAC-SHA256, under the directory's
secret (below), of everything after its own line.

A writer writes a temporary file `<entry>.<random>.tmp` in the same
directory and `os.replace`s it into place, so readers see a whole entry or
none, and concurrent writers of one entry leave one whole entry. A directory
that cannot be written means no disk cache, with one warning per directory.
An entry that cannot be used (bad magic, wrong authentication code, a
malformed header, another key; or, as its reader finds, code that does not
load or fit) is reported with a warning and deleted (`discard_entry`), and
its contents are built again and rewritten.

Trust. tex runs the object code it finds here, so the directory is created
0700, and an existing one is used only if this user owns it and nobody else
can write it (else one warning, and no disk cache there). An entry is read
only if it is a regular file, not through a symbolic link, and at most
MAX_ENTRY_BYTES: a FIFO, a device or a link put in its place is a miss.

The secret. Every entry is authenticated with a per-user secret of
SECRET_BYTES random bytes kept in the directory itself, `secret.key`, created
0600 on first use and used only if it is a regular file (not a link) of this
user, of SECRET_BYTES, that no one else may read or write; otherwise, or if
it cannot be created, there is no disk cache there (one warning). Deleting it
makes every entry a miss, once (each one reported). Given `trusted_directory`,
whoever can write the directory through the filesystem's own rules is this
user or root, who can read the secret too; the secret is for entries that
arrive by other routes: copied in from another user or machine, a filesystem
whose owners and modes do not mean what they say. They may delete the secret
or put a file of their own in its place, but theirs is refused, and a secret
made anew is one they do not know, so their entries fail the check and are
rebuilt. It lives in the directory, not beside it, because the directory is
the one place tex already requires to be this user's alone: its parent may
be shared (/tmp) or not writable, and a secret beside each temporary cache
directory would outlive it. A copy of the whole directory, secret included,
is trusted as the directory itself is.

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
import hmac
import json
import os
import random
import secrets
import stat
import tempfile
import threading
import time
import typing
import warnings
from pathlib import Path

from tex import config

MAGIC = b"tex-kernel 3"
SUFFIX = ".texk"
#: The largest entry file read (a kernel's object code, IR and loop program).
MAX_ENTRY_BYTES = 256 << 20
SECRET_BYTES = 32
SECRET_FILE = "secret.key"
LOW_WATER = 0.8
SLACK = 0.05
STALE_TMP_SECONDS = 3600.0

_PARTS = ("object", "ll", "tex")
_warned: set[Path] = set()
_secrets: dict[Path, bytes | None] = {}
_secrets_lock = threading.Lock()


_estimates: dict[Path, int] = {}  # bytes per directory: the last scan, plus our writes since
_estimates_lock = threading.Lock()


class Entry(typing.NamedTuple):
    """What an entry holds (see the module docstring)."""

    key: str
    name: str
    object_code: bytes
    ll: str
    tex: str


class DamagedEntry(Exception):
    """An entry that cannot be used; its message says why (`discard_entry` reports it)."""


@functools.lru_cache(maxsize=1)
def source_digest() -> str:
    """sha256 of tex's own Python sources, read once per process."""
    digest = hashlib.sha256()
    package = Path(__file__).resolve().parent
    for path in sorted(package.rglob("*.py")):
        digest.update(str(path.relative_to(package)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def entry_path(directory: Path, key: str, prefix: str = "") -> Path:
    """Where the entry of `key` lives in `directory`: `<prefix><sha256 of key>.texk`."""
    return directory / f"{prefix}{hashlib.sha256(key.encode()).hexdigest()}{SUFFIX}"


def format_entry(entry: Entry, secret: bytes) -> bytes:
    """The bytes of the file of `entry`, authenticated with `secret` (see the module
    docstring)."""
    parts = [entry.object_code, entry.ll.encode(), entry.tex.encode()]
    header = {"key": entry.key, "name": entry.name, **{p: len(b) for p, b in zip(_PARTS, parts)}}
    body = json.dumps(header).encode() + b"\n" + b"".join(parts)
    return MAGIC + b"\n" + _authentication_code(secret, body) + b"\n" + body


def _authentication_code(secret: bytes, body: bytes) -> bytes:
    return hmac.new(secret, body, hashlib.sha256).hexdigest().encode()


def parse_entry(data: bytes, secret: bytes) -> Entry:
    """The Entry of an entry file's bytes, authenticated with `secret`. Raises DamagedEntry
    saying what is wrong (the magic, the authentication code, the header or its lengths)."""
    magic, _, rest = data.partition(b"\n")
    code, _, body = rest.partition(b"\n")
    if magic != MAGIC:
        raise DamagedEntry(f"it does not start with {MAGIC.decode()!r}")
    if not hmac.compare_digest(code, _authentication_code(secret, body)):
        raise DamagedEntry("its authentication code does not match: it was changed, or "
                           "written by another user's tex or with another secret")
    header, _, payload = body.partition(b"\n")
    try:
        fields = json.loads(header)
        key, name = fields["key"], fields["name"]
        sizes = [fields[part] for part in _PARTS]
        if not (isinstance(key, str) and isinstance(name, str)
                and all(isinstance(n, int) and n >= 0 for n in sizes)
                and len(payload) == sum(sizes)):
            raise ValueError("the header does not describe the payload")
        n_object, n_ll, _ = sizes
        return Entry(key, name, payload[:n_object],
                     payload[n_object:n_object + n_ll].decode(),
                     payload[n_object + n_ll:].decode())
    except (ValueError, TypeError, KeyError) as err:
        raise DamagedEntry(f"its header is malformed ({err})") from None


def read_entry(path: Path, key: str) -> Entry | None:
    """The entry at `path` if it is whole, authentic and holds `key`; else None.

    None without a word if there is no entry, if it is not a regular file of at
    most MAX_ENTRY_BYTES (a symbolic link, a FIFO, a device are not followed,
    waited on or read), or if the directory or its secret cannot be trusted
    (`trusted_directory`, `secret`). An entry that is there but cannot be used
    is reported and deleted (`discard_entry`). A whole entry is marked as just
    used (its mtime set to now), for eviction.
    """
    if not trusted_directory(path.parent):
        return None
    data = _read_regular_file(path)
    key_of_directory = secret(path.parent) if data is not None else None
    if key_of_directory is None:
        return None
    try:
        entry = parse_entry(data, key_of_directory)
        if entry.key != key:
            raise DamagedEntry(f"it holds the entry of key {_digest(entry.key)}, not of key "
                               f"{_digest(key)} (renamed or copied onto this one)")
    except DamagedEntry as err:
        discard_entry(path, str(err))
        return None
    try:
        os.utime(path)
    except OSError:
        pass  # evicted meanwhile, or a read-only directory: the hit stands
    return entry


def _digest(key: str) -> str:
    """The beginning of the sha256 of `key`, to name it in a message."""
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def discard_entry(path: Path, why: str):
    """Report (a RuntimeWarning) that the entry at `path` cannot be used because `why`, and
    delete it, so that its contents are built again."""
    warnings.warn(f"tex: the cache entry {path} cannot be used: {why}; it is deleted, and "
                  "what it held is built again", RuntimeWarning, stacklevel=3)
    try:
        path.unlink()
    except OSError:
        pass  # gone already, or another writer's replacement: the next reader checks it


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
    why = "is not owned by this user" if not owner_ok else \
        f"can be written by other users (mode {status.st_mode & 0o777:o})"
    _warn_once(directory, f"the kernel cache {directory} {why}, and tex would run code found "
                          "there: it is not used (chmod go-w it, or set TEX_CACHE_DIR to a "
                          "directory of your own, or to 'off')")
    return False


def _warn_once(directory: Path, message: str):
    """Warn that the disk cache in `directory` is not used, once per directory."""
    if directory not in _warned:
        _warned.add(directory)
        warnings.warn("tex: " + message, RuntimeWarning, stacklevel=4)


def secret_path(directory: Path) -> Path:
    """The file of the secret that authenticates the entries of `directory`."""
    return directory / SECRET_FILE


def secret(directory: Path) -> bytes | None:
    """The secret that authenticates the entries of `directory` (see the module docstring),
    created on first use; None, with one warning, when it cannot be created or trusted.
    Read once per directory and process."""
    with _secrets_lock:
        if directory not in _secrets:
            _secrets[directory] = _load_secret(directory)
        return _secrets[directory]


def _load_secret(directory: Path) -> bytes | None:
    """`secret(directory)`, read or created now."""
    path = secret_path(directory)
    try:
        try:
            return _read_secret(path)
        except FileNotFoundError:
            return _create_secret(path)
    except (OSError, ValueError) as err:
        _warn_once(directory, f"the kernel cache's secret {path} cannot be used ({err}), so "
                              f"the cache in {directory} is not used (delete the file and tex "
                              "makes a new one, or set TEX_CACHE_DIR to another directory, "
                              "or to 'off')")
        return None


def _read_secret(path: Path) -> bytes:
    """The secret in the file `path`; ValueError if it is not a regular file of this user's
    of SECRET_BYTES that only this user may read and write."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    try:
        status = os.fstat(fd)
        if not stat.S_ISREG(status.st_mode) or status.st_size != SECRET_BYTES:
            raise ValueError(f"not a regular file of {SECRET_BYTES} bytes")
        if hasattr(os, "getuid") and status.st_uid != os.getuid():
            raise ValueError("not owned by this user")
        if status.st_mode & 0o077:
            raise ValueError(f"other users may read or write it (mode "
                             f"{status.st_mode & 0o777:o})")
        data = os.read(fd, SECRET_BYTES)
        if len(data) != SECRET_BYTES:
            raise ValueError(f"it holds {len(data)} bytes, not {SECRET_BYTES}")
        return data
    finally:
        os.close(fd)


def _create_secret(path: Path) -> bytes:
    """A new secret, written whole to `path` (0600) unless another process wrote one first,
    in which case that one."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(secrets.token_bytes(SECRET_BYTES))
        try:
            os.link(tmp, path)  # never replaces: the first process's secret stands
        except FileExistsError:
            pass
    finally:
        os.unlink(tmp)
    return _read_secret(path)


def write_entry(path: Path, entry: Entry):
    """Put `entry` at `path`, authenticated with its directory's secret (`write_whole`)."""
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as err:
        _cannot_write(path.parent, err)
        return
    if trusted_directory(path.parent):
        key_of_directory = secret(path.parent)
        if key_of_directory is not None:
            write_whole(path, format_entry(entry, key_of_directory))


def write_whole(path: Path, data: bytes):
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
        _cannot_write(path.parent, err)
        return
    _account(path, len(data))


def _cannot_write(directory: Path, err: OSError):
    _warn_once(directory, f"cannot write the kernel cache in {directory} ({err}); kernels "
                          "will be compiled in every process (set TEX_CACHE_DIR to another "
                          "directory, or to 'off')")


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

