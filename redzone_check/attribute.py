"""Detections -> findings: names, languages, source lines and build flags.

DWARF is parsed only for objects that have hits (pyelftools is slow to set
up); a corrupt debug section costs the attribution, never the detection.
pyelftools is even imported only then: a fifth of a pre-commit run on a clean object.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from redzone_check.attribution.demangle import demangle
from redzone_check.attribution.paths import PathMapper
from redzone_check.detect import Detection, Hit
from redzone_check.errors import InputError
from redzone_check.model import BuildInfo, Finding, Instruction, Level, Source, binary_location
from redzone_check.options import RED_ZONE_SAFE_PLATFORMS, ScanOptions

if TYPE_CHECKING:
    from elftools.elf.elffile import ELFFile

    from redzone_check.attribution.lines import LineTable
    from redzone_check.attribution.units import CompileUnits, Unit

Report = Callable[[str], None]


@dataclass
class Debug:
    """Lazily opened pyelftools view of one object."""

    data: bytes | memoryview
    report: Report
    _elf: ELFFile | None = None
    _lines: LineTable | None = None
    _units: CompileUnits | None = None
    _failed: bool = False

    def __enter__(self) -> Debug:
        return self

    def __exit__(self, *exc: object) -> None:
        # pyelftools' ELFFile sits in reference cycles, which keep its copy of the object's bytes
        # until the collector runs: free the copy now, as a scan may open thousands of these.
        if self._elf is not None:
            self._elf.stream.close()
        self._elf = self._lines = self._units = None

    def elf(self) -> ELFFile | None:
        if self._elf is None and not self._failed:
            from elftools.common.exceptions import ELFError

            from redzone_check.attribution.pyelf import open_elf

            try:
                self._elf = open_elf(self.data)
            except (ELFError, ValueError, OSError) as exc:
                self._fail(f"cannot read debug information: {exc}")
        return self._elf

    def _fail(self, message: str) -> None:
        if not self._failed:
            self._failed = True
            self.report(message)

    def line(self, section_index: int, offset: int) -> tuple[str, int] | None:
        elf = self.elf()
        if elf is None:
            return None
        try:
            if self._lines is None:
                from redzone_check.attribution.lines import LineTable

                self._lines = LineTable.from_elf(elf)
            info = self._lines.lookup(section_index, offset) if self._lines else None
        except InputError as exc:
            self._fail(str(exc))
            return None
        return (info.file, info.line) if info else None

    def unit(self, section_index: int, offset: int) -> Unit | None:
        units = self.units()
        if units is None:
            return None
        try:
            return units.for_address(section_index, offset)
        except InputError as exc:
            self._fail(str(exc))
            return None

    def units(self) -> CompileUnits | None:
        elf = self.elf()
        if elf is None:
            return None
        if self._units is None:
            try:
                from redzone_check.attribution.units import CompileUnits

                self._units = CompileUnits.from_elf(elf)
            except InputError as exc:
                self._fail(str(exc))
                return None
        return self._units


def level_for(rule: str, benign_only: bool, options: ScanOptions) -> Level:
    if rule == "RZ003":
        return "warning"
    if rule == "RZ002":
        return "error"
    if benign_only or options.platform in RED_ZONE_SAFE_PLATFORMS:
        return "note"
    return "error"


def _message(rule: str, name: str, insns: tuple[Instruction, ...]) -> str:
    deepest = min(i.rsp_offset for i in insns)
    if rule == "RZ002":
        return f"`{name}` accesses memory {-deepest} bytes below %rsp, beyond the 128-byte red zone"
    if all(i.benign for i in insns):
        return f"`{name}` uses the red zone only for a locked no-op (a memory fence): benign"
    count = len(insns)
    what = "instruction" if count == 1 else "instructions"
    return f"`{name}` keeps data in the red zone ({count} {what}, down to %rsp{deepest})"


def findings_for(
    path: str,
    member: str | None,
    detection: Detection,
    debug: Debug,
    mapper: PathMapper,
    options: ScanOptions,
    language_hint: Callable[[str], str | None],
) -> list[Finding]:
    out: list[Finding] = []
    for hit in detection.hits:
        out.extend(_hit_findings(path, member, hit, debug, mapper, options, language_hint))
    return out


def _hit_findings(
    path: str,
    member: str | None,
    hit: Hit,
    debug: Debug,
    mapper: PathMapper,
    options: ScanOptions,
    language_hint: Callable[[str], str | None],
) -> list[Finding]:
    fn = hit.function
    name, guessed = demangle(fn.name)
    unit = debug.unit(fn.section_index, fn.offset)
    language = language_hint(fn.name) or (unit.language if unit and unit.language != "unknown" else guessed)
    build = unit.build if unit else None
    if build is None:
        build = BuildInfo(None, None, (), (), False, _no_debug_note(path, member))
    out = []
    for rule, insns in (("RZ001", hit.red_zone), ("RZ002", hit.beyond)):
        if not insns:
            continue
        # The lea that made a stack pointer is context; the finding sits on the first access.
        first = next((i for i in insns if i.access != "address"), insns[0])
        where = debug.line(fn.section_index, first.section_offset)
        source = Source(mapper.source(where[0]), where[1]) if where else None
        level = level_for(rule, all(i.benign for i in insns), options)
        finding = Finding(
            rule=rule,
            level=level,
            message=_message(rule, name, insns),
            path=mapper.binary(path),
            member=member,
            section=fn.section,
            section_offset=first.section_offset,
            function_offset=first.function_offset,
            symbol=fn.name,
            aliases=fn.aliases,
            function=name,
            language=language,
            instructions=insns,
            source=source,
            build=build,
        )
        out.append(finding.with_fingerprint())
    return out


def unit_findings(path: str, member: str | None, debug: Debug, mapper: PathMapper) -> list[Finding]:
    """RZ003: compile units whose recorded flags lack -mno-red-zone."""
    units = debug.units()
    if units is None:
        return []
    out = []
    for unit in units.units:
        build = unit.build
        if not build.recorded or "-mno-red-zone" not in build.missing or unit.language == "ocaml":
            continue
        name = unit.name or binary_location(path, member)
        file = mapper.source(name) if unit.name else None
        compiler = build.compiler or "unknown compiler"
        finding = Finding(
            rule="RZ003",
            level="warning",
            message=f"compile unit `{name}` was built without -mno-red-zone ({compiler})",
            path=mapper.binary(path),
            member=member,
            section="",
            section_offset=0,
            function_offset=0,
            symbol=name,
            aliases=(),
            function=name,
            language=unit.language,
            instructions=(),
            source=Source(file, 0) if file else None,
            build=build,
        )
        out.append(finding.with_fingerprint())
    return out


def _no_debug_note(path: str, member: str | None) -> str:
    return (
        f"{binary_location(path, member)} records no build flags: rebuild with -g "
        "(gcc records its switches in DW_AT_producer; clang needs -grecord-command-line) "
        "or -frecord-gcc-switches"
    )
