"""examples/minios-stubs: the example project of the README, built with dune at test time.

`src/checksum.c`'s `ipv4_header_checksum` keeps a 16-byte local array below %rsp at gcc -O2; the
OCaml functions `Packet.seal` and `Packet.verify` reach it through the noalloc `external` of
`src/checksum.ml`. `fix.patch` adds -mno-red-zone to the stanza's `(flags ...)` in `src/dune`.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from conftest import dune_build, require_tool, run, run_cli, scan_json

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "minios-stubs"
TOP_README = EXAMPLE.parent.parent / "README.md"
ARCHIVES = ("_build/default/src/libnetif_stubs.a", "_build/default/src/netif.a")
HELPER = "ipv4_header_checksum"
STUB = "netif_ipv4_checksum"
GOOD_STUBS = ("netif_ring_advance", "netif_ring_advance_byte", STUB, f"{STUB}_byte")
Scan = tuple[int, dict[str, Any]]
NEGATIVE_RSP = re.compile(r"-0x[0-9a-f]+\(%rsp")
MOVES_RSP = re.compile(r"^\s*[0-9a-f]+:\s+(push|pop|call|enter|leave)|,%rsp$", re.MULTILINE)


def line_of(path: Path, text: str) -> int:
    """1-based number of the only line of `path` that contains `text`."""
    numbers = [n for n, line in enumerate(path.read_text().splitlines(), 1) if text in line]
    assert len(numbers) == 1, f"{text!r} is on lines {numbers} of {path}"
    return numbers[0]


def build(tmp: Path, fixed: bool) -> Path:
    for tool in ("dune", "ocamlopt", "gcc", "git"):
        require_tool(tool)
    project = tmp / "minios-stubs"
    shutil.copytree(EXAMPLE, project, ignore=shutil.ignore_patterns("_build"))
    if fixed:
        run(["git", "apply", "fix.patch"], cwd=project)
    return dune_build(project, tmp / "home")


def disassembly(project: Path, object_file: str, function: str) -> str:
    require_tool("objdump")
    out = run(["objdump", "-d", "--no-show-raw-insn", project / object_file]).stdout
    body = out.split(f"<{function}>:\n", 1)[1]
    return body.split("\n\n", 1)[0]


@pytest.fixture(scope="module")
def red(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build(tmp_path_factory.mktemp("example-red"), fixed=False)


@pytest.fixture(scope="module")
def fixed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build(tmp_path_factory.mktemp("example-fixed"), fixed=True)


@pytest.fixture(scope="module")
def red_scan(red: Path) -> Scan:
    return scan_json(ARCHIVES, cwd=red)


def the_finding(scan: Scan) -> dict[str, Any]:
    findings = scan[1]["findings"]
    assert len(findings) == 1, [f["symbol"] for f in findings]
    finding: dict[str, Any] = findings[0]
    return finding


def test_helper_stores_below_rsp_without_moving_it(red: Path) -> None:
    # The independent oracle: objdump, not our decoder, shows the red zone in use.
    body = disassembly(red, "_build/default/src/checksum.o", HELPER)
    assert NEGATIVE_RSP.search(body), body
    assert not MOVES_RSP.search(body), body


def test_red_zone_helper_is_flagged_at_its_source_line(red: Path, red_scan: Scan) -> None:
    status, _doc = red_scan
    finding = the_finding(red_scan)
    assert status == 1
    assert (finding["rule"], finding["symbol"], finding["language"]) == ("RZ001", HELPER, "c")
    assert (finding["path"], finding["member"]) == (ARCHIVES[0], "checksum.o")
    line = line_of(red / "src/checksum.c", "lane[4] = {")
    assert finding["source"] == {"file": "src/checksum.c", "line": line}
    assert "-mno-red-zone" in finding["build"]["missing"]


def test_ocaml_code_and_the_good_stubs_are_analysed_but_not_flagged(red: Path, red_scan: Scan) -> None:
    require_tool("nm")
    defined = run(["nm", "--defined-only", red / ARCHIVES[0]]).stdout
    assert all(re.search(rf" T {stub}$", defined, re.MULTILINE) for stub in GOOD_STUBS), defined
    summary = red_scan[1]["summary"]
    assert summary["ocaml_functions"] >= 4  # seal, verify, next_slot and the module initialisers
    assert summary["functions"] - summary["ocaml_functions"] == len(GOOD_STUBS) + 1
    assert the_finding(red_scan)["symbol"] == HELPER


def test_chain_names_the_ocaml_callers_and_the_external(red: Path, red_scan: Scan) -> None:
    reach = the_finding(red_scan)["reached_from"]
    packet, checksum = red / "src/packet.ml", red / "src/checksum.ml"
    assert reach == [
        {"function": "Netif.Packet.seal", "language": "ocaml", "file": "src/packet.ml",
         "line": line_of(packet, "let seal"), "via": [STUB], "kind": "caller"},
        {"function": "Netif.Packet.verify", "language": "ocaml", "file": "src/packet.ml",
         "line": line_of(packet, "let verify"), "via": [STUB], "kind": "caller"},
        {"function": "Netif.Checksum.ipv4_header", "language": "ocaml", "file": "src/checksum.ml",
         "line": line_of(checksum, "external ipv4_header"), "via": [STUB], "kind": "external"},
    ]  # fmt: skip


def test_build_location_is_the_stanza_flags_line(red: Path, red_scan: Scan) -> None:
    dune = red / "src/dune"
    assert the_finding(red_scan)["build_location"] == {
        "file": "src/dune",
        "line": line_of(dune, "(flags "),
        "kind": "dune",
        "text": "(flags :standard -O2 -g -fno-stack-protector)",
    }


def test_scanning_the_build_directory_lists_each_caller_once(red: Path) -> None:
    _status, doc = scan_json(["_build/default/src"], cwd=red)
    for finding in doc["findings"]:
        reach = [(r["function"], r["kind"]) for r in finding["reached_from"]]
        assert len(reach) == len(set(reach)), reach


def test_fix_patch_removes_the_finding(red_scan: Scan, fixed: Path) -> None:
    assert "-mno-red-zone" in (fixed / "src/dune").read_text()
    assert not NEGATIVE_RSP.search(disassembly(fixed, "_build/default/src/checksum.o", HELPER))
    status, doc = scan_json(ARCHIVES, cwd=fixed)
    assert (status, doc["findings"]) == (0, [])
    assert doc["summary"]["functions"] == red_scan[1]["summary"]["functions"]


@pytest.mark.parametrize("readme", [EXAMPLE / "README.md", TOP_README], ids=["example", "top"])
def test_readme_shows_what_the_current_code_prints(red: Path, fixed: Path, readme: Path) -> None:
    text = readme.read_text()
    status, out, _err = run_cli(ARCHIVES, cwd=red)
    lines = out.splitlines()
    assert status == 1
    chain = [line for line in lines if line.lstrip().startswith(("reached from", "fix:"))]
    for line in [lines[0], lines[-1], *chain]:
        assert line in text, f"{readme.name} does not show {line!r}"
    status, out, _err = run_cli(ARCHIVES, cwd=fixed)
    assert status == 0
    assert out.splitlines()[-1] in text
