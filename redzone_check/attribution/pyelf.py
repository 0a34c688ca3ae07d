"""pyelftools' `ELFFile` over bytes, with its struct parsers built once per kind of ELF file.

pyelftools builds a fresh `ELFStructs` for every `ELFFile`: about a millisecond, and some 430
objects held in reference cycles, which only the cycle collector reclaims. Every object with a
finding opens one (and every object of a `--require-no-red-zone-flag` scan), so a scan paid for
the parsers once per object and made the collector walk their garbage. The parsers depend only on
the identification and header fields they are built from, and parsing never changes them, so one
set is shared by every file of the same kind.

`ELFFile.__init__` is followed step for step, with the parsers taken from the shared set; a
pyelftools whose `ELFFile` no longer has the steps this relies on gets a plain `ELFFile`.
tests/test_pyelf.py compares both on real objects.
"""

from __future__ import annotations

import io

from elftools.elf.elffile import ELFFile
from elftools.elf.structs import ELFStructs

_Kind = tuple[bool, int, str | None, str | None, str | None]  # endianness, class, e_type, e_machine, EI_OSABI
_basic: dict[tuple[bool, int], ELFStructs] = {}
_advanced: dict[_Kind, ELFStructs] = {}
_STEPS = ("_identify_file", "_parse_elf_header")


class _SharedStructsELFFile(ELFFile):
    def __init__(self, stream: io.BytesIO) -> None:
        self.stream = stream
        self.stream.seek(0, io.SEEK_END)
        self.stream_len = self.stream.tell()
        self._identify_file()
        self.structs = _basic_structs(self.little_endian, self.elfclass)
        self.header = self._parse_elf_header()
        self.structs = _advanced_structs(
            (
                self.little_endian,
                self.elfclass,
                self["e_type"],
                self["e_machine"],
                self["e_ident"]["EI_OSABI"],
            )
        )
        self.stream.seek(0)
        self.e_ident_raw = self.stream.read(16)
        self.stream_loader = None


def _basic_structs(little_endian: bool, elfclass: int) -> ELFStructs:
    structs = _basic.get((little_endian, elfclass))
    if structs is None:
        structs = ELFStructs(little_endian=little_endian, elfclass=elfclass)
        structs.create_basic_structs()
        _basic[(little_endian, elfclass)] = structs
    return structs


def _advanced_structs(kind: _Kind) -> ELFStructs:
    structs = _advanced.get(kind)
    if structs is None:
        little_endian, elfclass, e_type, e_machine, osabi = kind
        structs = ELFStructs(little_endian=little_endian, elfclass=elfclass)
        structs.create_basic_structs()
        structs.create_advanced_structs(e_type, e_machine, osabi)
        _advanced[kind] = structs
    return structs


_SHARED = all(callable(getattr(ELFFile, step, None)) for step in _STEPS)


def open_elf(data: bytes | memoryview) -> ELFFile:
    """pyelftools' view of an ELF file in memory. Raises what `ELFFile` raises on bad input."""
    stream = io.BytesIO(bytes(data))
    return _SharedStructsELFFile(stream) if _SHARED else ELFFile(stream)
