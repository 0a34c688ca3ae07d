"""The CLI's `--json` document -> the model's ScanResult, so the Action's reporters read the same values."""

from __future__ import annotations

from typing import Any

from redzone_check.model import (
    LEVELS,
    BuildInfo,
    BuildLocation,
    Finding,
    InputProblem,
    Instruction,
    Reach,
    ScanResult,
    Skipped,
    Source,
    Summary,
)


def _instruction(doc: dict[str, Any]) -> Instruction:
    return Instruction(
        function_offset=doc["function_offset"],
        section_offset=doc["section_offset"],
        text=doc["text"],
        access=doc["access"],
        rsp_offset=doc["rsp_offset"],
        size=doc["size"],
        benign=bool(doc.get("benign", False)),
    )


def _build(doc: dict[str, Any] | None) -> BuildInfo | None:
    if doc is None:
        return None
    return BuildInfo(
        producer=doc.get("producer"),
        compiler=doc.get("compiler"),
        flags=tuple(doc.get("flags", ())),
        missing=tuple(doc.get("missing", ())),
        recorded=bool(doc.get("recorded", True)),
        note=doc.get("note"),
    )


def _reach(doc: dict[str, Any]) -> Reach:
    return Reach(
        function=doc["function"],
        language=doc["language"],
        file=doc.get("file"),
        line=doc.get("line"),
        via=tuple(doc.get("via", ())),
        kind=doc.get("kind", "caller"),
    )


def finding(doc: dict[str, Any]) -> Finding:
    source = doc.get("source")
    where = doc.get("build_location")
    return Finding(
        rule=doc["rule"],
        level=doc["level"],
        message=doc["message"],
        path=doc["path"],
        member=doc.get("member"),
        section=doc["section"],
        section_offset=doc["section_offset"],
        function_offset=doc["function_offset"],
        symbol=doc["symbol"],
        aliases=tuple(doc.get("aliases", ())),
        function=doc["function"],
        language=doc["language"],
        instructions=tuple(_instruction(i) for i in doc.get("instructions", ())),
        source=Source(source["file"], source["line"]) if source else None,
        build=_build(doc.get("build")),
        reached_from=tuple(_reach(r) for r in doc.get("reached_from", ())),
        build_location=BuildLocation(where["file"], where["line"], where["kind"], where["text"])
        if where
        else None,
        suppressed=doc.get("suppressed"),
        fingerprint=doc.get("fingerprint", ""),
    )


def _summary(doc: dict[str, Any]) -> Summary:
    counts = doc.get("findings", {})
    return Summary(
        inputs=doc.get("inputs", 0),
        objects=doc.get("objects", 0),
        functions=doc.get("functions", 0),
        functions_unknown=doc.get("functions_unknown", 0),
        ocaml_functions=doc.get("ocaml_functions", 0),
        findings={level: int(counts.get(level, 0)) for level in LEVELS},
        suppressed=doc.get("suppressed", 0),
        skipped=doc.get("skipped", 0),
        not_analysable=doc.get("not_analysable", 0),
        not_applicable=doc.get("not_applicable", 0),
        errors=doc.get("errors", 0),
    )


def load_result(doc: dict[str, Any], source_root: str = ".") -> ScanResult:
    return ScanResult(
        findings=tuple(finding(f) for f in doc.get("findings", ())),
        errors=tuple(InputProblem(e["path"], e.get("member"), e["message"]) for e in doc.get("errors", ())),
        skipped=tuple(
            Skipped(s["path"], s.get("member"), s["reason"], s.get("kind", "not-elf"))
            for s in doc.get("skipped", ())
        ),
        summary=_summary(doc.get("summary", {})),
        platform=doc.get("platform", "bare-metal"),
        source_root=source_root,
    )
