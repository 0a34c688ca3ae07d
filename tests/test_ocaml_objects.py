"""A small OCaml program with a C stub, built by ocamlopt and gcc and packed into one archive.

ocamlopt never stores below %rsp, so its objects give no finding; the C stub (a leaf with a local table,
gcc -O2) does, and its line must agree with addr2line. OCaml names appear demangled (`Checksum.mix`).
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import require_tool, run, run_cli, scan_json
from disasm_normalize import below_rsp_accesses, functions

SOURCES = {
    "geometry.ml": """\
(* Plain OCaml: ocamlopt never stores below %rsp. *)

let area w h = w * h

let scale k xs = List.map (fun x -> k * x) xs
""",
    "checksum.ml": """\
external mix : int -> int = "rz_stub_mix"

let digest xs =
  List.fold_left (fun acc x -> acc lxor mix x) 0 xs
""",
    "main.ml": """\
let () =
  let xs = Geometry.scale 3 [ 1; 2; Geometry.area 4 5 ] in
  Printf.printf "%d\\n" (Checksum.digest xs)
""",
    "stubs.c": """\
#include <caml/mlvalues.h>

/* A leaf with a local table indexed by data: gcc -O2 keeps the table below %rsp. */
value rz_stub_mix(value v)
{
    long x = Long_val(v);
    long table[8];
    for (int i = 0; i < 8; i++)
        table[i] = x * 31 + i;
    long s = 0;
    for (int i = 0; i < 8; i++)
        s += table[(x + i * 3) & 7];
    return Val_long(s);
}
""",
}
MODULES = ("geometry", "checksum", "main")
VARIANTS = {
    "plain": (),
    "g": ("-g",),
    "function-sections": ("-function-sections",),
    "g-function-sections": ("-g", "-function-sections"),
}
OCAML_NAME = re.compile(r"^[A-Z][A-Za-z0-9_']*(\.[A-Za-z_][A-Za-z0-9_']*)+$")


@dataclass(frozen=True)
class Built:
    directory: Path
    archive: Path
    flags: tuple[str, ...]
    status: int
    doc: dict[str, Any]


def _ocaml_where() -> str:
    return subprocess.run(["ocamlopt", "-where"], capture_output=True, text=True, check=True).stdout.strip()


def _build(directory: Path, flags: tuple[str, ...]) -> Path:
    for name, text in SOURCES.items():
        (directory / name).write_text(text)
    run(["ocamlopt", *flags, "-c", *(f"{m}.ml" for m in MODULES)], cwd=directory)
    run(["gcc", "-O2", "-g", "-c", "-I", _ocaml_where(), "stubs.c"], cwd=directory)
    run(["ocamlopt", *flags, *(f"{m}.cmx" for m in MODULES), "stubs.o", "-o", "prog"], cwd=directory)
    assert run(["./prog"], cwd=directory).stdout.strip().lstrip("-").isdigit()
    run(["ar", "rcs", "libprog.a", *(f"{m}.o" for m in MODULES), "stubs.o"], cwd=directory)
    return directory / "libprog.a"


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def built(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Built:
    for tool in ("ocamlopt", "gcc", "ar", "objdump", "addr2line"):
        require_tool(tool)
    flags = VARIANTS[request.param]
    directory = tmp_path_factory.mktemp(f"ocaml-{request.param}")
    archive = _build(directory, flags)
    status, doc = scan_json([archive.name], cwd=directory)
    return Built(directory, archive, flags, status, doc)


def test_oracle_sees_the_stub_below_rsp_and_nothing_in_ocamlopt_code(built: Built) -> None:
    certain = {(f.member, f.name) for f in functions(built.archive) if below_rsp_accesses(f)}
    assert certain == {("stubs.o", "rz_stub_mix")}


def test_only_the_c_stub_is_flagged(built: Built) -> None:
    assert built.doc["errors"] == []
    flagged = {(f["member"], f["symbol"]) for f in built.doc["findings"]}
    assert flagged == {("stubs.o", "rz_stub_mix")}
    assert built.status == 1
    assert built.doc["summary"]["ocaml_functions"] >= 6
    assert built.doc["summary"]["objects"] == 4


def _addr2line(obj: Path, section: str, offset: int) -> tuple[str, int]:
    out = run(["addr2line", "-e", obj, "-j", section, hex(offset)]).stdout.strip()
    file, _, line = out.split(" ")[0].rpartition(":")
    return file, int(line)


def test_c_stub_finding_points_into_the_c_file_at_the_addr2line_line(built: Built) -> None:
    (finding,) = built.doc["findings"]
    assert finding["language"] == "c"
    assert finding["function"] == "rz_stub_mix"
    assert finding["source"]["file"].endswith("stubs.c")
    file, line = _addr2line(built.directory / "stubs.o", finding["section"], finding["section_offset"])
    assert Path(file).name == "stubs.c"
    assert finding["source"]["line"] == line
    assert finding["build"]["missing"] == ["-mno-red-zone"]


def _ocaml_mentions(doc: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for finding in doc["findings"]:
        if finding["language"] == "ocaml":
            yield finding
        yield from (r for r in finding["reached_from"] if r["language"] == "ocaml")


def test_ocaml_names_are_demangled_wherever_they_appear(built: Built) -> None:
    mentions = list(_ocaml_mentions(built.doc))
    assert mentions, "the stub's OCaml external and callers are not named"
    for m in mentions:
        assert OCAML_NAME.match(m["function"]), m
        assert not m["function"].startswith("caml"), m
    assert "Checksum.mix" in {m["function"] for m in mentions}


def test_ocaml_external_points_into_its_ml_file(built: Built) -> None:
    externals = [m for m in _ocaml_mentions(built.doc) if m.get("kind") == "external"]
    assert [(m["function"], m["file"], m["line"]) for m in externals] == [("Checksum.mix", "checksum.ml", 1)]


def test_ocaml_callers_point_into_ml_files(built: Built) -> None:
    callers = [m for m in _ocaml_mentions(built.doc) if m.get("kind") == "caller"]
    # The closure passed to List.fold_left calls the external; OCaml names it fun_<stamp>.
    assert len(callers) == 1 and re.fullmatch(r"Checksum\.fun_\d+", callers[0]["function"]), callers
    if "-g" not in built.flags:  # no line table: nothing may be invented
        assert all(m["file"] is None or m["file"].endswith(".ml") for m in callers), callers
        return
    # An anonymous function has no `let`: the line is its call site's, as addr2line gives it
    # (`call caml_c_call` with %rax = rz_stub_mix in camlChecksum__fun_<n>: checksum.ml:4).
    assert [(m["file"], m["line"]) for m in callers] == [("checksum.ml", 4)]


def _inject_below_rsp(asm: str, symbol_prefix: str) -> str:
    """Put `movq %rax,-8(%rsp)` first in the body of the function whose label starts with the prefix."""
    lines = asm.splitlines()
    start = next(k for k, line in enumerate(lines) if line.startswith(symbol_prefix) and line.endswith(":"))
    first = next(
        k
        for k in range(start + 1, len(lines))
        if re.match(r"\t[a-z]", lines[k]) and ".loc" not in lines[k] and not lines[k].lstrip().startswith(".")
    )
    lines.insert(first, "\tmovq\t%rax, -8(%rsp)")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("flags", [("-g",), ("-g", "-function-sections")], ids=["g", "g-function-sections"])
def test_ocaml_function_using_the_red_zone_is_named_and_located_in_its_ml_file(
    flags: tuple[str, ...], tmp_path: Path
) -> None:
    """ocamlopt cannot produce this, so its own assembly is edited: the finding must say `Geometry.area`
    and geometry.ml at the line addr2line gives."""
    for tool in ("ocamlopt", "as", "addr2line"):
        require_tool(tool)
    (tmp_path / "geometry.ml").write_text(SOURCES["geometry.ml"])
    run(["ocamlopt", *flags, "-S", "-c", "geometry.ml"], cwd=tmp_path)
    asm = tmp_path / "geometry.s"
    asm.write_text(_inject_below_rsp(asm.read_text(), "camlGeometry__area_"))
    run(["as", "--64", "-o", "geometry.o", "geometry.s"], cwd=tmp_path)
    status, doc = scan_json(["geometry.o"], cwd=tmp_path)
    (finding,) = doc["findings"]
    assert status == 1
    assert finding["symbol"].startswith("camlGeometry__area_")
    assert finding["function"] == "Geometry.area"
    assert finding["language"] == "ocaml"
    assert [i["text"].replace(" ", "") for i in finding["instructions"]] == ["movq%rax,-8(%rsp)"]
    assert finding["source"]["file"].endswith("geometry.ml")
    file, line = _addr2line(tmp_path / "geometry.o", finding["section"], finding["section_offset"])
    assert (Path(file).name, line) == ("geometry.ml", 3)
    assert finding["source"]["line"] == 3
    _, text, _ = run_cli(["--no-cache", "geometry.o"], cwd=tmp_path)
    assert text.splitlines()[0].startswith("geometry.ml:3: error: Geometry.area:"), text
