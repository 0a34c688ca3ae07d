"""Compile units and the build flags they recorded (DW_AT_producer, .GCC.command.line, .comment)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from redzone_check.attribution.lines import BAD_DWARF, LineTable, dwarf_of, text
from redzone_check.errors import InputError
from redzone_check.model import BuildInfo

if TYPE_CHECKING:
    from elftools.elf.elffile import ELFFile

_LANGUAGES = {
    **dict.fromkeys((0x1, 0x2, 0xC, 0x1D, 0x2C), "c"),
    **dict.fromkeys((0x4, 0x19, 0x1A, 0x21, 0x2A, 0x2B, 0x3A), "c++"),
    0x1B: "ocaml",
    0x1C: "rust",
    **dict.fromkeys((0x31, 0x8001), "asm"),  # DW_LANG_Assembly, DW_LANG_Mips_Assembler (GNU as)
}
# ocamlopt marks every compilation unit with these symbols.
_OCAML_MARK = re.compile(rb"\0caml[^\0]*__(?:code_begin|frametable)\0")


@dataclass(frozen=True)
class BuildFacts:
    """What an object says about how one of its units was built."""

    producer: str | None
    command_line: tuple[str, ...] | None  # from .GCC.command.line
    comment: str | None  # compiler named by .comment
    language: str
    has_dwarf: bool


_GCC = re.compile(r"^GNU (?P<lang>\S+) (?P<version>\d[\w.+-]*)(?P<rest>.*)$", re.S)
_CLANG = re.compile(r"\bclang version (?P<version>\d[\w.+-]*)(?P<rest>.*)$", re.S)
_RUSTC = re.compile(r"\brustc version (?P<version>\d[\w.+-]*)")
_COMMENT_GCC = re.compile(r"^GCC: \(.*\) (?P<version>\d[\w.+-]*)")
_PARENTHESISED = re.compile(r"^\s*\([^)]*\)")
_RECORD_HOWTO = (
    "build with -g (gcc records its switches in DW_AT_producer by default; clang needs "
    "-grecord-command-line) or with -frecord-gcc-switches (gcc) / -frecord-command-line (clang)"
)


def _is_program(token: str) -> bool:
    return (
        not token.startswith("-")
        and re.search(r"(^|/)(clang|gcc|cc|c\+\+|g\+\+)[\w.+-]*$", token) is not None
    )


def parse_producer(producer: str) -> tuple[str | None, tuple[str, ...]]:
    """(compiler, recorded flags) from a DW_AT_producer or a .GCC.command.line record."""
    if m := _GCC.match(producer):
        name = "GNU AS" if m["lang"] == "AS" else "GCC"
        return f"{name} {m['version']}", tuple(m["rest"].split())
    if m := _RUSTC.search(producer):
        return f"rustc {m['version']}", ()
    if m := _CLANG.search(producer):
        words = _PARENTHESISED.sub("", m["rest"]).split()
        # clang -grecord-command-line appends its whole command line: program path, then arguments.
        return f"clang {m['version']}", tuple(words[1:] if words and _is_program(words[0]) else words)
    return producer.strip() or None, tuple(w for w in producer.split() if w.startswith("-"))


def command_line(data: bytes | None) -> tuple[str, ...] | None:
    """The switches in .GCC.command.line: gcc 12 writes its producer string, older gcc one
    switch per string, clang its whole command line."""
    if data is None:
        return None
    records = [r.decode("utf-8", "surrogateescape") for r in data.split(b"\0") if r.strip()]
    if not records:
        return None
    if records[0].startswith("GNU "):
        return parse_producer(records[0])[1]
    words = " ".join(records).split() if len(records) == 1 else records
    return tuple(words[1:] if words and _is_program(words[0]) else words)


def comment_compiler(data: bytes | None) -> str | None:
    """The first compiler named by .comment ("GCC: (Debian 12.2.0-14) 12.2.0" -> "GCC 12.2.0")."""
    for record in (data or b"").split(b"\0"):
        line = record.decode("utf-8", "replace").strip()
        if m := _COMMENT_GCC.match(line):
            return f"GCC {m['version']}"
        if m := _CLANG.search(line):
            return f"clang {m['version']}"
    return None


def _missing(flags: tuple[str, ...]) -> tuple[str, ...]:
    last = [f for f in flags if f in ("-mred-zone", "-mno-red-zone")]
    return () if last and last[-1] == "-mno-red-zone" else ("-mno-red-zone",)


def _unrecorded_note(facts: BuildFacts, compiler: str | None) -> str:
    if facts.language == "ocaml":
        return (
            "ocamlopt output (assembled by GNU as): OCaml code does not use the red zone, and ocamlopt "
            "records no flags; C stubs carry the C compiler's flags (set them with dune's (c_flags ...) "
            "or ocamlopt -ccopt)"
        )
    if compiler and compiler.startswith("GNU AS"):
        return "assembled by GNU as from hand-written assembly: no compiler flag changes its red-zone use"
    if compiler and compiler.startswith("rustc"):
        return "rustc records no flags; the target (e.g. x86_64-unknown-none) decides red-zone use"
    if not facts.has_dwarf:
        return f"no DWARF and no .GCC.command.line, so the flags were not recorded: {_RECORD_HOWTO}"
    if compiler and compiler.startswith("clang"):
        return "clang records no flags by default: build with -grecord-command-line or -frecord-command-line"
    if compiler and compiler.startswith("GCC"):
        return "gcc recorded no switches (-gno-record-gcc-switches?): drop that or add -frecord-gcc-switches"
    return f"the flags were not recorded: {_RECORD_HOWTO}"


def build_info(facts: BuildFacts) -> BuildInfo:
    compiler: str | None = None
    flags: tuple[str, ...] = ()
    if facts.producer:
        compiler, flags = parse_producer(facts.producer)
    if not flags and facts.command_line:
        flags = facts.command_line
    compiler = compiler or facts.comment
    if not flags:
        how = _unrecorded_note(facts, compiler)
        return BuildInfo(facts.producer, compiler, (), (), recorded=False, note=how)
    note = "built with an explicit -mred-zone" if "-mred-zone" in flags else None
    return BuildInfo(facts.producer, compiler, flags, _missing(flags), recorded=True, note=note)


@dataclass(frozen=True)
class Unit:
    name: str | None
    comp_dir: str | None
    producer: str | None
    language: str  # "c", "c++", "rust", "ocaml", "asm", "unknown"
    build: BuildInfo


def _section_bytes(elf: ELFFile, name: str) -> bytes | None:
    section = elf.get_section_by_name(name)
    if section is None or section["sh_type"] == "SHT_NOBITS":
        return None
    data: bytes = section.data()
    return data


def _is_ocaml(elf: ELFFile) -> bool:
    strtab = _section_bytes(elf, ".strtab")
    return strtab is not None and _OCAML_MARK.search(b"\0" + strtab) is not None


class CompileUnits:
    """The compile units of one object, and which one an address belongs to."""

    def __init__(self, units: tuple[Unit, ...], lines: LineTable | None) -> None:
        self.units = units
        self._lines = lines

    @classmethod
    def from_elf(cls, elf: ELFFile, lines: LineTable | None = None) -> CompileUnits:
        try:
            return cls._read(elf, lines)
        except BAD_DWARF as exc:
            raise InputError(f"bogus DWARF compile unit: {exc or type(exc).__name__}") from exc

    @classmethod
    def _read(cls, elf: ELFFile, lines: LineTable | None) -> CompileUnits:
        ocaml = _is_ocaml(elf)
        recorded_line = command_line(_section_bytes(elf, ".GCC.command.line"))
        comment = comment_compiler(_section_bytes(elf, ".comment"))
        units: list[Unit] = []
        if elf.get_section_by_name(".debug_info") is not None:
            for cu in dwarf_of(elf).iter_CUs():
                attrs = cu.get_top_DIE().attributes
                producer = text(attrs["DW_AT_producer"].value) if "DW_AT_producer" in attrs else None
                code = attrs["DW_AT_language"].value if "DW_AT_language" in attrs else None
                language = _LANGUAGES.get(code, "unknown") if isinstance(code, int) else "unknown"
                if ocaml and language in ("asm", "unknown"):
                    language = "ocaml"
                facts = BuildFacts(producer, recorded_line, comment, language, has_dwarf=True)
                units.append(
                    Unit(
                        name=text(attrs["DW_AT_name"].value) if "DW_AT_name" in attrs else None,
                        comp_dir=text(attrs["DW_AT_comp_dir"].value) if "DW_AT_comp_dir" in attrs else None,
                        producer=producer,
                        language=language,
                        build=build_info(facts),
                    )
                )
        if not units:
            language = "ocaml" if ocaml else "unknown"
            facts = BuildFacts(None, recorded_line, comment, language, has_dwarf=False)
            units.append(Unit(None, None, None, language, build_info(facts)))
        if lines is None and len(units) > 1:
            lines = LineTable.from_elf(elf)
        return cls(tuple(units), lines)

    def for_address(self, section_index: int, offset: int) -> Unit | None:
        """The unit holding the code; with several units, the one whose line program covers it."""
        if len(self.units) == 1:
            return self.units[0]
        if self._lines is None:
            return None
        index = self._lines.unit_index(section_index, offset)
        return self.units[index] if index is not None and index < len(self.units) else None
