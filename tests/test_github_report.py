"""GitHub workflow commands: golden output, escaping, and command injection through symbol names."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from golden.sample_results import check_golden, clean_result, sample_result

from redzone_check.model import Source
from redzone_check.reports import ReportContext
from redzone_check.reports.github import render

CTX = ReportContext("0.1.0")


def unescape(text: str) -> str:
    for escaped, raw in (("%0D", "\r"), ("%0A", "\n"), ("%3A", ":"), ("%2C", ","), ("%25", "%")):
        text = text.replace(escaped, raw)
    return text


def parse(line: str) -> tuple[str, dict[str, str], str]:
    """Split one line the way the Actions runner does: `::cmd k=v,k=v::data`."""
    match = re.fullmatch(r"::(\w+)(?: ([^:]*))?::(.*)", line)
    assert match, f"not a workflow command: {line!r}"
    props = dict(p.split("=", 1) for p in match.group(2).split(",")) if match.group(2) else {}
    return match.group(1), {k: unescape(v) for k, v in props.items()}, unescape(match.group(3))


def test_golden_github() -> None:
    check_golden("report.github", render(sample_result(), CTX))


def test_each_level_maps_to_its_command_and_suppressed_findings_are_silent() -> None:
    commands = [parse(line) for line in render(sample_result(), CTX).splitlines()]
    kinds = [(kind, props.get("title")) for kind, props, _ in commands]
    assert kinds == [
        ("error", "RZ001 leaf"),
        ("error", "RZ002 fast_copy|<b>*x*</b> (copy.o)"),
        ("warning", "RZ003 util_init"),
        ("error", "redzone-check input error"),
        ("warning", "redzone-check not analysable"),
        ("notice", "redzone-check summary"),
    ]
    notes = render(
        replace(sample_result(), findings=(replace(sample_result().findings[2], suppressed=None),)), CTX
    )
    assert notes.splitlines()[0].startswith("::notice file=obj/sync.o,title=RZ001 sync%3A%3Afence()::")


def test_source_findings_point_at_the_line_and_binary_findings_at_the_file() -> None:
    (_, with_source, message), (_, binary, _) = (
        parse(x) for x in render(sample_result(), CTX).splitlines()[:2]
    )
    assert with_source == {"file": "stubs/leaf.c", "line": "12", "title": "RZ001 leaf"}
    assert "line" not in binary and binary["file"] == "vendor/libfast.a"
    assert message.splitlines()[0] == "leaf keeps data in the red zone (3 instructions, down to %rsp-40)"
    assert "  +0x9  mov -0x28(%rsp),%rax  (read 8 at %rsp-0x28)" in message.splitlines()


@pytest.mark.parametrize(
    "name",
    [
        "evil\n::error file=x.c,line=1::forged",
        "evil\r::warning::forged",
        "evil%0A::error::forged",
        "a::b,c=d:e",
        "evil\u2028::error::forged",
    ],
)
def test_symbol_names_cannot_inject_commands(name: str) -> None:
    base = sample_result()
    finding = replace(base.findings[0], symbol=name, function=name, message=f"`{name}` keeps data")
    unsourced = replace(base.findings[1], symbol=name, function=name, path=f"lib/{name}.a")
    text = render(replace(base, findings=(finding, unsourced), errors=(), skipped=()), CTX)
    lines = text.splitlines()
    assert len(lines) == 3  # two annotations and the summary, nothing forged
    assert not any(
        "forged" in line and not line.startswith(("::error file=stubs", "::error file=lib")) for line in lines
    )
    title = parse(lines[0])[1]["title"]
    assert title.startswith("RZ001 evil") or title == "RZ001 a::b,c=d:e"
    if name == "a::b,c=d:e":
        assert parse(lines[1])[1]["file"] == "lib/a::b,c=d:e.a"  # the property survives a round trip


def test_percent_is_escaped_before_newlines() -> None:
    base = sample_result()
    finding = replace(base.findings[0], message="100% sure\nreally", source=Source("a%b.c", 2))
    line = render(replace(base, findings=(finding,)), CTX).splitlines()[0]
    # The detail's own line breaks become %0A; one inside the engine's message is shown as \x0a.
    assert line.startswith(
        "::error file=a%25b.c,line=2,title=RZ001 leaf::leaf: 100%25 sure\\x0areally%0Aobject: "
    )


def test_summary_says_where_the_full_list_is() -> None:
    last = render(sample_result(), CTX).splitlines()[-1]
    kind, _, message = parse(last)
    assert kind == "notice"
    assert message.startswith("redzone-check: 3 findings (2 errors, 1 warning), 1 suppressed, 1 input error;")
    assert "job summary" in message and "GITHUB_STEP_SUMMARY" in message


def test_clean_scan_emits_only_the_summary() -> None:
    lines = render(clean_result(), CTX).splitlines()
    assert len(lines) == 1 and parse(lines[0])[2].startswith("redzone-check: 0 findings, 0 suppressed")


@pytest.mark.slow
def test_real_scan_annotates_the_source_line(tmp_path: Path, compile_c: Any) -> None:
    from conftest import run_cli

    source = "int pad;\n\nint leaf(int *p)\n{\n  volatile int a[4];\n  a[0] = p[0];\n  return a[0];\n}\n"
    compile_c(source, name="leaf", flags=("-O2", "-g"), directory=tmp_path)
    status, out, err = run_cli(["--no-cache", "--format", "github", "leaf.o"], cwd=tmp_path)
    assert status == 1, err
    kind, props, message = parse(out.splitlines()[0])
    assert (kind, props["file"], props["title"]) == ("error", "leaf.c", "RZ001 leaf")
    assert 3 <= int(props["line"]) <= 7
    assert "without -mno-red-zone" in message
    assert parse(out.splitlines()[-1])[0] == "notice"
