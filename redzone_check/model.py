"""Immutable values that flow through the pipeline. No I/O here.

These types are the contract between the engine, the reporters and the hooks:
reporters and hooks only read them, and `to_json` defines the JSON schema
(`redzone_check/schema/findings.schema.json`).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field, replace
from typing import Any, Literal

SCHEMA_VERSION = 1

Level = Literal["error", "warning", "note"]
Access = Literal["read", "write", "address"]
LEVELS: tuple[Level, ...] = ("error", "warning", "note")
LEVEL_RANK: dict[str, int] = {"note": 1, "warning": 2, "error": 3}

RED_ZONE_BYTES = 128


@dataclass(frozen=True)
class Instruction:
    """One instruction that touches memory below the current %rsp."""

    function_offset: int
    section_offset: int
    text: str
    access: Access
    rsp_offset: int  # of the lowest byte accessed, relative to the current %rsp
    size: int
    benign: bool = False  # e.g. `lock orl $0,-0x40(%rsp)`, a fence that changes nothing

    def to_json(self) -> dict[str, Any]:
        return {
            "function_offset": self.function_offset,
            "section_offset": self.section_offset,
            "text": self.text,
            "access": self.access,
            "rsp_offset": self.rsp_offset,
            "size": self.size,
            "benign": self.benign,
        }


@dataclass(frozen=True)
class Source:
    """A repository-relative (or, outside the repository, absolute) source position."""

    file: str
    line: int

    def to_json(self) -> dict[str, Any]:
        return {"file": self.file, "line": self.line}


@dataclass(frozen=True)
class BuildInfo:
    """What the compile unit recorded about how it was built."""

    producer: str | None
    compiler: str | None  # e.g. "GCC 12.2.0", "clang 14.0.6", "GNU AS 2.40"
    flags: tuple[str, ...]
    missing: tuple[str, ...]  # flags that should be there, e.g. ("-mno-red-zone",)
    recorded: bool = True  # False when the flags were not recorded at all
    note: str | None = None  # how to record them, or what else is known

    def to_json(self) -> dict[str, Any]:
        return {
            "producer": self.producer,
            "compiler": self.compiler,
            "flags": list(self.flags),
            "missing": list(self.missing),
            "recorded": self.recorded,
            "note": self.note,
        }


@dataclass(frozen=True)
class Reach:
    """Code that reaches a red-zone function (OCaml callers, `external` declarations)."""

    function: str
    language: str
    file: str | None
    line: int | None
    via: tuple[str, ...]
    kind: str = "caller"  # "caller" or "external"

    def to_json(self) -> dict[str, Any]:
        return {
            "function": self.function,
            "language": self.language,
            "file": self.file,
            "line": self.line,
            "via": list(self.via),
            "kind": self.kind,
        }


@dataclass(frozen=True)
class BuildLocation:
    """The build file line that set the flags of a compile unit (dune stanza, Makefile...)."""

    file: str
    line: int
    kind: str  # "dune", "make", "cmake", "meson", "compile_commands"
    text: str

    def to_json(self) -> dict[str, Any]:
        return {"file": self.file, "line": self.line, "kind": self.kind, "text": self.text}

    def advice(self, flag: str = "-mno-red-zone") -> str:
        """`add -mno-red-zone to (flags …) in src/dune:12`."""
        addition, text, where = self.advice_parts(flag)
        return f"add {addition} to {text} in {where}"

    def advice_parts(self, flag: str = "-mno-red-zone") -> tuple[str, str, str]:
        """What to add, to which text, where: each report formats them its own way."""
        # A Makefile line may end in a continuation backslash; it is not part of the advice.
        text = " ".join(self.text.split()).rstrip("\\").rstrip()
        where = f"{self.file}:{self.line}"
        if self.kind == "dune" and not text.startswith(("(flags", "(c_flags")):
            return f"(flags :standard {flag})", text, where  # a stanza without flags of its own
        return flag, text, where


@dataclass(frozen=True)
class Finding:
    rule: str
    level: Level
    message: str
    path: str  # repository-relative when under --source-root
    member: str | None
    section: str
    section_offset: int
    function_offset: int
    symbol: str
    aliases: tuple[str, ...]
    function: str  # demangled
    language: str
    instructions: tuple[Instruction, ...]
    source: Source | None
    build: BuildInfo | None
    reached_from: tuple[Reach, ...] = ()
    build_location: BuildLocation | None = None
    suppressed: str | None = None  # reason, when an allowlist entry or baseline matched
    fingerprint: str = ""

    @property
    def location(self) -> str:
        """`path(member)` or `path`: the binary the finding lives in."""
        return binary_location(self.path, self.member)

    def with_fingerprint(self) -> Finding:
        return replace(self, fingerprint=fingerprint(self.rule, self, self.function))

    def to_json(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "level": self.level,
            "message": self.message,
            "fingerprint": self.fingerprint,
            "path": self.path,
            "member": self.member,
            "section": self.section,
            "section_offset": self.section_offset,
            "function_offset": self.function_offset,
            "symbol": self.symbol,
            "aliases": list(self.aliases),
            "function": self.function,
            "language": self.language,
            "instructions": [i.to_json() for i in self.instructions],
            "source": self.source.to_json() if self.source else None,
            "build": self.build.to_json() if self.build else None,
            "reached_from": [r.to_json() for r in self.reached_from],
            "build_location": self.build_location.to_json() if self.build_location else None,
            "suppressed": self.suppressed,
        }


@dataclass(frozen=True)
class InputProblem:
    """A file or member that could not be read: an error, exit status 2."""

    path: str
    member: str | None
    message: str

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "member": self.member, "message": self.message}


SkipKind = Literal["not-elf", "empty", "not-applicable", "not-analysable", "excluded"]


@dataclass(frozen=True)
class Skipped:
    path: str
    member: str | None
    reason: str
    kind: SkipKind

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "member": self.member, "reason": self.reason, "kind": self.kind}


@dataclass(frozen=True)
class Summary:
    inputs: int = 0
    objects: int = 0
    functions: int = 0
    functions_unknown: int = 0  # functions with at least one access whose verdict is unknown
    ocaml_functions: int = 0
    findings: dict[str, int] = field(default_factory=lambda: {lv: 0 for lv in LEVELS})
    suppressed: int = 0
    skipped: int = 0
    not_analysable: int = 0
    not_applicable: int = 0
    errors: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "inputs": self.inputs,
            "objects": self.objects,
            "functions": self.functions,
            "functions_unknown": self.functions_unknown,
            "ocaml_functions": self.ocaml_functions,
            "findings": dict(self.findings),
            "suppressed": self.suppressed,
            "skipped": self.skipped,
            "not_analysable": self.not_analysable,
            "not_applicable": self.not_applicable,
            "errors": self.errors,
        }


@dataclass(frozen=True)
class ScanResult:
    findings: tuple[Finding, ...]
    errors: tuple[InputProblem, ...]
    skipped: tuple[Skipped, ...]
    summary: Summary
    platform: str = "bare-metal"
    source_root: str = "."

    @property
    def active(self) -> tuple[Finding, ...]:
        """Findings not suppressed by an allowlist entry or a baseline."""
        return tuple(f for f in self.findings if f.suppressed is None)

    def to_json(self, version: str) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "tool": {"name": "redzone-check", "version": version},
            "platform": self.platform,
            "findings": [f.to_json() for f in self.findings],
            "errors": [e.to_json() for e in self.errors],
            "skipped": [s.to_json() for s in self.skipped],
            "summary": self.summary.to_json(),
        }


def binary_location(path: str, member: str | None) -> str:
    return f"{path}({member})" if member else path


# OCaml stamps (`_123`) and GCC clone suffixes change between builds, so they
# never enter a fingerprint.
_CLONE_SUFFIX = re.compile(r"(\.(isra|constprop|part|cold|lto_priv|localalias|clone)(\.\d+)?)+$")
_OCAML_STAMP = re.compile(r"_\d+$")


def stable_function_name(name: str, language: str = "c") -> str:
    name = _CLONE_SUFFIX.sub("", name)
    # A C name may legitimately end in `_2`; only OCaml appends stamps.
    return _OCAML_STAMP.sub("", name) if language == "ocaml" else name


def fingerprint(rule: str, finding: Finding, function: str) -> str:
    """sha256(rule, repository-relative source path or binary location, stable name)."""
    where = finding.source.file if finding.source else finding.location
    data = "\0".join((rule, where, stable_function_name(function, finding.language)))
    return hashlib.sha256(data.encode("utf-8", "surrogateescape")).hexdigest()
