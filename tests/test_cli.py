"""The CLI contract of issue 2: paths in, JSON and text findings out, levels and exit codes."""

from __future__ import annotations

import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import require_tool, run, run_cli, scan_json

# A leaf whose local array gcc -O2 keeps below %rsp (no `sub`): the red zone.
LEAF = """\
int checksum(const unsigned char *p, int n)
{
    unsigned char tmp[32];
    int s = 0;
    for (int i = 0; i < 32; i++)
        tmp[i] = p[i % n] ^ (unsigned char)i;
    for (int i = 0; i < 32; i++)
        s = s * 31 + tmp[(i * 7) % 32];
    return s;
}

int clean(int a, int b)
{
    return a * b + 1;
}
"""

MS_ABI = (
    """\
int __attribute__((ms_abi)) win_sum(const unsigned char *p, int n)
{
    unsigned char tmp[32];
    int s = 0;
    for (int i = 0; i < 32; i++)
        tmp[i] = p[i % n] ^ (unsigned char)i;
    for (int i = 0; i < 32; i++)
        s = s * 31 + tmp[(i * 7) % 32];
    return s;
}
"""
    + LEAF
)


def _findings(doc: dict[str, Any], rule: str = "RZ001") -> dict[str, dict[str, Any]]:
    return {f["function"]: f for f in doc["findings"] if f["rule"] == rule}


def _line_of(path: Path, needle: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if needle in line)


@pytest.fixture
def leaf_obj(compile_c: Callable[..., Path], tmp_path: Path) -> Path:
    return compile_c(LEAF, name="leaf", flags=("-g", "-O2"), directory=tmp_path / "src")


def test_red_zone_leaf_is_an_error_with_line_and_flags(leaf_obj: Path, tmp_path: Path) -> None:
    status, doc = scan_json([leaf_obj], cwd=tmp_path)
    assert status == 1
    found = _findings(doc)
    assert set(found) == {"checksum"}
    f = found["checksum"]
    assert f["level"] == "error"
    assert f["path"] == "src/leaf.o" and f["member"] is None
    assert f["section"] == ".text"
    assert f["instructions"], "the offending instructions are listed"
    assert all(i["rsp_offset"] < 0 for i in f["instructions"])
    assert {i["access"] for i in f["instructions"]} - {"address"} == {"read", "write"}
    first_access = next(i for i in f["instructions"] if i["access"] != "address")
    assert f["function_offset"] == first_access["function_offset"]
    assert f["source"]["file"] == "src/leaf.c"
    assert f["source"]["line"] in range(_line_of(tmp_path / "src/leaf.c", "tmp[i] ="), 9)
    assert f["language"] == "c"
    assert f["build"]["compiler"].startswith("GCC") or "GNU" in f["build"]["producer"]
    assert "-O2" in f["build"]["flags"]
    assert f["build"]["missing"] == ["-mno-red-zone"]
    assert doc["summary"]["objects"] == 1
    assert doc["summary"]["functions"] == 2
    assert doc["summary"]["findings"] == {"error": 1, "warning": 0, "note": 0}


def test_mno_red_zone_build_is_clean(compile_c: Callable[..., Path], tmp_path: Path) -> None:
    obj = compile_c(LEAF, name="leaf", flags=("-g", "-O2", "-mno-red-zone"))
    status, doc = scan_json([obj], cwd=tmp_path)
    assert status == 0
    assert doc["findings"] == []
    assert doc["summary"]["functions"] == 2


def test_text_output_starts_with_file_and_line(leaf_obj: Path, tmp_path: Path) -> None:
    status, out, err = run_cli(["--no-cache", leaf_obj], cwd=tmp_path)
    assert status == 1, err
    first = out.splitlines()[0]
    assert first.startswith("src/leaf.c:")
    line = int(first.split(":")[1])
    assert line >= _line_of(tmp_path / "src/leaf.c", "tmp[i] =")
    assert "checksum" in first and "RZ001" in first
    assert "-mno-red-zone" in out
    assert out.splitlines()[-1].startswith("redzone-check: 1 finding")


def test_without_debug_info_the_binary_location_leads(compile_c: Callable[..., Path], tmp_path: Path) -> None:
    obj = compile_c(LEAF, name="nodebug", flags=("-O2",))
    status, out, _ = run_cli(["--no-cache", obj], cwd=tmp_path)
    assert status == 1
    assert out.startswith("nodebug.o: error: checksum:")
    status, doc = scan_json([obj], cwd=tmp_path)
    f = _findings(doc)["checksum"]
    assert f["source"] is None
    assert f["build"]["recorded"] is False and "-g" in f["build"]["note"]


def test_ms_abi_function_is_clean_next_to_sysv_one(compile_c: Callable[..., Path], tmp_path: Path) -> None:
    obj = compile_c(MS_ABI, name="abi", flags=("-O2",))
    _, doc = scan_json([obj], cwd=tmp_path)
    assert set(_findings(doc)) == {"checksum"}


def test_userspace_platform_downgrades_rz001_to_note(leaf_obj: Path, tmp_path: Path) -> None:
    status, doc = scan_json(["--platform", "userspace", leaf_obj], cwd=tmp_path)
    assert status == 0
    assert _findings(doc)["checksum"]["level"] == "note"
    assert doc["platform"] == "userspace"


def test_fail_on_never_and_note(leaf_obj: Path, tmp_path: Path) -> None:
    assert scan_json(["--fail-on", "never", leaf_obj], cwd=tmp_path)[0] == 0
    assert scan_json(["--platform", "solo5", "--fail-on", "note", leaf_obj], cwd=tmp_path)[0] == 1


def test_rz003_flags_units_built_without_the_flag(leaf_obj: Path, tmp_path: Path) -> None:
    _, doc = scan_json(["--require-no-red-zone-flag", leaf_obj], cwd=tmp_path)
    units = [f for f in doc["findings"] if f["rule"] == "RZ003"]
    assert len(units) == 1
    assert units[0]["level"] == "warning"
    assert units[0]["build"]["missing"] == ["-mno-red-zone"]
    _, doc = scan_json([leaf_obj], cwd=tmp_path)
    assert not [f for f in doc["findings"] if f["rule"] == "RZ003"], "RZ003 is off by default"


def test_fingerprint_survives_address_shifts(compile_c: Callable[..., Path], tmp_path: Path) -> None:
    obj = compile_c(LEAF, name="leaf", flags=("-g", "-O2"))
    _, before = scan_json([obj], cwd=tmp_path)
    shifted = "static int pad(int x) { return x * 3 + 7; }\nint use(int x) { return pad(x) ^ 5; }\n" + LEAF
    compile_c(shifted, name="leaf", flags=("-g", "-O2"))
    _, after = scan_json([obj], cwd=tmp_path)
    f1, f2 = _findings(before)["checksum"], _findings(after)["checksum"]
    assert f1["section_offset"] != f2["section_offset"], "the rebuild must shift the function"
    assert f1["source"]["line"] != f2["source"]["line"]
    assert f1["fingerprint"] == f2["fingerprint"]


def test_not_elf_input_is_skipped_not_an_error(leaf_obj: Path, tmp_path: Path) -> None:
    script = tmp_path / "build.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    empty = tmp_path / "empty.o"
    empty.write_bytes(b"")
    status, doc = scan_json([script, empty, leaf_obj], cwd=tmp_path)
    assert status == 1
    assert doc["errors"] == []
    kinds = {s["path"]: s["kind"] for s in doc["skipped"]}
    assert kinds == {"build.sh": "not-elf", "empty.o": "empty"}


def test_non_x86_64_elf_is_not_applicable(leaf_obj: Path, tmp_path: Path) -> None:
    data = bytearray(leaf_obj.read_bytes())
    struct.pack_into("<H", data, 18, 183)  # e_machine = EM_AARCH64
    arm = tmp_path / "arm.o"
    arm.write_bytes(bytes(data))
    status, doc = scan_json([arm], cwd=tmp_path)
    assert status == 0
    assert [(s["path"], s["kind"]) for s in doc["skipped"]] == [("arm.o", "not-applicable")]
    assert "AArch64" in doc["skipped"][0]["reason"]
    assert doc["summary"]["not_applicable"] == 1


def test_gcc_lto_object_is_not_analysable_and_not_clean(tmp_path: Path) -> None:
    require_tool("gcc")
    src = tmp_path / "lto.c"
    src.write_text(LEAF)
    run(["gcc", "-c", "-O2", "-flto", "-o", tmp_path / "lto.o", src])
    status, out, _ = run_cli(["--no-cache", tmp_path / "lto.o"], cwd=tmp_path)
    assert status == 1
    assert "not analysable" in out
    _, doc = scan_json([tmp_path / "lto.o"], cwd=tmp_path)
    assert doc["summary"]["not_analysable"] == 1
    assert doc["skipped"][0]["kind"] == "not-analysable"


def test_corrupt_elf_is_one_error_line_and_others_are_scanned(leaf_obj: Path, tmp_path: Path) -> None:
    data = bytearray(leaf_obj.read_bytes())
    struct.pack_into("<Q", data, 0x28, len(data) + 4096)  # e_shoff beyond the end
    bad = tmp_path / "bad.o"
    bad.write_bytes(bytes(data))
    status, out, err = run_cli(["--no-cache", bad, leaf_obj], cwd=tmp_path)
    assert status == 2
    assert "Traceback" not in err
    assert [line for line in err.splitlines() if "bad.o" in line] == [
        line for line in err.splitlines() if line.startswith("redzone-check: error: bad.o: ")
    ]
    assert "checksum" in out


def test_usage_error_exits_2() -> None:
    status, _, err = run_cli(["--platform", "mars", "x.o"])
    assert status == 2
    assert "invalid choice" in err


def test_version_matches_package() -> None:
    from redzone_check import __version__

    status, out, _ = run_cli(["--version"])
    assert status == 0
    assert out.strip() == f"redzone-check {__version__}"


def test_stripped_executable_code_without_symbols_is_still_analysed(tmp_path: Path) -> None:
    require_tool("gcc")
    src = tmp_path / "prog.c"
    src.write_text(LEAF + "int main(int c, char **v) { return checksum((const unsigned char *)v[0], c); }\n")
    exe = tmp_path / "prog"
    run(["gcc", "-O2", "-o", exe, src])
    run(["strip", exe])
    status, doc = scan_json([exe], cwd=tmp_path)
    assert status == 1
    (finding,) = [f for f in doc["findings"] if f["rule"] == "RZ001"]
    assert finding["function"].startswith("<.text+0x")
    assert finding["path"] == "prog" and finding["member"] is None


def test_quiet_drops_the_summary_line(leaf_obj: Path, compile_c: Callable[..., Path], tmp_path: Path) -> None:
    status, out, _ = run_cli(["--no-cache", "-q", leaf_obj], cwd=tmp_path)
    assert status == 1
    assert out.startswith("src/leaf.c:") and "redzone-check:" not in out
    clean = compile_c(LEAF, name="clean", flags=("-O2", "-mno-red-zone"))
    assert run_cli(["--no-cache", "-q", clean], cwd=tmp_path)[:2] == (0, "")


def test_exclude_by_directory_skips_the_binaries_under_it(
    compile_c: Callable[..., Path], tmp_path: Path
) -> None:
    vendored = compile_c(LEAF, name="leaf", directory=tmp_path / "vendor" / "lib")
    status, doc = scan_json(["--exclude", "vendor", vendored], cwd=tmp_path)
    assert status == 0
    assert doc["findings"] == []
    assert [(s["path"], s["kind"]) for s in doc["skipped"]] == [("vendor/lib/leaf.o", "excluded")]
    assert doc["summary"]["objects"] == 0
