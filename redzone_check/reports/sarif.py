"""`--format sarif`: SARIF 2.1.0 for GitHub code scanning and other SARIF viewers, built as data."""

from __future__ import annotations

import json
import os
import re
from typing import Any
from urllib.parse import quote

from redzone_check.model import Finding, InputProblem, Instruction, ScanResult, Skipped
from redzone_check.reports import ReportContext
from redzone_check.reports.escape import plain_message, printable
from redzone_check.rules import HOMEPAGE, RULE_IDS, RULES, Rule

SCHEMA_URI = "https://json.schemastore.org/sarif-2.1.0.json"
SRCROOT = "%SRCROOT%"
FINGERPRINT_KEY = "redzoneCheck/v1"
_SEMVER = re.compile(r"^\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$")

Json = dict[str, Any]


def render(result: ScanResult, ctx: ReportContext) -> str:
    return json.dumps(sarif_log(result, ctx.version), indent=2, ensure_ascii=False) + "\n"


def sarif_log(result: ScanResult, version: str) -> Json:
    root = os.path.abspath(result.source_root)
    run: Json = {
        "tool": {"driver": _driver(version)},
        "invocations": [_invocation(result)],
        "originalUriBaseIds": {SRCROOT: {"uri": _file_uri(root.rstrip("/") + "/")}},
        "results": [_result(f) for f in result.findings],
        "columnKind": "unicodeCodePoints",
        "properties": {"platform": result.platform},
    }
    return {"$schema": SCHEMA_URI, "version": "2.1.0", "runs": [run]}


def _driver(version: str) -> Json:
    driver: Json = {"name": "redzone-check", "version": version, "informationUri": HOMEPAGE}
    if _SEMVER.match(version):
        driver["semanticVersion"] = version
    driver["rules"] = [_rule(RULES[rule_id]) for rule_id in RULE_IDS]
    return driver


def _rule(rule: Rule) -> Json:
    return {
        "id": rule.id,
        "name": rule.name,
        "shortDescription": {"text": rule.short},
        "fullDescription": {"text": rule.full},
        "help": {"text": rule.help_text, "markdown": rule.help_markdown},
        "helpUri": rule.help_uri,
        "defaultConfiguration": {"level": rule.level},
        "properties": {"tags": ["correctness", "x86-64", "abi"], "precision": "high"},
    }


def _sentence(text: str) -> str:
    text = text.rstrip()
    return text if text.endswith((".", "!", "?")) else text + "."


def _file_uri(path: str) -> str:
    return "file://" + quote(path.encode("utf-8", "surrogateescape"), safe="/")


def _artifact(path: str) -> Json:
    """A repository-relative path under %SRCROOT%, or an absolute file URI outside the repository."""
    if os.path.isabs(path):
        return {"uri": _file_uri(path)}
    return {"uri": quote(path.encode("utf-8", "surrogateescape"), safe="/"), "uriBaseId": SRCROOT}


def _address(finding: Finding, section_offset: int) -> Json:
    where = f"{finding.section}+0x{section_offset:x}"
    return {
        "kind": "instruction",
        "name": printable(where),
        "fullyQualifiedName": printable(f"{finding.location}:{where}"),
        "relativeAddress": section_offset,
    }


def _binary(finding: Finding, section_offset: int) -> Json:
    return {
        "artifactLocation": _artifact(finding.path),
        "region": {"startLine": 1},
        "address": _address(finding, section_offset),
    }


def _primary(finding: Finding) -> Json:
    if finding.source is not None:
        physical: Json = {
            "artifactLocation": _artifact(finding.source.file),
            "region": {"startLine": max(1, finding.source.line)},
        }
    else:
        physical = _binary(finding, finding.section_offset)
    function = printable(finding.function)
    logical = {
        "name": function,
        "fullyQualifiedName": function,
        "decoratedName": printable(finding.symbol),
        "kind": "function",
    }
    return {"physicalLocation": physical, "logicalLocations": [logical]}


def _instruction_text(ins: Instruction) -> str:
    what = "address of" if ins.access == "address" else f"{ins.access} of {ins.size} bytes at"
    sign = "-" if ins.rsp_offset < 0 else "+"
    return printable(f"{what} %rsp{sign}0x{abs(ins.rsp_offset):x}: {ins.text}")


def _related(finding: Finding) -> list[Json]:
    related: list[Json] = []

    def add(physical: Json, text: str) -> None:
        related.append({"id": len(related) + 1, "physicalLocation": physical, "message": {"text": text}})

    for ins in finding.instructions[1:]:
        add(_binary(finding, ins.section_offset), _sentence(f"Also {_instruction_text(ins)}"))
    add(
        _binary(finding, finding.section_offset),
        _sentence(printable(f"Object file {finding.location}, section {finding.section}")),
    )
    for reach in finding.reached_from:
        if reach.file is None:
            continue
        via = f" via {' -> '.join(reach.via)}" if reach.via else ""
        add(
            {"artifactLocation": _artifact(reach.file), "region": {"startLine": max(1, reach.line or 1)}},
            _sentence(printable(f"Reached from {reach.language} {reach.kind} {reach.function}{via}")),
        )
    if finding.build_location is not None:
        loc = finding.build_location
        add(
            {"artifactLocation": _artifact(loc.file), "region": {"startLine": max(1, loc.line)}},
            _sentence(printable(f"Build flags set here ({loc.kind}): {loc.text}")),
        )
    return related


def _message(finding: Finding) -> str:
    sentences = [plain_message(finding.function, finding.message)]
    if finding.instructions:
        sentences.append(f"First: {_instruction_text(finding.instructions[0])}")
    if finding.build is not None and finding.build.missing:
        sentences.append(
            f"Built by {finding.build.compiler or 'a compiler'} without {' '.join(finding.build.missing)}"
        )
    return printable(" ".join(_sentence(s) for s in sentences))


def _result(finding: Finding) -> Json:
    result: Json = {
        "ruleId": finding.rule,
        "ruleIndex": RULE_IDS.index(finding.rule),
        "level": finding.level,
        "message": {"text": _message(finding)},
        "locations": [_primary(finding)],
        "partialFingerprints": {FINGERPRINT_KEY: finding.fingerprint},
    }
    related = _related(finding)
    if related:
        result["relatedLocations"] = related
    if finding.suppressed is not None:
        result["suppressions"] = [
            {"kind": "external", "status": "accepted", "justification": printable(finding.suppressed)}
        ]
    return result


def _notification(level: str, path: str, member: str | None, text: str) -> Json:
    where = f"{path}({member})" if member else path
    return {
        "level": level,
        "message": {"text": _sentence(printable(f"{where}: {text}"))},
        "locations": [
            {"physicalLocation": {"artifactLocation": _artifact(path), "region": {"startLine": 1}}}
        ],
    }


def _invocation(result: ScanResult) -> Json:
    problems: list[InputProblem] = list(result.errors)
    unanalysable: list[Skipped] = [s for s in result.skipped if s.kind == "not-analysable"]
    notifications = [_notification("error", p.path, p.member, p.message) for p in problems]
    notifications += [_notification("warning", s.path, s.member, s.reason) for s in unanalysable]
    invocation: Json = {"executionSuccessful": not problems}
    if notifications:
        invocation["toolExecutionNotifications"] = notifications
    return invocation
