"""Reading object code and shared libraries without loading them, and without trusting them.

What an object refers to. LLVM's code generator may call runtime routines
that appear nowhere in the IR we emit (`__truncdfhf2` for a double -> half
conversion on a CPU without the instruction, `memcpy` for a copy loop). A JIT
that loads such an object leaves an unresolved call pointing at address 0, so
tex reads the object's undefined symbols before it loads the code
(`undefined_symbols`, `tex.codegen.llvm_jit`).

Checking an object before MCJIT loads it. LLVM trusts the objects it loads:
MCJIT aborts the process on a relocation type it does not implement, and a
section, symbol or relocation that points outside the file or its section
makes it read or write elsewhere. `check_object` is what tex runs on object
code it did not just compile (the disk cache's) before MCJIT sees it. It
reads the file's own structure, every offset checked against the file, and
raises BuildError naming the first fault:

* the header: 64-bit little-endian ELF, relocatable, for the expected machine;
* the section table, and every section inside the file, with a sane alignment
  (at most 64 KiB) and zero-filled sections of at most 16 MiB in all;
* the symbol table: names inside its string table, in sections that exist,
  with values inside them;
* every relocation: of a type MCJIT implements for the machine, against a
  symbol that exists, patching bytes inside its section;
* the unwind table (`.eh_frame`, which MCJIT hands to libgcc, and which
  libgcc may parse on the spot): records that chain to its end, each frame
  pointing back at a common entry of the kind LLVM writes ("zR", with a
  pointer encoding the unwinder knows);
* the symbols the caller names are defined.

Only machine code itself is beyond this check: damaged instructions inside a
well-formed object are what the disk cache's authentication code catches.

CUDA cubins. `cubin_arch` checks a cubin (from NVRTC, or the disk cache) before
the CUDA driver, which trusts it as MCJIT trusts an object, loads it: a 64-bit
little-endian ELF executable for machine EM_CUDA (190), its section table and
every section inside the file; and it reads the SM number the code is for,
which the ELF header's e_flags hold: bits 8-15 from ELF ABI version 8 on (what
NVRTC 13 writes: sm_80 is 0x6005004, sm_90 0x6005a04, sm_100 0x6006402), bits
0-7 in older cubins.

Libraries. `symbol_extent` finds the bytes of a data symbol of a shared
library in its file (tex's library manifest, `tex.runtime.library`), so that
a library can be checked before anything in it runs.

Object code on the systems tex runs on (Linux on x86-64 and aarch64) is
64-bit little-endian ELF.
"""
from __future__ import annotations

import dataclasses
import struct

from tex.errors import BuildError

_ELF_HEADER = struct.Struct("<16sHHIQQQIHHHHHH")  # Elf64_Ehdr
_SECTION_HEADER = struct.Struct("<IIQQQQIIQQ")     # Elf64_Shdr
_SYMBOL = struct.Struct("<IBBHQQ")                 # Elf64_Sym
_RELOCATION = struct.Struct("<QQ")                 # r_offset, r_info (then RELA's addend)

_RELOCATABLE, _EXECUTABLE, _SHARED = 1, 2, 3      # e_type
_EM_CUDA = 190                                     # e_machine of NVIDIA GPU code
_NULL, _SYMTAB, _STRTAB, _RELA, _NOBITS, _REL, _DYNSYM = 0, 2, 3, 4, 8, 9, 11  # sh_type
_UNDEFINED, _FIRST_RESERVED, _ABSOLUTE, _COMMON = 0, 0xFF00, 0xFFF1, 0xFFF2  # st_shndx
_MAX_ALIGNMENT = 1 << 16
_MAX_ZERO_FILLED = 16 << 20

#: ELF's e_machine codes of the machines tex compiles for.
_MACHINES = {62: "x86_64", 183: "aarch64"}

#: Per machine, the relocation types MCJIT implements (RuntimeDyldELF; any other is a
#: fatal error there) and how many bytes each one patches.
_RELOCATIONS = {
    "x86_64": {0: 0, 1: 8, 2: 4, 4: 4, 9: 4, 10: 4, 11: 4, 24: 8, 41: 4, 42: 4},
    "aarch64": {0: 0, 257: 8, 258: 4, 259: 2, 260: 8, 261: 4, 262: 2, 264: 4, 266: 4, 268: 4,
                269: 4, 273: 4, 274: 4, 275: 4, 277: 4, 278: 4, 279: 4, 280: 4, 282: 4,
                283: 4, 284: 4, 285: 4, 286: 4, 299: 4, 311: 4, 312: 4, 314: 4},
}

#: DWARF pointer encodings the unwinder reads (low nibble: format; 0x10: pc-relative).
_POINTER_FORMATS = {0x00, 0x02, 0x03, 0x04, 0x0A, 0x0B, 0x0C}


@dataclasses.dataclass(frozen=True)
class _Section:
    index: int
    name: str
    kind: int
    address: int
    offset: int
    size: int
    link: int
    info: int
    entry_size: int


@dataclasses.dataclass(frozen=True)
class _Symbol:
    name: str
    kind: int       # STT_*: 1 object, 2 function, 3 section
    section: int
    value: int
    size: int


def _fault(what: str) -> BuildError:
    return BuildError(f"malformed object code: {what}")


def _inside(data: bytes, offset: int, size: int) -> bool:
    return 0 <= offset and 0 <= size and offset + size <= len(data)


def _string(data: bytes, table: _Section, offset: int) -> str:
    """The NUL-terminated string at `offset` of the string table `table`."""
    end = data.find(b"\0", table.offset + offset, table.offset + table.size)
    if offset >= table.size or end < 0:
        raise _fault(f"a name at offset {offset} runs past its string table {table.name}")
    try:
        return data[table.offset + offset:end].decode()
    except UnicodeDecodeError:
        raise _fault(f"a name at offset {offset} of {table.name} is not text") from None


def _sections(data: bytes, file_type: int, machine: str | None) -> list[_Section]:
    """The section table of the ELF file `data`, which must be of `file_type` and (unless
    None) for `machine`, each section's bytes checked to lie inside the file."""
    if len(data) < _ELF_HEADER.size or data[:4] != b"\x7fELF" or data[4:7] != b"\x02\x01\x01":
        raise BuildError("tex reads 64-bit little-endian ELF object code only (Linux on "
                         f"x86-64 or aarch64); this object starts with {bytes(data[:7])!r}")
    (_, kind, code, _, _, _, table, _, _, _, _, entry_size, count,
     names) = _ELF_HEADER.unpack_from(data)
    if kind != file_type:
        raise _fault(f"its ELF type is {kind}, expected {file_type}")
    if machine is not None and _MACHINES.get(code) != machine:
        raise _fault(f"it holds code for ELF machine {code} "
                     f"({_MACHINES.get(code, 'unknown')}), expected {machine}")
    if entry_size != _SECTION_HEADER.size or not (0 < count and names < count) \
            or not _inside(data, table, count * entry_size):
        raise _fault(f"its section table ({count} sections at offset {table}) lies outside "
                     f"the file of {len(data)} bytes")
    raw = [_SECTION_HEADER.unpack_from(data, table + k * entry_size) for k in range(count)]
    zero_filled = 0
    for k, (_, kind, _, _, offset, size, _, _, alignment, _) in enumerate(raw):
        if kind not in (_NULL, _NOBITS) and not _inside(data, offset, size):
            raise _fault(f"section {k} ({size} bytes at offset {offset}) lies outside the file")
        if alignment > _MAX_ALIGNMENT or alignment & (alignment - 1):
            raise _fault(f"section {k} asks for an alignment of {alignment}")
        zero_filled += size if kind == _NOBITS else 0
    if zero_filled > _MAX_ZERO_FILLED:
        raise _fault(f"its zero-filled sections ask for {zero_filled} bytes")
    string_table = _Section(names, "(section names)", raw[names][1], 0, raw[names][4],
                            raw[names][5], 0, 0, 0)
    if string_table.kind != _STRTAB:
        raise _fault("its section names are not in a string table")
    return [_Section(k, _string(data, string_table, name), kind, address, offset, size, link,
                     info, entries)
            for k, (name, kind, _, address, offset, size, link, info, _, entries)
            in enumerate(raw)]


def _symbols(data: bytes, sections: list[_Section], table: _Section) -> list[_Symbol]:
    """The symbols of the symbol table `table`, their names read and sections checked."""
    if table.entry_size != _SYMBOL.size or table.size % _SYMBOL.size \
            or table.link >= len(sections) or sections[table.link].kind != _STRTAB:
        raise _fault(f"its symbol table {table.name} is malformed")
    symbols = []
    for at in range(table.offset, table.offset + table.size, _SYMBOL.size):
        name, info, _, section, value, size = _SYMBOL.unpack_from(data, at)
        symbol = _Symbol(_string(data, sections[table.link], name), info & 0xF, section,
                         value, size)
        if _FIRST_RESERVED <= section and section not in (_ABSOLUTE, _COMMON) \
                or section < _FIRST_RESERVED and section >= len(sections):
            raise _fault(f"symbol {symbol.name!r} is in section {section}, which does not exist")
        symbols.append(symbol)
    return symbols


def _symbol_tables(data: bytes, sections: list[_Section], kind: int) -> list[_Symbol]:
    """The symbols of every table of `kind` (_SYMTAB, _DYNSYM)."""
    return [symbol for table in sections if table.kind == kind
            for symbol in _symbols(data, sections, table)]


def undefined_symbols(data: bytes) -> frozenset[str]:
    """The names of the symbols the ELF64 (little-endian) object or library `data`
    references without defining. Raises BuildError for any other format."""
    file_type = struct.unpack_from("<H", data, 16)[0] if len(data) >= 18 else 0
    sections = _sections(data, file_type if file_type == _SHARED else _RELOCATABLE, None)
    return frozenset(s.name for kind in (_SYMTAB, _DYNSYM)
                     for s in _symbol_tables(data, sections, kind)
                     if s.section == _UNDEFINED and s.name)


def check_object(data: bytes, machine: str, defined=()) -> frozenset[str]:
    """Check the relocatable object `data` for `machine` ("x86_64", "aarch64") as the
    module docstring says, and that it defines each symbol named in `defined`; returns
    the names of the symbols it refers to without defining. Raises BuildError naming
    the first fault."""
    sections = _sections(data, _RELOCATABLE, machine)
    tables = [s for s in sections if s.kind == _SYMTAB]
    if len(tables) != 1:
        raise _fault(f"it has {len(tables)} symbol tables, expected 1")
    symbols = _symbols(data, sections, tables[0])
    for symbol in symbols:
        _check_symbol_value(symbol, sections)
    for section in sections:
        if section.kind in (_RELA, _REL):
            _check_relocations(data, sections, section, tables[0].index, len(symbols),
                               _RELOCATIONS[machine])
        elif section.name == ".eh_frame":
            _check_unwind_table(data, section)
    names = {s.name for s in symbols if s.section != _UNDEFINED}
    missing = [name for name in defined if name not in names]
    if missing:
        raise _fault(f"it does not define {', '.join(missing)}")
    return frozenset(s.name for s in symbols if s.section == _UNDEFINED and s.name)


def cubin_arch(data: bytes) -> int:
    """The SM number (80 for sm_80) of the cubin `data`, checked as the module docstring
    says; raises BuildError naming the first fault."""
    if len(data) < _ELF_HEADER.size or data[:4] != b"\x7fELF" or data[4:6] != b"\x02\x01":
        raise _fault(f"a cubin is 64-bit little-endian ELF, this one starts with "
                     f"{bytes(data[:6])!r} ({len(data)} bytes)")
    machine, flags = _ELF_HEADER.unpack_from(data)[2], _ELF_HEADER.unpack_from(data)[7]
    if machine != _EM_CUDA:
        raise _fault(f"it holds code for ELF machine {machine}, expected {_EM_CUDA} (CUDA)")
    _sections(data, _EXECUTABLE, None)
    return (flags >> 8) & 0xFF if data[8] >= 8 else flags & 0xFF


def _check_symbol_value(symbol: _Symbol, sections: list[_Section]):
    """A function or data symbol of a section lies inside it."""
    if symbol.kind in (1, 2) and 0 < symbol.section < len(sections):
        section = sections[symbol.section]
        if symbol.value + symbol.size > section.size:
            raise _fault(f"symbol {symbol.name!r} ({symbol.size} bytes at {symbol.value}) "
                         f"runs past its section {section.name} of {section.size} bytes")


def _check_relocations(data: bytes, sections: list[_Section], section: _Section,
                       symbol_table: int, symbol_count: int, widths: dict[int, int]):
    """Each relocation of `section` has a type in `widths`, names a symbol that exists and
    patches bytes inside the section it applies to."""
    size = _RELOCATION.size + (8 if section.kind == _RELA else 0)
    if section.entry_size != size or section.size % size or section.link != symbol_table \
            or not 0 < section.info < len(sections):
        raise _fault(f"its relocation section {section.name} is malformed")
    target = sections[section.info]
    for at in range(section.offset, section.offset + section.size, size):
        offset, info = _RELOCATION.unpack_from(data, at)
        kind, symbol = info & 0xFFFFFFFF, info >> 32
        if kind not in widths:
            raise _fault(f"{section.name} holds a relocation of type {kind}, which MCJIT "
                         "does not implement")
        if symbol >= symbol_count:
            raise _fault(f"{section.name} names symbol {symbol} of {symbol_count}")
        if offset + widths[kind] > target.size:
            raise _fault(f"{section.name} patches offset {offset} of {target.name}, which "
                         f"has {target.size} bytes")


def _check_unwind_table(data: bytes, section: _Section):
    """The records of `.eh_frame` chain to its end (or a zero terminator), and each frame
    description points back at a common entry that `_check_common_entry` accepts."""
    at, end, common = section.offset, section.offset + section.size, set()
    while at < end:
        if end - at < 4:
            raise _fault(".eh_frame ends inside a record's length")
        length = struct.unpack_from("<I", data, at)[0]
        if length == 0:
            return
        if length < 4 or at + 4 + length > end:
            raise _fault(f".eh_frame has a record of {length} bytes at {at - section.offset}")
        pointer = struct.unpack_from("<I", data, at + 4)[0]
        if pointer == 0:
            _check_common_entry(data[at + 8:at + 4 + length])
            common.add(at)
        elif at + 4 - pointer not in common:
            raise _fault(f".eh_frame has a frame at {at - section.offset} whose common entry "
                         "is not one")
        at += 4 + length


def _check_common_entry(body: bytes):
    """A common information entry, after its length and id: version 1, augmentation "zR"
    (or none), and a pointer encoding the unwinder knows."""
    if len(body) < 2 or body[0] != 1:
        raise _fault(".eh_frame has a common entry of an unknown version")
    augmentation, _, rest = body[1:].partition(b"\0")
    if augmentation == b"":
        return
    if augmentation != b"zR":
        raise _fault(f".eh_frame has a common entry with augmentation {augmentation!r}")
    # code and data alignment (LEB128), return column (a byte), augmentation data length
    at = _after_leb128(rest, _after_leb128(rest, 0))
    at = _after_leb128(rest, at + 1)
    if at >= len(rest) or rest[at] & 0x0F not in _POINTER_FORMATS or rest[at] & 0xE0:
        raise _fault(".eh_frame has a common entry with an unknown pointer encoding")


def _after_leb128(data: bytes, at: int) -> int:
    """The offset after the LEB128 number at `at` of `data`."""
    while at < len(data) and data[at] & 0x80:
        at += 1
    return at + 1


def symbol_extent(data: bytes, name: str) -> tuple[int, int]:
    """(offset in the file, size) of the data symbol `name` that the shared library `data`
    exports (its `.dynsym`). Raises BuildError if the file is not a 64-bit ELF shared
    library, or does not export `name` as data inside one of its sections."""
    sections = _sections(data, _SHARED, None)
    found = [s for s in _symbol_tables(data, sections, _DYNSYM)
             if s.name == name and s.section != _UNDEFINED]
    if not found:
        raise BuildError(f"it does not export {name}")
    symbol = found[0]
    if symbol.section >= len(sections):
        raise _fault(f"{name} is not in a section of the file")
    section = sections[symbol.section]
    start = symbol.value - section.address
    if section.kind in (_NULL, _NOBITS) or start < 0 or start + symbol.size > section.size:
        raise _fault(f"{name} ({symbol.size} bytes at {symbol.value:#x}) is not inside the "
                     f"file's section {section.name}")
    return section.offset + start, symbol.size


def machine_of(path) -> str | None:
    """"x86_64" or "aarch64" for an ELF file of that machine at `path`; None for anything
    else (another machine, not ELF, unreadable)."""
    try:
        with open(path, "rb") as file:
            header = file.read(20)
    except OSError:
        return None
    if len(header) < 20 or header[:4] != b"\x7fELF" or header[5] != 1:
        return None
    return _MACHINES.get(struct.unpack_from("<H", header, 18)[0])
