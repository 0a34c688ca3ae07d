"""Suppressions: excludes, the allowlist, baselines across rebuilds, and the exit status."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from conftest import scan_json
from golden.sample_results import sample_result

from redzone_check.config import AllowEntry, Settings
from redzone_check.errors import FatalError
from redzone_check.model import ScanResult
from redzone_check.options import ScanOptions
from redzone_check.suppress import apply, exit_status, path_matches, write_baseline


def settings(**values: Any) -> Settings:
    scan = ScanOptions(excludes=values.pop("excludes", ()))
    return Settings(scan=scan, **values)


def active_names(result: ScanResult) -> list[str]:
    return [f.function for f in result.active]


def unsuppressed() -> ScanResult:
    base = sample_result()
    return replace(base, findings=tuple(replace(f, suppressed=None) for f in base.findings), errors=())


@pytest.mark.parametrize(
    ("pattern", "path", "expected"),
    [
        ("vendor", "vendor/libfast.a", True),
        ("vendor/", "vendor/x/y.o", True),
        ("vendor/*", "vendor/x/y.o", True),
        ("*.a", "vendor/libfast.a", True),
        ("./obj/*.o", "obj/util.o", True),
        ("vend", "vendor/libfast.a", False),
        ("src", "lib/src.o", False),
    ],
)
def test_path_globs(pattern: str, path: str, expected: bool) -> None:
    assert path_matches(pattern, path) is expected


def test_allowlist_matches_raw_alias_or_demangled_names_and_keeps_the_reason() -> None:
    for glob in ("leaf", "leaf_al*", "le?f"):
        result = apply(unsuppressed(), settings(allow=(AllowEntry(glob, "audited"),)))
        assert active_names(result) == ["fast_copy|<b>*x*</b>", "sync::fence()", "util_init"]
        assert result.findings[0].suppressed == "audited"
    demangled = apply(unsuppressed(), settings(allow=(AllowEntry("sync::*", "fence"),)))
    assert demangled.findings[2].suppressed == "fence"


def test_allowlist_entry_with_a_path_only_applies_there() -> None:
    elsewhere = apply(unsuppressed(), settings(allow=(AllowEntry("leaf", "r", path="runtime/*"),)))
    assert elsewhere.findings[0].suppressed is None
    here = apply(unsuppressed(), settings(allow=(AllowEntry("leaf", "r", path="stubs"),)))
    assert here.findings[0].suppressed == "r"  # matches the source file stubs/leaf.c


def test_summary_counts_active_findings_and_suppressed_ones() -> None:
    result = apply(unsuppressed(), settings(allow=(AllowEntry("fast_copy*", "vendored"),)))
    assert result.summary.findings == {"error": 1, "warning": 1, "note": 1}
    assert result.summary.suppressed == 1


def test_excluded_paths_disappear() -> None:
    result = apply(unsuppressed(), settings(excludes=("vendor/*", "src")))
    assert [f.function for f in result.findings] == ["leaf", "sync::fence()"]


def test_baseline_suppresses_old_findings_after_addresses_shift(tmp_path: Path) -> None:
    before = unsuppressed()
    baseline = tmp_path / "baseline.json"
    write_baseline(str(baseline), replace(before, findings=before.findings[:2]))
    shifted = tuple(
        replace(f, section_offset=f.section_offset + 0x40, function_offset=1) for f in before.findings
    )
    result = apply(replace(before, findings=shifted), settings(baseline=str(baseline)))
    assert [f.suppressed for f in result.findings] == [f"baseline: {baseline}"] * 2 + [None, None]


def test_baseline_file_is_sorted_deterministic_and_readable(tmp_path: Path) -> None:
    result = unsuppressed()
    out: list[str] = []
    for number, order in enumerate((result.findings, tuple(reversed(result.findings)))):
        path = tmp_path / f"b{number}.json"
        write_baseline(str(path), replace(result, findings=order))
        out.append(path.read_text())
    assert out[0] == out[1]
    entries = json.loads(out[0])["findings"]
    assert [e["location"] for e in entries] == sorted(e["location"] for e in entries)
    assert set(entries[0]) == {"fingerprint", "rule", "function", "location"}
    assert {e["fingerprint"] for e in entries} == {f.fingerprint for f in result.findings}


def test_allowlisted_findings_are_not_written_to_the_baseline(tmp_path: Path) -> None:
    result = apply(unsuppressed(), settings(allow=(AllowEntry("leaf", "audited"),)))
    write_baseline(str(tmp_path / "b.json"), result)
    functions = [e["function"] for e in json.loads((tmp_path / "b.json").read_text())["findings"]]
    assert "leaf" not in functions and len(functions) == 3


@pytest.mark.parametrize("content", ["not json", '{"findings": [{"rule": "RZ001"}]}', "[]"])
def test_bad_baseline_is_a_fatal_error(tmp_path: Path, content: str) -> None:
    path = tmp_path / "b.json"
    path.write_text(content)
    with pytest.raises(FatalError, match="baseline"):
        apply(unsuppressed(), settings(baseline=str(path)))
    with pytest.raises(FatalError, match="cannot read baseline"):
        apply(unsuppressed(), settings(baseline=str(tmp_path / "missing.json")))


def test_exit_status() -> None:
    result = unsuppressed()  # errors, a warning and a note
    assert exit_status(result, "error") == 1
    assert exit_status(result, "never") == 0
    notes_only = replace(result, findings=(result.findings[2],))
    assert (
        exit_status(notes_only, "error"),
        exit_status(notes_only, "warning"),
        exit_status(notes_only, "note"),
    ) == (
        0,
        0,
        1,
    )
    all_suppressed = replace(result, findings=tuple(replace(f, suppressed="x") for f in result.findings))
    assert exit_status(all_suppressed, "note") == 0
    assert exit_status(sample_result(), "never") == 2  # an input error wins over everything


OLD = "int old_leaf(int *p) { volatile int a[4]; a[0] = p[0]; a[3] = p[1]; return a[0] + a[3]; }\n"
PADDING = "int pad(int x) { return x * 3 + 1; }\nint pad2(int *p) { return p[0] + p[1] + p[2]; }\n"
NEW = "int new_leaf(int *p) { volatile long b[2]; b[1] = p[2]; return (int)b[1]; }\n"


@pytest.mark.slow
def test_baseline_survives_a_rebuild_that_shifts_addresses(tmp_path: Path, compile_c: Any) -> None:
    compile_c(OLD, name="unit", flags=("-O2", "-g"), directory=tmp_path)
    status, before = scan_json(["--write-baseline", "baseline.json", "unit.o"], cwd=tmp_path)
    assert status == 1 and [f["function"] for f in before["findings"]] == ["old_leaf"]

    compile_c(PADDING + OLD + NEW, name="unit", flags=("-O2", "-g"), directory=tmp_path)
    status, after = scan_json(["--baseline", "baseline.json", "unit.o"], cwd=tmp_path)
    found = {f["function"]: f for f in after["findings"]}
    assert set(found) == {"old_leaf", "new_leaf"}
    assert found["old_leaf"]["section_offset"] != before["findings"][0]["section_offset"]
    assert found["old_leaf"]["suppressed"] == "baseline: baseline.json"
    assert found["new_leaf"]["suppressed"] is None
    assert after["summary"]["suppressed"] == 1 and after["summary"]["findings"]["error"] == 1
    assert status == 1  # the new function still fails the run

    compile_c(PADDING + OLD, name="unit", flags=("-O2", "-g"), directory=tmp_path)
    status, only_old = scan_json(["--baseline", "baseline.json", "unit.o"], cwd=tmp_path)
    assert status == 0 and only_old["summary"]["suppressed"] == 1
