"""The machine's own libgcc.a and OCaml runtime against a sound lower bound computed from objdump.

The bound: every function with an instruction that accesses memory at a negative displacement from
%rsp without an index register. Whatever the stack state, such an access is below the current %rsp,
so the engine must flag every one of these functions and list every one of these instructions.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import require_tool, scan_json
from disasm_normalize import Function, below_rsp_accesses, functions


def _libgcc() -> Path:
    require_tool("gcc")
    out = subprocess.run(["gcc", "-print-libgcc-file-name"], capture_output=True, text=True, check=True)
    return Path(out.stdout.strip())


def _ocaml_lib(name: str) -> Path:
    require_tool("ocamlopt")
    out = subprocess.run(["ocamlopt", "-where"], capture_output=True, text=True, check=True)
    return Path(out.stdout.strip()) / name


ARCHIVES: dict[str, Callable[[], Path]] = {"libgcc": _libgcc, "libasmrun": lambda: _ocaml_lib("libasmrun.a")}


class Scanned:
    def __init__(self, path: Path) -> None:
        require_tool("objdump")
        assert path.is_file(), path
        self.path = path
        self.bound: list[Function] = [f for f in functions(path) if below_rsp_accesses(f)]
        self.status, self.doc = scan_json([path])
        self.by_name: dict[tuple[str | None, str], dict[str, Any]] = {
            (f["member"], name): f for f in self.doc["findings"] for name in (f["symbol"], *f["aliases"])
        }

    def finding(self, func: Function) -> dict[str, Any] | None:
        return next((self.by_name[k] for n in func.names if (k := (func.member, n)) in self.by_name), None)


@pytest.fixture(scope="module")
def scans() -> Callable[[str], Scanned]:
    done: dict[str, Scanned] = {}

    def get(name: str) -> Scanned:
        if name not in done:
            done[name] = Scanned(ARCHIVES[name]())
        return done[name]

    return get


@pytest.fixture(params=sorted(ARCHIVES))
def archive(request: pytest.FixtureRequest, scans: Callable[[str], Scanned]) -> Scanned:
    return scans(request.param)


def test_every_function_of_the_lower_bound_is_flagged(archive: Scanned) -> None:
    assert archive.bound, f"{archive.path}: the lower bound is empty, the oracle is broken"
    missed = [
        f"{f.member}:{'/'.join(f.names)} e.g. {below_rsp_accesses(f)[0].text}"
        for f in archive.bound
        if archive.finding(f) is None
    ]
    assert not missed, f"{archive.path}: {len(missed)} of {len(archive.bound)} not flagged:\n" + "\n".join(
        missed
    )
    assert archive.status == 1
    assert archive.doc["errors"] == []


def test_every_certain_access_is_listed_at_its_offset(archive: Scanned) -> None:
    missing = []
    for func in archive.bound:
        finding = archive.finding(func)
        if finding is None:
            continue  # reported by the test above
        listed = {i["section_offset"] for i in finding["instructions"]}
        assert finding["section"] == func.section, (func.names, finding["section"])
        missing += [
            f"{func.member}:{func.name}+{i.address - func.start:#x} {i.text}"
            for i in below_rsp_accesses(func)
            if i.address not in listed
        ]
    assert not missing, "\n".join(missing)


def test_lower_bound_findings_are_errors_with_negative_offsets(archive: Scanned) -> None:
    for func in archive.bound:
        finding = archive.finding(func)
        assert finding is not None
        assert finding["rule"] in ("RZ001", "RZ002")
        assert finding["level"] in ("error", "note")
        assert all(i["rsp_offset"] < 0 for i in finding["instructions"]), finding["instructions"]


def test_caml_md5transform_is_in_the_bound_and_flagged(scans: Callable[[str], Scanned]) -> None:
    scanned = scans("libasmrun")
    md5 = [f for f in scanned.bound if "caml_MD5Transform" in f.names]
    assert len(md5) == 1
    finding = scanned.finding(md5[0])
    assert finding is not None
    assert finding["function"] == "caml_MD5Transform"
    assert finding["member"] == md5[0].member
    assert finding["rule"] == "RZ001"


ORACLE_PROBE = """\
    .text
    .globl f, f_alias
    .type f, @function
    .type f_alias, @function
f:
f_alias:
    mov %rax, -8(%rsp)
    ret
    .size f, .-f
    .size f_alias, .-f_alias
g:                              # no .type, no .size: runs to the next symbol
    lea -0x10(%rsp), %rax       # an address, not an access
    mov -0x10(%rsp,%rax,1), %rdx  # indexed: not certain
    nopw -0x8(%rsp)
    ret
k:
    fnstcw -0xa(%rsp)
    ret
"""


def test_lower_bound_attributes_by_symbol_with_every_alias(assemble: Callable[..., Path]) -> None:
    require_tool("objdump")
    obj = assemble(ORACLE_PROBE, name="probe")
    bound = {
        f.names: [i.text.split()[0] for i in below_rsp_accesses(f)]
        for f in functions(obj)
        if below_rsp_accesses(f)
    }
    assert bound == {("f", "f_alias"): ["mov"], ("k",): ["fnstcw"]}
    _, doc = scan_json([obj])
    names = {(f["symbol"], *sorted(f["aliases"])) for f in doc["findings"]}
    assert {("k",)} <= names
    assert ("f", "f_alias") in names or ("f_alias", "f") in names, names


def test_ocaml_stdlib_has_no_finding() -> None:
    stdlib = _ocaml_lib("stdlib.a")
    require_tool("objdump")
    assert not [f for f in functions(stdlib) if below_rsp_accesses(f)]
    status, doc = scan_json([stdlib])
    assert doc["findings"] == [], [(f["member"], f["symbol"]) for f in doc["findings"]]
    assert doc["errors"] == []
    assert doc["summary"]["functions"] > 1000
    assert status == 0
