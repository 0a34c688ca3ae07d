"""Source lines from DWARF `.debug_line`, per (section, offset).

In a relocatable object every line sequence starts at the address its relocation
gives it, and with `-ffunction-sections` each function's section starts at 0:
after pyelftools applies the relocations, nothing says which section a sequence
belongs to. So the relocations of the DWARF sections are applied here, and an
`R_X86_64_64` slot aimed at an executable section receives an address that
encodes that section: `((section_index + 1) << 40) | offset`.
"""

from __future__ import annotations

import io
import os
import struct
import weakref
import zlib
from bisect import bisect_right
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from elftools.common.exceptions import DWARFError, ELFError
from elftools.construct.core import ConstructError

from redzone_check.errors import InputError

if TYPE_CHECKING:
    from elftools.dwarf.dwarfinfo import DWARFInfo
    from elftools.elf.elffile import ELFFile

# pyelftools reports bogus DWARF through any of these.
BAD_DWARF: tuple[type[Exception], ...] = (
    ELFError, DWARFError, ConstructError, struct.error, zlib.error, IndexError, KeyError, ValueError,
    TypeError, AttributeError, AssertionError, NotImplementedError, OverflowError, RecursionError, EOFError,
)  # fmt: skip

SECTION_SHIFT = 40
_SHF_EXECINSTR = 0x4
_R_X86_64_64, _R_X86_64_32, _R_X86_64_32S = 1, 10, 11
_EM_X86_64 = "EM_X86_64"
_MAX_DEBUG_BYTES = 1 << 30
_ZLIB_MAX_RATIO = 1100  # deflate cannot expand more than ~1032:1
_RELOCATED = (
    "debug_info_sec", "debug_line_sec", "debug_addr_sec", "debug_str_offsets_sec",
    "debug_ranges_sec", "debug_rnglists_sec", "debug_aranges_sec", "debug_loclists_sec", "debug_loc_sec",
)  # fmt: skip


@dataclass(frozen=True)
class LineInfo:
    file: str  # DWARF's path joined with its directory and DW_AT_comp_dir, normalised
    line: int


def encode(section_index: int, offset: int) -> int:
    """The address a relocatable object's (section, offset) gets in the patched DWARF."""
    return ((section_index + 1) << SECTION_SHIFT) | offset


def text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogateescape")
    return str(value)


def has_debug_line(elf: ELFFile) -> bool:
    sec = elf.get_section_by_name(".debug_line") or elf.get_section_by_name(".zdebug_line")
    return sec is not None and sec["sh_type"] != "SHT_NOBITS"


def _check_sizes(elf: ELFFile) -> None:
    """Refuse debug sections whose sizes would make pyelftools read or inflate far too much."""
    elf.stream.seek(0, os.SEEK_END)
    file_size = elf.stream.tell()
    for sec in elf.iter_sections():
        if not (sec.name.startswith((".debug", ".zdebug")) or sec.name == ".eh_frame"):
            continue
        if sec["sh_type"] == "SHT_NOBITS":
            raise InputError(f"DWARF section {sec.name} has no data in the file (SHT_NOBITS)")
        if sec["sh_offset"] + sec["sh_size"] > file_size:
            raise InputError(f"DWARF section {sec.name} extends past the end of the file")
        if sec.compressed and sec.data_size > min(_MAX_DEBUG_BYTES, _ZLIB_MAX_RATIO * sec["sh_size"] + 4096):
            raise InputError(f"compressed DWARF section {sec.name} claims an impossible size {sec.data_size}")


def _symbols(elf: ELFFile, index: int) -> list[tuple[int, int]]:
    """(st_shndx, st_value) of every symbol in the table at `index`, read in bulk (ELF64 LE)."""
    symtab = elf.get_section(index)
    data = symtab.data()
    data = data[: len(data) - len(data) % 24]
    return [(shndx, value) for _, _, _, shndx, value, _ in struct.iter_unpack("<IBBHQQ", data)]


def _relocate(elf: ELFFile, dwarf: DWARFInfo) -> None:
    """Apply the RELA relocations of the DWARF sections, encoding code addresses by section."""
    targets = {sec.name: i for i, sec in enumerate(elf.iter_sections())}
    executable = {i for i, sec in enumerate(elf.iter_sections()) if sec["sh_flags"] & _SHF_EXECINSTR}
    relas: dict[int, Any] = {}
    for sec in elf.iter_sections():
        if sec["sh_type"] == "SHT_RELA":
            relas[sec["sh_info"]] = sec
    symbol_cache: dict[int, list[tuple[int, int]]] = {}
    for attr in _RELOCATED:
        desc = getattr(dwarf, attr)
        rela = relas.get(targets.get(desc.name, -1)) if desc is not None else None
        if rela is None:
            continue
        symbols = symbol_cache.get(rela["sh_link"])
        if symbols is None:
            symbols = symbol_cache[rela["sh_link"]] = _symbols(elf, rela["sh_link"])
        data = bytearray(desc.stream.getvalue())
        raw = rela.data()
        for r_offset, r_info, r_addend in struct.iter_unpack("<QQq", raw[: len(raw) - len(raw) % 24]):
            kind, sym = r_info & 0xFFFFFFFF, r_info >> 32
            if sym >= len(symbols):
                raise InputError(f"relocation in {rela.name} names symbol {sym}, beyond the symbol table")
            shndx, value = symbols[sym]
            if kind == _R_X86_64_64:
                value = encode(shndx, value + r_addend) if shndx in executable else value + r_addend
                width = 8
            elif kind in (_R_X86_64_32, _R_X86_64_32S):
                value, width = value + r_addend, 4
            else:  # e.g. R_X86_64_DTPOFF32 of a __thread variable: no bearing on lines
                continue
            if r_offset + width > len(data):
                raise InputError(f"relocation in {rela.name} points outside {desc.name}")
            data[r_offset : r_offset + width] = (value & ((1 << (8 * width)) - 1)).to_bytes(width, "little")
        setattr(dwarf, attr, desc._replace(stream=io.BytesIO(bytes(data))))


def _load(elf: ELFFile) -> DWARFInfo:
    _check_sizes(elf)
    relocatable = elf["e_type"] == "ET_REL"
    if relocatable and elf["e_machine"] == _EM_X86_64 and elf.elfclass == 64 and elf.little_endian:
        dwarf = elf.get_dwarf_info(relocate_dwarf_sections=False, follow_links=False)
        _relocate(elf, dwarf)
        return dwarf
    return elf.get_dwarf_info(relocate_dwarf_sections=relocatable, follow_links=False)


_CACHE: weakref.WeakKeyDictionary[ELFFile, DWARFInfo] = weakref.WeakKeyDictionary()


def dwarf_of(elf: ELFFile) -> DWARFInfo:
    """The object's DWARF with section-encoded relocations, shared by lines.py and units.py."""
    cached = _CACHE.get(elf)
    if cached is None:
        try:
            cached = _load(elf)
        except BAD_DWARF as exc:
            raise InputError(f"bogus DWARF: {exc or type(exc).__name__}") from exc
        _CACHE[elf] = cached
    return cached


def file_names(dwarf: DWARFInfo, program: Any, comp_dir: str | None) -> list[str | None]:
    """Paths of a line program's files, indexed by the `file` register (DWARF 4: 1-based, 5: 0-based)."""
    header = program.header
    version = header["version"]
    dirs = [text(d) or "" for d in header["include_directory"]]
    base = comp_dir or (dirs[0] if version >= 5 and dirs else "")
    names: list[str | None] = [] if version >= 5 else [None]
    for entry in header["file_entry"]:
        name = text(entry.name) or ""
        index = entry.dir_index or 0
        if version >= 5:
            directory = dirs[index] if index < len(dirs) else ""
        else:
            directory = dirs[index - 1] if 0 < index <= len(dirs) else ""
        names.append(os.path.normpath(os.path.join(base, directory, name)) if name else None)
    return names


@dataclass(frozen=True)
class _Rows:
    starts: list[int]
    ends: list[int]
    files: list[int]
    lines: list[int]
    units: list[int]
    paths: list[str | None]


def _rows(dwarf: DWARFInfo, relocatable: bool) -> _Rows:
    spans: list[tuple[int, int, int, int, int]] = []
    path_ids: dict[str | None, int] = {}
    for unit_index, cu in enumerate(dwarf.iter_CUs()):
        program = dwarf.line_program_for_CU(cu)
        if program is None:
            continue
        if program.header["version"] not in (2, 3, 4, 5):
            raise InputError(f"bogus DWARF: .debug_line version {program.header['version']} is not 2 to 5")
        comp_dir = cu.get_top_DIE().attributes.get("DW_AT_comp_dir")
        names = file_names(dwarf, program, text(comp_dir.value) if comp_dir else None)
        ids = [path_ids.setdefault(name, len(path_ids)) for name in names]
        previous: tuple[int, int, int] | None = None
        for entry in program.get_entries():
            state = entry.state
            if state is None:
                continue
            address = state.address
            if previous is not None and address > previous[0]:
                start, file, line = previous
                if not relocatable or start >> SECTION_SHIFT:
                    file_id = ids[file] if 0 <= file < len(ids) else -1
                    spans.append((start, address, file_id, line, unit_index))
            previous = None if state.end_sequence else (address, state.file, state.line)
    paths: list[str | None] = [None] * len(path_ids)
    for name, index in path_ids.items():
        paths[index] = name
    spans.sort()
    return _Rows(
        starts=[s[0] for s in spans],
        ends=[s[1] for s in spans],
        files=[s[2] for s in spans],
        lines=[s[3] for s in spans],
        units=[s[4] for s in spans],
        paths=paths,
    )


_ROWS: weakref.WeakKeyDictionary[ELFFile, _Rows] = weakref.WeakKeyDictionary()


class LineTable:
    """Maps (section index, offset in section) to a source line; decoded on first lookup."""

    def __init__(self, elf: ELFFile) -> None:
        self._elf = elf
        self._relocatable = elf["e_type"] == "ET_REL"
        self._table: _Rows | None = None

    @classmethod
    def from_elf(cls, elf: ELFFile) -> LineTable | None:
        """None when the object has no `.debug_line`."""
        try:
            return cls(elf) if has_debug_line(elf) else None
        except BAD_DWARF as exc:
            raise InputError(f"unreadable section headers: {exc or type(exc).__name__}") from exc

    def _address(self, section_index: int, offset: int) -> int | None:
        if self._relocatable:
            return encode(section_index, offset)
        try:
            return int(self._elf.get_section(section_index)["sh_addr"]) + offset
        except BAD_DWARF:
            return None

    def _index(self, section_index: int, offset: int) -> int | None:
        if self._table is None:
            self._table = _ROWS.get(self._elf)
        if self._table is None:
            dwarf = dwarf_of(self._elf)
            try:
                self._table = _ROWS[self._elf] = _rows(dwarf, self._relocatable)
            except BAD_DWARF as exc:
                raise InputError(f"bogus DWARF line table: {exc or type(exc).__name__}") from exc
        address = self._address(section_index, offset)
        if address is None:
            return None
        i = bisect_right(self._table.starts, address) - 1
        return i if i >= 0 and address < self._table.ends[i] else None

    def lookup(self, section_index: int, offset: int) -> LineInfo | None:
        i = self._index(section_index, offset)
        if i is None or self._table is None:
            return None
        file_id, line = self._table.files[i], self._table.lines[i]
        path = self._table.paths[file_id] if file_id >= 0 else None
        # Line 0 marks code that the compiler could not attribute to any line.
        return LineInfo(path, line) if path is not None and line > 0 else None

    def unit_index(self, section_index: int, offset: int) -> int | None:
        """Position (in `.debug_info` order) of the compile unit whose line program covers the address."""
        i = self._index(section_index, offset)
        return None if i is None or self._table is None else self._table.units[i]
