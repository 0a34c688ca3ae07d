"""SARIF 2.1.0: golden output, structure, and Microsoft's multitool (schema, SARIF and GitHub rules)."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from conftest import require_tool, run
from golden.sample_results import check_golden, clean_result, sample_result

from redzone_check.model import Source
from redzone_check.reports import ReportContext
from redzone_check.reports.sarif import FINGERPRINT_KEY, render
from redzone_check.rules import RULE_IDS

REPO = Path(__file__).resolve().parent.parent
CTX = ReportContext("0.1.0")


def sarif(result: Any) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(render(result, CTX))
    return doc


def multitool() -> str:
    found = shutil.which("sarif-multitool")
    local = REPO / ".tools" / "node_modules" / ".bin" / "sarif-multitool"
    if found is None and local.exists():
        found = str(local)
    return found or require_tool("sarif-multitool")


def validate(path: Path, tmp_path: Path) -> list[str]:
    """Errors and warnings reported by `sarif-multitool validate` with the SARIF and GitHub rules."""
    out = tmp_path / f"{path.stem}.validation.sarif"
    # The npm wrapper hands its arguments to a shell: unquoted, `;Gh` would start a second command
    # and the GitHub rules would silently not run.
    run([multitool(), "validate", "--rule-kind", "'Sarif;Gh'", "-o", out, path])
    log = json.loads(out.read_text())
    return [
        f"{r.get('level', 'warning')} {r['ruleId']}: {r['message'].get('arguments')}"
        for r in log["runs"][0].get("results", [])
        if r.get("level", "warning") in ("error", "warning")
    ]


def test_golden_sarif() -> None:
    check_golden("report.sarif", render(sample_result(), CTX))


def test_golden_sarif_without_findings() -> None:
    check_golden("clean.sarif", render(clean_result(), CTX))


def test_multitool_accepts_golden_sarif(tmp_path: Path) -> None:
    problems = validate(REPO / "tests" / "golden" / "report.sarif", tmp_path)
    assert problems == []


def test_multitool_rejects_a_file_that_github_cannot_ingest(tmp_path: Path) -> None:
    doc = sarif(sample_result())
    for rule in doc["runs"][0]["tool"]["driver"]["rules"]:
        del rule["help"]  # GitHub requires help on every rule (GH2012)
    del doc["runs"][0]["results"][0]["locations"][0]["physicalLocation"]["region"]
    bad = tmp_path / "bad.sarif"
    bad.write_text(json.dumps(doc))
    problems = validate(bad, tmp_path)
    assert any(p.startswith("error GH") for p in problems), problems


def test_rules_and_rule_indexes_agree() -> None:
    run_ = sarif(sample_result())["runs"][0]
    rules = run_["tool"]["driver"]["rules"]
    assert [r["id"] for r in rules] == list(RULE_IDS)
    for result in run_["results"]:
        assert rules[result["ruleIndex"]]["id"] == result["ruleId"]
    assert all(r["helpUri"].endswith("#" + r["id"].lower()) for r in rules)


def test_source_location_is_repository_relative_under_srcroot() -> None:
    run_ = sarif(sample_result())["runs"][0]
    physical = run_["results"][0]["locations"][0]["physicalLocation"]
    assert physical["artifactLocation"] == {"uri": "stubs/leaf.c", "uriBaseId": "%SRCROOT%"}
    assert physical["region"] == {"startLine": 12}
    assert run_["originalUriBaseIds"]["%SRCROOT%"]["uri"] == "file:///home/dev/kernel/"


def test_binary_location_has_start_line_and_address() -> None:
    result = sarif(sample_result())["runs"][0]["results"][1]
    physical = result["locations"][0]["physicalLocation"]
    assert physical["artifactLocation"]["uri"] == "vendor/libfast.a"
    assert physical["region"] == {"startLine": 1}
    assert physical["address"]["relativeAddress"] == 0x140
    assert physical["address"]["fullyQualifiedName"] == "vendor/libfast.a(copy.o):.text+0x140"


def test_logical_location_keeps_raw_and_demangled_names() -> None:
    result = sarif(sample_result())["runs"][0]["results"][2]
    logical = result["locations"][0]["logicalLocations"][0]
    assert logical == {
        "name": "sync::fence()",
        "fullyQualifiedName": "sync::fence()",
        "decoratedName": "_ZN4sync5fenceEv",
        "kind": "function",
    }


def test_uris_are_percent_encoded_and_absolute_paths_are_file_uris() -> None:
    base = sample_result()
    odd = replace(base.findings[0], source=Source("src/my file#1%.c", 3))
    outside = replace(base.findings[0], source=Source("/usr/include/x y.h", 7))
    results = sarif(replace(base, findings=(odd, outside)))["runs"][0]["results"]
    assert (
        results[0]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == "src/my%20file%231%25.c"
    )
    absolute = results[1]["locations"][0]["physicalLocation"]["artifactLocation"]
    assert absolute == {"uri": "file:///usr/include/x%20y.h"}


def test_related_locations_cover_other_instructions_object_callers_and_build_file() -> None:
    related = sarif(sample_result())["runs"][0]["results"][0]["relatedLocations"]
    texts = [r["message"]["text"] for r in related]
    assert [r["id"] for r in related] == list(range(1, len(related) + 1))
    assert texts[0].startswith("Also read of 8 bytes at %rsp-0x28: mov -0x28(%rsp),%rax")
    assert texts[1].startswith("Also write of 16 bytes at %rsp-0x18")
    assert texts[2] == "Object file _build/default/stubs/libstubs.a(leaf.o), section .text.leaf."
    assert related[3]["physicalLocation"]["artifactLocation"]["uri"] == "lib/stubs.ml"
    assert related[4]["physicalLocation"]["region"] == {"startLine": 4}


def test_fingerprints_ignore_offsets() -> None:
    base = sample_result()
    moved = replace(base.findings[0], section_offset=0x400, function_offset=0x30)
    one, two = (
        sarif(replace(base, findings=(f,)))["runs"][0]["results"][0] for f in (base.findings[0], moved)
    )
    assert one["partialFingerprints"] == two["partialFingerprints"]
    assert one["partialFingerprints"][FINGERPRINT_KEY] == base.findings[0].fingerprint != ""


def test_suppressed_finding_carries_its_justification() -> None:
    results = sarif(sample_result())["runs"][0]["results"]
    assert [r.get("suppressions") for r in results] == [
        None,
        None,
        [{"kind": "external", "status": "accepted", "justification": "fences are harmless here"}],
        None,
    ]


def test_input_errors_become_tool_notifications() -> None:
    invocation = sarif(sample_result())["runs"][0]["invocations"][0]
    assert invocation["executionSuccessful"] is False
    notes = [(n["level"], n["message"]["text"]) for n in invocation["toolExecutionNotifications"]]
    assert notes == [
        ("error", "vendor/broken.o: truncated ELF: section headers end past the file."),
        ("warning", "obj/lto.o: LTO object: no machine code (.gnu.lto_ sections)."),
    ]
    assert sarif(clean_result())["runs"][0]["invocations"] == [{"executionSuccessful": True}]


def test_every_message_is_a_sentence() -> None:
    run_ = sarif(sample_result())["runs"][0]
    texts = [r["message"]["text"] for r in run_["results"]]
    texts += [rel["message"]["text"] for r in run_["results"] for rel in r.get("relatedLocations", [])]
    assert texts and all(t.endswith(".") for t in texts)


def test_undecodable_symbol_bytes_still_produce_valid_json() -> None:
    base = sample_result()
    weird = replace(base.findings[1], symbol="f\udcff\n", function="f\udcff\n")
    text = render(replace(base, findings=(weird,)), CTX)
    text.encode("utf-8")  # lone surrogates would raise here
    logical = json.loads(text)["runs"][0]["results"][0]["locations"][0]["logicalLocations"][0]
    assert logical["decoratedName"] == "f\\xff\\x0a"


ASM = ".globl f\n.type f,@function\nf:\n mov %rdi,-0x90(%rsp)\n mov %rdi,-0x8(%rsp)\n ret\n.size f,.-f\n"


@pytest.mark.slow
def test_multitool_accepts_sarif_from_a_real_scan(tmp_path: Path, compile_c: Any, assemble: Any) -> None:
    from conftest import run_cli

    source = "int leaf(int *p) { volatile int a[4]; a[0] = p[0]; a[3] = p[1]; return a[0] + a[3]; }\n"
    compile_c(source, name="leaf", flags=("-O2", "-g"), directory=tmp_path)
    compile_c("int g(int x) { return x; }\n", name="lto", flags=("-O2", "-flto"), directory=tmp_path)
    run(["ar", "rcs", tmp_path / "libasm.a", assemble(ASM, name="odd name#")])
    (tmp_path / "broken.o").write_bytes(b"\x7fELF\x02\x01\x01" + bytes(40))
    out = tmp_path / "scan.sarif"
    args = ["--no-cache", "--format", "sarif", "--output", out, "leaf.o", "libasm.a", "lto.o", "broken.o"]
    status, _, err = run_cli(args, cwd=tmp_path)
    assert status == 2, err  # the corrupt object is an input error
    run_ = json.loads(out.read_text())["runs"][0]
    where = {
        (r["ruleId"], r["locations"][0]["logicalLocations"][0]["name"]): r["locations"][0]["physicalLocation"]
        for r in run_["results"]
    }
    assert where[("RZ001", "leaf")]["artifactLocation"] == {"uri": "leaf.c", "uriBaseId": "%SRCROOT%"}
    binary = where[("RZ002", "f")]
    assert binary["artifactLocation"] == {"uri": "libasm.a", "uriBaseId": "%SRCROOT%"}
    assert binary["region"] == {"startLine": 1} and binary["address"]["fullyQualifiedName"].startswith(
        "libasm.a(odd name#.o):.text+0x"
    )
    notes = run_["invocations"][0]["toolExecutionNotifications"]
    assert [
        (n["level"], n["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]) for n in notes
    ] == [
        ("error", "broken.o"),
        ("warning", "lto.o"),
    ]
    assert validate(out, tmp_path) == []


def test_every_help_uri_anchor_is_a_heading_in_the_rules_reference() -> None:
    rules_md = (REPO / "README.md").read_text()
    for rule_id in RULE_IDS:
        anchor = sarif(clean_result())["runs"][0]["tool"]["driver"]["rules"][RULE_IDS.index(rule_id)][
            "helpUri"
        ]
        assert anchor.rsplit("#", 1)[1] == rule_id.lower()
        assert f"\n### {rule_id}\n" in rules_md  # GitHub turns `### RZ001` into #rz001
