"""The pipeline: inputs -> objects -> functions -> stack analysis -> findings -> attribution."""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass, field

from redzone_check.attribute import Debug, findings_for, unit_findings
from redzone_check.attribution.ocaml_externals import ExternalIndex
from redzone_check.attribution.ocaml_units import is_ocaml_symbol
from redzone_check.attribution.paths import PathMapper
from redzone_check.callgraph import CallGraph, object_calls
from redzone_check.detect import detect
from redzone_check.elf import ElfFile, NotApplicable
from redzone_check.errors import InputError
from redzone_check.inputs import Blob, iter_blobs
from redzone_check.model import (
    LEVELS,
    Finding,
    InputProblem,
    ScanResult,
    SkipKind,
    Skipped,
    Summary,
    binary_location,
)
from redzone_check.options import ScanOptions
from redzone_check.reach import attach


@dataclass
class _Collector:
    """The Sink for inputs, and the running totals. Paths arrive as found and leave mapped."""

    mapper: PathMapper
    errors: list[InputProblem] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    objects: int = 0
    functions: int = 0
    unknown: int = 0
    ocaml: int = 0
    graph: CallGraph = field(default_factory=CallGraph)

    def skip(self, path: str, member: str | None, reason: str, kind: SkipKind) -> None:
        self.skipped.append(Skipped(self.mapper.binary(path), member, reason, kind))

    def error(self, path: str, member: str | None, message: str) -> None:
        self.errors.append(InputProblem(self.mapper.binary(path), member, message))


def scan(paths: Sequence[str], options: ScanOptions) -> ScanResult:
    mapper = PathMapper(options.source_root, options.path_maps)
    sink = _Collector(mapper)
    for blob in iter_blobs(paths, sink):
        _scan_blob(blob, options, mapper, sink)
    if sink.findings:
        # The reach of a finding spans every object of the run, so it is attached last.
        externals = ExternalIndex.scan(options.source_root)
        sink.findings = attach(sink.findings, sink.graph, externals, options.source_root, mapper)
    return _result(len(paths), sink, options)


def _excluded(display: str, options: ScanOptions) -> bool:
    return any(fnmatch.fnmatch(display, pattern) for pattern in options.excludes)


def _scan_blob(blob: Blob, options: ScanOptions, mapper: PathMapper, sink: _Collector) -> None:
    display = blob.path
    if options.excludes and _excluded(mapper.binary(display), options):
        sink.skip(display, blob.member, "excluded by configuration", "excluded")
        return
    try:
        elf = ElfFile(blob.data)
    except NotApplicable as exc:
        sink.skip(display, blob.member, str(exc), "not-applicable")
        return
    except InputError as exc:
        sink.error(display, blob.member, f"corrupt ELF: {exc}")
        return
    if elf.is_lto_only:
        reason = "GCC LTO object: GIMPLE bytecode only, no machine code to analyse (scan the linked output)"
        sink.skip(display, blob.member, reason, "not-analysable")
        return
    try:
        detection = detect(elf, options.prefilter)
    except InputError as exc:
        sink.error(display, blob.member, f"corrupt ELF: {exc}")
        return
    sink.objects += 1
    sink.functions += len(detection.functions)
    sink.unknown += detection.unknown_functions
    calls = object_calls(elf, detection.functions)
    sink.graph.add(binary_location(mapper.binary(display), blob.member), calls)
    units = set(calls.ocaml_units)
    sink.ocaml += sum(is_ocaml_symbol(f.name, units) for f in detection.functions)

    def hint(symbol: str) -> str | None:
        return "ocaml" if is_ocaml_symbol(symbol, units) else None

    if not detection.hits and not options.require_no_red_zone_flag:
        return

    def report(message: str) -> None:
        sink.error(display, blob.member, message)

    debug = Debug(blob.data, report)
    sink.findings.extend(findings_for(blob.path, blob.member, detection, debug, mapper, options, hint))
    if options.require_no_red_zone_flag:
        sink.findings.extend(unit_findings(blob.path, blob.member, debug, mapper))


def _result(inputs: int, sink: _Collector, options: ScanOptions) -> ScanResult:
    findings = sorted(
        sink.findings, key=lambda f: (f.path, f.member or "", f.section, f.section_offset, f.rule)
    )
    counts: dict[str, int] = {level: 0 for level in LEVELS}
    for finding in findings:
        counts[finding.level] += 1
    kinds = [s.kind for s in sink.skipped]
    summary = Summary(
        inputs=inputs,
        objects=sink.objects,
        functions=sink.functions,
        functions_unknown=sink.unknown,
        ocaml_functions=sink.ocaml,
        findings=counts,
        skipped=len(sink.skipped),
        not_analysable=kinds.count("not-analysable"),
        not_applicable=kinds.count("not-applicable"),
        errors=len(sink.errors),
    )
    return ScanResult(
        tuple(findings),
        tuple(sink.errors),
        tuple(sink.skipped),
        summary,
        platform=options.platform,
        source_root=options.source_root,
    )
