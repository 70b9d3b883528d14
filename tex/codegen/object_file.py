"""What an object file or shared library refers to but does not define: its undefined symbols.

LLVM's code generator may call runtime routines that appear nowhere in the
IR we emit (`__truncdfhf2` for a double -> half conversion on a CPU without
the instruction, `memcpy` for a copy loop). A JIT that loads such an object
leaves an unresolved call pointing at address 0, so tex reads the object's
symbol table before it loads the code (`tex.codegen.llvm_jit`).

Object code on the systems tex runs on (Linux on x86-64 and aarch64) is
64-bit little-endian ELF; `undefined_symbols` reads its `.symtab` (relocatable
objects) and `.dynsym` (shared libraries).
"""
from __future__ import annotations

import struct

from tex.errors import BuildError

_SYMTAB, _DYNSYM = 2, 11      # section types
_UNDEFINED_SECTION = 0        # st_shndx of a symbol defined elsewhere
_SECTION_HEADER = struct.Struct("<IIQQQQIIQQ")   # Elf64_Shdr
_SYMBOL = struct.Struct("<IBBHQQ")               # Elf64_Sym


def undefined_symbols(data: bytes) -> frozenset[str]:
    """The names of the symbols the ELF64 (little-endian) object or library `data`
    references without defining. Raises BuildError for any other format."""
    if data[:4] != b"\x7fELF" or data[4:6] != b"\x02\x01":
        raise BuildError("tex reads 64-bit little-endian ELF object code only (Linux on "
                         f"x86-64 or aarch64); this object starts with {bytes(data[:6])!r}")
    section_offset, = struct.unpack_from("<Q", data, 0x28)
    entry_size, count = struct.unpack_from("<HH", data, 0x3A)
    sections = [_SECTION_HEADER.unpack_from(data, section_offset + k * entry_size)
                for k in range(count)]
    names = set()
    for _, kind, _, _, offset, size, link, _, _, symbol_size in sections:
        if kind not in (_SYMTAB, _DYNSYM):
            continue
        strings = sections[link][4]
        for at in range(offset + symbol_size, offset + size, symbol_size):  # 0 is null
            name, _, _, section, _, _ = _SYMBOL.unpack_from(data, at)
            if section == _UNDEFINED_SECTION and name:
                start = strings + name
                names.add(data[start:data.index(b"\0", start)].decode())
    return frozenset(names)


#: ELF's e_machine codes of the machines tex compiles for.
_MACHINES = {62: "x86_64", 183: "aarch64"}


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
