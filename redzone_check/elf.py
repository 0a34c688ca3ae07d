"""A lean, bounds-checked ELF64 reader for headers, sections and symbols.

pyelftools rebuilds its struct parsers for every ELFFile, which dominates the
cost of scanning big archives; this reader does only what detection needs and
leaves DWARF and relocations to pyelftools, loaded lazily for functions with
findings. Every size and offset read from the file is checked against the
buffer before use.
"""

from __future__ import annotations

import struct
from typing import Final, NamedTuple

from redzone_check.errors import InputError

EM_X86_64: Final = 62
MACHINES: Final = {
    0: "no machine",
    3: "i386",
    8: "MIPS",
    20: "PowerPC",
    21: "PowerPC64",
    22: "S/390",
    40: "ARM",
    43: "SPARC V9",
    50: "IA-64",
    62: "x86-64",
    183: "AArch64",
    243: "RISC-V",
    247: "BPF",
    258: "LoongArch",
}
ET_NAMES: Final = {0: "none", 1: "relocatable", 2: "executable", 3: "shared object", 4: "core"}

SHT_PROGBITS: Final = 1
SHT_SYMTAB: Final = 2
SHT_NOBITS: Final = 8
SHT_DYNSYM: Final = 11
SHF_EXECINSTR: Final = 0x4
SHN_UNDEF: Final = 0
SHN_LORESERVE: Final = 0xFF00
SHN_XINDEX: Final = 0xFFFF

STT_NOTYPE: Final = 0
STT_FUNC: Final = 2
STT_SECTION: Final = 3
STT_FILE: Final = 4
STT_GNU_IFUNC: Final = 10
STB_LOCAL: Final = 0
STB_GLOBAL: Final = 1
STB_WEAK: Final = 2

_EHDR = struct.Struct("<16sHHIQQQIHHHHHH")
_SHDR = struct.Struct("<IIQQQQIIQQ")
_SYM = struct.Struct("<IBBHQQ")


class NotApplicable(Exception):
    """An ELF file that is not x86-64 code: not an error, just out of scope."""


# A NamedTuple, like Symbol below: a scan builds one per section of every object (50,000 for the
# benchmark set), and a frozen dataclass sets each of its ten fields through object.__setattr__.
class Section(NamedTuple):
    index: int  # type: ignore[assignment]  # hides tuple.index(), which nothing calls on a Section
    name: str
    type: int
    flags: int
    addr: int
    offset: int
    size: int
    link: int
    info: int
    entsize: int

    @property
    def executable(self) -> bool:
        return bool(self.flags & SHF_EXECINSTR) and self.type == SHT_PROGBITS and self.size > 0


# A NamedTuple, not a frozen dataclass, for the same reason: a scan builds one Symbol per symbol
# of every object.
class Symbol(NamedTuple):
    name: str
    value: int
    size: int
    type: int
    bind: int
    shndx: int


def describe_machine(data: bytes | memoryview) -> str | None:
    """Why an ELF file is out of scope, or None when it is ELF64 little-endian x86-64."""
    if len(data) < 20:
        return None
    ei_class, ei_data = data[4], data[5]
    machine = struct.unpack_from("<H" if ei_data == 1 else ">H", data, 18)[0]
    name = MACHINES.get(machine, f"machine {machine}")
    if machine == EM_X86_64 and ei_class == 1:
        return "x32 (ELF32 x86-64) is not supported"
    if machine != EM_X86_64:
        bits = {1: "32-bit", 2: "64-bit"}.get(ei_class, "")
        return f"{bits} {name} ELF, not x86-64; the System V x86-64 red zone does not apply".strip()
    if ei_class != 2 or ei_data != 1:
        return "x86-64 ELF with an unexpected class or byte order"
    return None


class ElfFile:
    """Sections and symbols of one ELF64 x86-64 image held in memory (or an mmap slice)."""

    def __init__(self, data: bytes | memoryview) -> None:
        self.data = memoryview(data)
        if len(self.data) < _EHDR.size:
            raise InputError(f"truncated ELF header ({len(self.data)} bytes, need {_EHDR.size})")
        reason = describe_machine(self.data)
        if reason:
            raise NotApplicable(reason)
        (_, self.type, self.machine, _, self.entry, _, shoff, _, _, _, _, shentsize, shnum, shstrndx) = (
            _EHDR.unpack_from(self.data, 0)
        )
        self.sections = self._read_sections(shoff, shentsize, shnum, shstrndx)
        # Decoded once: functions, OCaml units and calls all read the symbol table.
        self._symbols: list[Symbol] | None = None

    def _read_sections(self, shoff: int, shentsize: int, shnum: int, shstrndx: int) -> list[Section]:
        size = len(self.data)
        if shoff == 0:
            return []
        if shentsize != _SHDR.size:
            raise InputError(f"section header entry size is {shentsize}, expected {_SHDR.size}")
        if shoff > size:
            raise InputError(f"section header table at 0x{shoff:x} is outside the file ({size} bytes)")
        if shnum == 0:  # extended numbering: the real count is in section 0's sh_size
            if shoff + _SHDR.size > size:
                raise InputError("truncated section header table")
            shnum = _SHDR.unpack_from(self.data, shoff)[5]
        if shoff + shnum * _SHDR.size > size:
            raise InputError(
                f"section header table (0x{shoff:x} + {shnum} x {_SHDR.size} bytes) "
                f"extends past the end of the file ({size} bytes)"
            )
        raw = [_SHDR.unpack_from(self.data, shoff + i * _SHDR.size) for i in range(shnum)]
        if shstrndx == SHN_XINDEX and raw:
            shstrndx = raw[0][7]
        names = b""
        if 0 < shstrndx < shnum:
            _, _, _, _, off, sz, *_ = raw[shstrndx]
            if off + sz > size:
                raise InputError(f"section name table (section {shstrndx}) points outside the file")
            names = bytes(self.data[off : off + sz])
        elif shstrndx >= shnum and shstrndx != 0:
            raise InputError(f"section name table index {shstrndx} is out of range ({shnum} sections)")
        sections = []
        for i, (name_off, typ, flags, addr, off, sz, link, info, _align, entsize) in enumerate(raw):
            if typ != SHT_NOBITS and typ != 0 and off + sz > size:
                raise InputError(
                    f"section {i} ({_cstr(names, name_off) or '?'}) at 0x{off:x}+0x{sz:x} "
                    f"points outside the file ({size} bytes)"
                )
            sections.append(
                Section(i, _cstr(names, name_off), typ, flags, addr, off, sz, link, info, entsize)
            )
        return sections

    def section_data(self, section: Section) -> memoryview:
        if section.type == SHT_NOBITS:
            return memoryview(b"")
        return self.data[section.offset : section.offset + section.size]

    def section_by_name(self, name: str) -> Section | None:
        for section in self.sections:
            if section.name == name:
                return section
        return None

    def symbols(self) -> list[Symbol]:
        """The static symbol table, or the dynamic one when the file is stripped."""
        if self._symbols is None:
            self._symbols = self._read_symbols()
        return self._symbols

    def _read_symbols(self) -> list[Symbol]:
        table = next((s for s in self.sections if s.type == SHT_SYMTAB), None)
        table = table or next((s for s in self.sections if s.type == SHT_DYNSYM), None)
        if table is None:
            return []
        if table.entsize not in (0, _SYM.size):
            raise InputError(f"symbol table {table.name} has entry size {table.entsize}")
        if not 0 <= table.link < len(self.sections):
            raise InputError(f"symbol table {table.name} links to missing string table {table.link}")
        # One copy of the string table, not one slice per name: objects have thousands of symbols.
        strtab = bytes(self.section_data(self.sections[table.link]))
        data = self.section_data(table)
        count = len(data) // _SYM.size
        out = []
        for name_off, info, _other, shndx, value, size in _SYM.iter_unpack(
            data[_SYM.size : count * _SYM.size]
        ):
            out.append(Symbol(_cstr(strtab, name_off), value, size, info & 0xF, info >> 4, shndx))
        return out

    @property
    def is_lto_only(self) -> bool:
        """GCC slim LTO objects carry GIMPLE in .gnu.lto_* sections and no machine code."""
        has_lto = any(s.name.startswith((".gnu.lto_", ".gnu.lto.")) for s in self.sections)
        return has_lto and not any(s.executable for s in self.sections)


def _cstr(table: bytes, offset: int) -> str:
    """The NUL-terminated name at `offset`, at most 4096 bytes: a table without its NUL is not trusted."""
    if offset >= len(table):
        return ""
    end = table.find(b"\0", offset, offset + 4096)
    return table[offset : end if end >= 0 else offset + 4096].decode("utf-8", "surrogateescape")
