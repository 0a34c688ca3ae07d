"""Markdown job summary: golden output, escaping of untrusted names, stack diagrams and the size limit."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from golden.sample_results import check_golden, clean_result, sample_result

from redzone_check.model import Instruction, ScanResult
from redzone_check.reports import ReportContext
from redzone_check.reports.markdown import DEFAULT_MAX_BYTES, render, stack_diagram

CTX = ReportContext("0.1.0")


def test_golden_markdown() -> None:
    check_golden("report.md", render(sample_result(), CTX))


def test_golden_markdown_without_findings() -> None:
    check_golden("clean.md", render(clean_result(), CTX))


def table_rows(text: str) -> list[list[str]]:
    """Cells of the findings table, split on the pipes that GFM treats as separators."""
    rows = [line for line in text.splitlines() if line.startswith("| 🔴") or line.startswith("| 🟠")]
    return [re.split(r"(?<!\\)\|", row)[1:-1] for row in rows]


def test_headline_counts_active_suppressed_and_errors() -> None:
    head = render(sample_result(), CTX).split("\n\n")[:3]
    assert head[0] == "## redzone-check: 3 findings"
    assert (
        head[1]
        == "🔴 2 errors · 🟠 1 warning · 🔵 0 notes · 1 suppressed · 1 input error · platform bare-metal"
    )
    assert head[2].startswith("42 functions analysed in 6 objects from 5 inputs (1 with unknown stack state)")


@pytest.mark.parametrize(
    "name",
    [
        "a|b",
        "`x`",
        "<script>alert(1)</script>",
        "*bold* _it_",
        "[click](https://evil)",
        "two\nlines",
        "&amp;",
    ],
)
def test_untrusted_names_cannot_break_the_table_or_inject_markup(name: str) -> None:
    base = sample_result()
    finding = replace(base.findings[1], symbol=name, function=name, message=f"`{name}` keeps data")
    text = render(replace(base, findings=(finding,)), CTX)
    (row,) = table_rows(text)
    assert len(row) == 6  # the name's pipes are escaped, so the row keeps its six cells
    prose = text.split("```")[0]  # outside code blocks every markup character must be escaped
    for raw in ("<script", "[click", "*bold", "_it", "`x", "&amp;"):
        assert not re.search(r"(?<!\\)" + re.escape(raw), prose)
    assert "two\nlines" not in text


def test_code_blocks_cannot_be_closed_by_instruction_text() -> None:
    base = sample_result()
    ins = Instruction(0, 0, "mov ```, -8(%rsp)", "write", -8, 8)
    finding = replace(base.findings[1], instructions=(ins,))
    text = render(replace(base, findings=(finding,)), CTX)
    assert "````text\n" in text and "mov ```, -8(%rsp)" in text


def test_stack_diagram_marks_bytes_touched_and_the_red_zone_end() -> None:
    diagram = stack_diagram(
        (
            Instruction(0x4, 0x4, "mov %rdi,-0x28(%rsp)", "write", -0x28, 8),
            Instruction(0x9, 0x9, "lock orl $0,-0x40(%rsp)", "write", -0x40, 4, benign=True),
        )
    ).splitlines()
    assert " %rsp-0x28 │▓▓▓▓▓▓▓▓│ write 8 @+0x4" in diagram
    assert " %rsp-0x40 │▓▓▓▓····│ write 4 @+0x9" in diagram
    assert diagram[-2] == " %rsp-0x80 └────────┘ ◀ end of the 128-byte red zone"


def test_stack_diagram_shows_accesses_beyond_the_red_zone_below_its_end() -> None:
    diagram = stack_diagram((Instruction(0, 0, "mov %rax,-0x90(%rsp)", "write", -0x90, 8),)).splitlines()
    edge = diagram.index(" %rsp-0x80 ├────────┤ ◀ end of the 128-byte red zone")
    assert diagram[edge + 2] == " %rsp-0x90 │▓▓▓▓▓▓▓▓│ write 8 @+0x0 (beyond the red zone)"


def test_suppressed_findings_are_listed_with_reasons_not_in_the_table() -> None:
    text = render(sample_result(), CTX)
    assert [row[2].strip() for row in table_rows(text)] == [
        "leaf",
        r"fast\_copy\|\<b\>\*x\*\</b\>",
        r"util\_init",
    ]
    section = text.split("### Suppressed (1)")[1]
    assert "| RZ001 | sync::fence() | obj/sync.o | fences are harmless here |" in section


def test_reached_from_and_build_location_are_shown() -> None:
    text = render(sample_result(), CTX)
    assert "- Reached from ocaml external Stubs.leaf at lib/stubs.ml:3 via Main.run\n" in text
    assert "- Flags set in stubs/dune:4 (dune): (foreign\\_stubs (language c) (names leaf))\n" in text


def many(count: int) -> ScanResult:
    base = sample_result()
    findings = tuple(
        replace(base.findings[0], function=f"f{i}", symbol=f"f{i}", message=f"`f{i}` keeps data")
        for i in range(count)
    )
    return replace(base, findings=findings, errors=(), skipped=())


def test_large_reports_are_truncated_with_a_count_of_what_was_left_out() -> None:
    text = render(many(400), ReportContext("0.1.0", max_bytes=60_000))
    assert len(text.encode()) <= 60_000
    shown_rows = len(table_rows(text))
    shown_details = len(re.findall(r"^### \d+\. ", text, re.M))
    match = re.search(r"Left out to stay under GitHub's job summary size limit: (.*)\.\*\*", text)
    assert match, text[-500:]
    left = dict((what, int(n)) for n, what in (part.split(" ", 1) for part in match.group(1).split(", ")))
    assert shown_rows + left.get("table rows", 0) == 400
    assert shown_details + left["finding details"] == 400
    assert shown_details < shown_rows


def test_default_limit_keeps_the_summary_under_one_mebibyte() -> None:
    text = render(many(1500), CTX)
    assert DEFAULT_MAX_BYTES <= 1_000_000
    assert len(text.encode()) <= DEFAULT_MAX_BYTES
    assert "Left out" in text


@pytest.mark.slow
def test_real_scan_summary_has_table_disassembly_and_diagram(tmp_path: Path, compile_c: Any) -> None:
    from conftest import run_cli

    compile_c(
        "int leaf(int *p) { volatile long a[4]; a[0] = p[0]; a[3] = p[1]; return a[0] + a[3]; }\n",
        name="leaf",
        flags=("-O2", "-g"),
        directory=tmp_path,
    )
    status, out, err = run_cli(["--no-cache", "--format", "markdown", "leaf.o"], cwd=tmp_path)
    assert status == 1, err
    assert out.startswith("## redzone-check: 1 finding\n")
    (row,) = table_rows(out)
    assert [c.strip() for c in row[2:5]] == ["leaf", "leaf.c:1", "leaf.o"]
    assert "missing -mno-red-zone" in row[5]
    assert re.search(r"^  \+0x\w+ +mov\w* .*-0x\w+\(%rsp\).*◀ write 8 bytes at %rsp-0x", out, re.M)
    assert re.search(r"^ %rsp-0x\w+ │▓▓▓▓▓▓▓▓│ write 8 @\+0x", out, re.M)
