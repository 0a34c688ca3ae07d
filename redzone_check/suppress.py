"""Policy applied after the scan: excludes, the allowlist, the baseline, and the exit status.

Suppressed findings stay in the result with their reason, so every report can show them; only
excluded paths disappear, as if they had not been scanned.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import replace
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from redzone_check.config import AllowEntry, Settings
from redzone_check.errors import FatalError
from redzone_check.model import LEVEL_RANK, LEVELS, Finding, ScanResult, stable_function_name

BASELINE_VERSION = 1
BASELINE_PREFIX = "baseline: "


def path_matches(pattern: str, path: str) -> bool:
    """A glob on a repository-relative path; a pattern naming a directory matches everything below it."""
    pattern = pattern.rstrip("/")
    if pattern.startswith("./"):
        pattern = pattern[2:]
    parts = path.split("/")
    candidates = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    return any(fnmatchcase(c, pattern) or fnmatchcase(c, pattern + "/**") for c in candidates)


def _paths(finding: Finding) -> list[str]:
    paths = [finding.path, finding.location]
    if finding.member:
        paths.append(finding.member)
    if finding.source is not None:
        paths.append(finding.source.file)
    return paths


def _names(finding: Finding) -> list[str]:
    return [
        finding.symbol,
        *finding.aliases,
        finding.function,
        stable_function_name(finding.function, finding.language),
    ]


def excluded(finding: Finding, globs: Iterable[str]) -> bool:
    return any(path_matches(g, p) for g in globs for p in _paths(finding))


def allowed_by(finding: Finding, allow: Iterable[AllowEntry]) -> AllowEntry | None:
    for entry in allow:
        if not any(fnmatchcase(name, entry.function) for name in _names(finding)):
            continue
        if entry.path is None or any(path_matches(entry.path, p) for p in _paths(finding)):
            return entry
    return None


def read_baseline(path: str) -> frozenset[str]:
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise FatalError(f"cannot read baseline {path}: {exc.strerror}") from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise FatalError(f"baseline {path} is not valid JSON: {exc}") from exc
    entries = doc.get("findings") if isinstance(doc, dict) else None
    if not isinstance(entries, list) or not all(
        isinstance(e, dict) and isinstance(e.get("fingerprint"), str) for e in entries
    ):
        raise FatalError(f'baseline {path}: expected {{"findings": [{{"fingerprint": ...}}, ...]}}')
    return frozenset(e["fingerprint"] for e in entries)


def apply(result: ScanResult, settings: Settings) -> ScanResult:
    baseline = read_baseline(settings.baseline) if settings.baseline else frozenset()
    findings: list[Finding] = []
    for finding in result.findings:
        if excluded(finding, settings.scan.excludes):
            continue
        if finding.suppressed is None:
            entry = allowed_by(finding, settings.allow)
            if entry is not None:
                finding = replace(finding, suppressed=entry.reason)
            elif finding.fingerprint in baseline:
                finding = replace(finding, suppressed=f"{BASELINE_PREFIX}{settings.baseline}")
        findings.append(finding)
    counts: dict[str, int] = {
        lv: sum(f.level == lv and f.suppressed is None for f in findings) for lv in LEVELS
    }
    suppressed = sum(f.suppressed is not None for f in findings)
    summary = replace(result.summary, findings=counts, suppressed=suppressed)
    return replace(result, findings=tuple(findings), summary=summary)


def _baseline_entry(finding: Finding) -> dict[str, Any]:
    where = f"{finding.source.file}" if finding.source else finding.location
    return {
        "fingerprint": finding.fingerprint,
        "rule": finding.rule,
        "function": finding.function,
        "location": where,
    }


def write_baseline(path: str, result: ScanResult) -> None:
    """Record every finding except allowlisted ones (the allowlist already covers those)."""
    entries = {
        f.fingerprint: _baseline_entry(f)
        for f in result.findings
        if f.suppressed is None or f.suppressed.startswith(BASELINE_PREFIX)
    }
    ordered = sorted(
        entries.values(), key=lambda e: (e["location"], e["function"], e["rule"], e["fingerprint"])
    )
    doc = {"version": BASELINE_VERSION, "tool": "redzone-check", "findings": ordered}
    try:
        Path(path).write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    except OSError as exc:
        raise FatalError(f"cannot write baseline {path}: {exc.strerror}") from exc


def exit_status(result: ScanResult, fail_on: str) -> int:
    if result.errors:
        return 2
    if fail_on == "never":
        return 0
    threshold = LEVEL_RANK[fail_on]
    return 1 if any(LEVEL_RANK[f.level] >= threshold for f in result.active) else 0
