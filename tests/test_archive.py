"""The ar member parser against archives written by GNU ar and llvm-ar at test time.

`ar t` (binutils) is the oracle for member names and order; the members' bytes must equal the files
that went in. Formats no installed tool writes (`__.SYMDEF SORTED`) are crafted byte by byte.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from conftest import require_tool, run

from redzone_check.archive import ArchiveError, archive_kind, iter_members, member_at

LONG = "a_member_name_longer_than_fifteen_chars.o"


def _llvm_ar() -> str:
    for name in ("llvm-ar", "llvm-ar-14", "llvm-ar-15", "llvm-ar-16"):
        if shutil.which(name):
            return name
    return require_tool("llvm-ar")


@pytest.fixture(scope="module")
def objects(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require_tool("gcc")
    require_tool("ar")
    where = tmp_path_factory.mktemp("objects")
    for stem, body in (("one", "int one(void) { return 1; }"), ("two", "long two(long x) { return x * 2; }")):
        (where / f"{stem}.c").write_text(body + "\n")
        run(["gcc", "-c", "-O2", "-o", where / f"{stem}.o", where / f"{stem}.c"])
    shutil.copy(where / "one.o", where / LONG)
    (where / "odd.txt").write_bytes(b"odd")  # an odd size: the next header starts after a padding byte
    return where


def _members(archive: Path) -> list[tuple[str, bytes]]:
    view = memoryview(archive.read_bytes())
    return [(m.name, bytes(m.data)) for m in iter_members(view, archive_kind(view) == "thin")]


def _ar_t(archive: Path) -> list[str]:
    return run(["ar", "t", archive]).stdout.split()


def test_gnu_archive_members_match_ar_t_with_long_names_and_odd_sizes(objects: Path) -> None:
    archive = objects / "gnu.a"
    run(["ar", "rcs", archive, "odd.txt", LONG, "two.o"], cwd=objects)
    members = _members(archive)
    assert [name for name, _ in members] == _ar_t(archive) == ["odd.txt", LONG, "two.o"]
    assert dict(members) == {name: (objects / name).read_bytes() for name in ("odd.txt", LONG, "two.o")}
    assert archive.read_bytes()[8:10] == b"/ "  # the symbol table is there and was left out


def test_duplicate_member_names_from_ar_q_are_all_kept(objects: Path) -> None:
    archive = objects / "dup.a"
    run(["ar", "q", archive, "one.o"], cwd=objects)
    shutil.copy(objects / "two.o", objects / "sub_two.o")
    (objects / "dupdir").mkdir(exist_ok=True)
    shutil.copy(objects / "two.o", objects / "dupdir" / "one.o")
    run(["ar", "q", archive, "dupdir/one.o"], cwd=objects)
    members = _members(archive)
    assert [name for name, _ in members] == _ar_t(archive) == ["one.o", "one.o"]
    assert [data for _, data in members] == [
        (objects / "one.o").read_bytes(),
        (objects / "two.o").read_bytes(),
    ]


def test_bsd_archive_from_llvm_ar_has_inline_names_and_symdef_left_out(objects: Path) -> None:
    archive = objects / "bsd.a"
    run([_llvm_ar(), "rcs", "--format=bsd", archive, "one.o", LONG], cwd=objects)
    raw = archive.read_bytes()
    assert b"#1/" in raw[8:24] and b"__.SYMDEF" in raw  # really the BSD layout
    members = _members(archive)
    # binutils does not know BSD symbol tables in an ELF world and lists `__.SYMDEF` as a member.
    assert ["__.SYMDEF"] + [name for name, _ in members] == _ar_t(archive)
    assert [name for name, _ in members] == ["one.o", LONG]
    assert members[1][1] == (objects / LONG).read_bytes()


def test_darwin_archive_names_lose_their_nul_padding(objects: Path) -> None:
    archive = objects / "darwin.a"
    run([_llvm_ar(), "rcs", "--format=darwin", archive, "one.o", "two.o"], cwd=objects)
    assert [name for name, _ in _members(archive)] == ["one.o", "two.o"]


def test_sym64_symbol_table_is_left_out(objects: Path) -> None:
    archive = objects / "sym64.a"
    # llvm-ar writes /SYM64/ once offsets pass SYM64_THRESHOLD; 0 forces it on a small archive.
    env = {**os.environ, "SYM64_THRESHOLD": "0"}
    run([_llvm_ar(), "rcs", "--format=gnu", archive, "one.o", LONG], cwd=objects, env=env)
    assert archive.read_bytes()[8:15] == b"/SYM64/"
    members = _members(archive)
    assert [name for name, _ in members] == _ar_t(archive) == ["one.o", LONG]
    assert members[0][1] == (objects / "one.o").read_bytes()


def _header(name: bytes, size: int) -> bytes:
    return (
        name.ljust(16)
        + b"0".ljust(12)
        + b"0".ljust(6)
        + b"0".ljust(6)
        + b"644".ljust(8)
        + str(size).encode().ljust(10)
        + b"`\n"
    )


def test_crafted_bsd_symdef_sorted_table_is_left_out(objects: Path) -> None:
    # No installed tool writes `__.SYMDEF SORTED` for ELF, so the archive is made here byte by byte.
    symdef, obj = b"__.SYMDEF SORTED", (objects / "one.o").read_bytes()
    table = symdef + b"\0" * 4 + b"\0" * 8
    raw = b"!<arch>\n" + _header(b"#1/20", len(table)) + table
    raw += _header(b"#1/8", 8 + len(obj)) + b"one.o\0\0\0" + obj
    members = list(iter_members(memoryview(raw)))
    assert [(m.name, bytes(m.data)) for m in members] == [("one.o", obj)]


def test_thin_archive_members_carry_names_and_sizes_but_no_data(objects: Path) -> None:
    archive = objects / "thin.a"
    run(["ar", "rcT", archive, "one.o", LONG], cwd=objects)
    view = memoryview(archive.read_bytes())
    assert archive_kind(view) == "thin"
    members = list(iter_members(view, thin=True))
    assert [m.name for m in members] == ["one.o", LONG]
    assert [os.path.basename(p) for p in _ar_t(archive)] == ["one.o", LONG]  # ar t shows resolved paths
    assert [m.size for m in members] == [(objects / "one.o").stat().st_size, (objects / LONG).stat().st_size]
    assert all(len(m.data) == 0 and m.origin is None for m in members)


def test_thin_archive_pointing_into_a_regular_archive_gives_the_member_offset(objects: Path) -> None:
    normal = objects / "normal.a"
    run(["ar", "rcS", normal, "one.o", "two.o"], cwd=objects)
    outer = objects / "outer.a"
    run(["ar", "rcT", outer, "normal.a"], cwd=objects)
    members = list(iter_members(memoryview(outer.read_bytes()), thin=True))
    assert [m.name for m in members] == ["normal.a", "normal.a"]  # `/0:84`, `/0:...`: same file, two offsets
    assert all(m.origin is not None and len(m.data) == 0 for m in members)
    normal_view = memoryview(normal.read_bytes())
    inner = [member_at(normal_view, m.origin or 0, thin=False) for m in members]
    assert [m.name for m in inner] == ["one.o", "two.o"]
    assert [bytes(m.data) for m in inner] == [(objects / n).read_bytes() for n in ("one.o", "two.o")]
    with pytest.raises(ArchiveError, match="no member header starts at offset 0x9"):
        member_at(memoryview(normal.read_bytes()), 9, thin=False)


def test_archive_kind_recognises_only_the_two_magics() -> None:
    assert archive_kind(b"!<arch>\nxyz") == "regular"
    assert archive_kind(b"!<thin>\n") == "thin"
    assert archive_kind(b"!<arch>") is None
    assert archive_kind(b"\x7fELF\x02\x01\x01\x00") is None
