"""Paths -> ELF blobs: files, archives, thin archives, GNU ld scripts and directory walks.

Objects are compiled by gcc (and LLVM bitcode by clang -flto) at test time; archives are written by
GNU ar; `ar t` is the oracle for what an archive holds.
"""

from __future__ import annotations

import mmap
import os
import re
import shutil
import struct
import zlib
from pathlib import Path

import pytest
from conftest import require_tool, run

from redzone_check.inputs import BITCODE_REASON, Blob, iter_blobs
from redzone_check.model import SkipKind

LONG = "member_name_longer_than_fifteen.o"
LIBM = Path("/usr/lib/x86_64-linux-gnu/libm.a")


class Recorder:
    def __init__(self) -> None:
        self.skipped: list[tuple[str, str | None, str, SkipKind]] = []
        self.errors: list[tuple[str, str | None, str]] = []

    def skip(self, path: str, member: str | None, reason: str, kind: SkipKind) -> None:
        self.skipped.append((path, member, reason, kind))

    def error(self, path: str, member: str | None, message: str) -> None:
        self.errors.append((path, member, message))


def scan(*paths: str | Path) -> tuple[list[tuple[str, bytes]], Recorder]:
    sink = Recorder()
    blobs = [(blob.display, bytes(blob.data)) for blob in iter_blobs([str(p) for p in paths], sink)]
    return blobs, sink


def png_bytes() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)  # 1x1, 8-bit greyscale
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0\0"))
        + chunk(b"IEND", b"")
    )


@pytest.fixture(scope="module")
def objs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """one.o, two.o, LONG (a copy of one.o), lto.o (LLVM bitcode), notes.txt, empty.o."""
    require_tool("gcc")
    require_tool("ar")
    where = tmp_path_factory.mktemp("objs")
    for stem, body in (("one", "int one(void) { return 1; }"), ("two", "long two(long x) { return x * 2; }")):
        (where / f"{stem}.c").write_text(body + "\n")
        run(["gcc", "-c", "-O2", "-o", where / f"{stem}.o", where / f"{stem}.c"])
    shutil.copy(where / "one.o", where / LONG)
    require_tool("clang")
    run(["clang", "-flto", "-c", "-O2", "-o", where / "lto.o", where / "one.c"])
    (where / "notes.txt").write_text("not an object\n")
    (where / "empty.o").write_bytes(b"")
    return where


def test_elf_file_named_explicitly_is_one_blob_with_its_bytes(objs: Path) -> None:
    blobs, sink = scan(objs / "one.o")
    assert blobs == [(str(objs / "one.o"), (objs / "one.o").read_bytes())]
    assert sink.skipped == [] and sink.errors == []


def test_archive_members_are_named_path_member_and_non_elf_members_are_skipped(objs: Path) -> None:
    archive = objs / "mixed.a"
    names = ["one.o", LONG, "notes.txt", "empty.o", "lto.o", "two.o"]
    run(["ar", "rc", archive, *names], cwd=objs)
    assert run(["ar", "t", archive]).stdout.split() == names
    blobs, sink = scan(archive)
    assert blobs == [(f"{archive}({n})", (objs / n).read_bytes()) for n in ("one.o", LONG, "two.o")]
    assert sink.skipped == [
        (str(archive), "notes.txt", "not an ELF file (text)", "not-elf"),
        (str(archive), "empty.o", "empty member", "empty"),
        (str(archive), "lto.o", BITCODE_REASON, "not-analysable"),
    ]
    assert sink.errors == []


def test_archive_members_are_zero_copy_views_of_a_read_only_mapping(objs: Path) -> None:
    archive = objs / "views.a"
    run(["ar", "rcs", archive, "one.o", "two.o"], cwd=objs)
    for blob in iter_blobs([str(archive)], Recorder()):
        assert isinstance(blob.data, memoryview) and isinstance(blob.data.obj, mmap.mmap)
        assert blob.data.readonly


def _mapped(path: Path) -> bool:
    return str(path) in Path("/proc/self/maps").read_text()


def test_archive_mapping_is_released_when_iteration_moves_on(objs: Path) -> None:
    archive = objs / "released.a"
    run(["ar", "rcs", archive, "one.o", "two.o"], cwd=objs)
    seen = []
    for blob in iter_blobs([str(archive), str(objs / "one.o")], Recorder()):
        seen.append((blob.display, _mapped(archive)))
        del blob
    assert seen == [(f"{archive}(one.o)", True), (f"{archive}(two.o)", True), (str(objs / "one.o"), False)]
    assert not _mapped(archive)


def test_views_kept_past_the_end_stay_readable(objs: Path) -> None:
    archive = objs / "kept.a"
    run(["ar", "rcs", archive, "one.o", "two.o"], cwd=objs)
    kept: list[Blob] = list(iter_blobs([str(archive)], Recorder()))  # no BufferError on close
    assert [bytes(b.data) for b in kept] == [(objs / n).read_bytes() for n in ("one.o", "two.o")]
    del kept
    assert not _mapped(archive)


def test_thin_archive_members_are_read_relative_to_the_archive_not_the_cwd(
    objs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    build = tmp_path / "build"
    build.mkdir()
    for name in ("one.o", LONG, "lto.o"):
        shutil.copy(objs / name, build / name)
    run(["ar", "rcT", "libthin.a", "one.o", LONG, "lto.o"], cwd=build)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copy(objs / "two.o", elsewhere / "one.o")  # a decoy with the member's name
    monkeypatch.chdir(elsewhere)
    blobs, sink = scan("../build/libthin.a")
    assert blobs == [
        ("../build/libthin.a(one.o)", (objs / "one.o").read_bytes()),
        (f"../build/libthin.a({LONG})", (objs / LONG).read_bytes()),
    ]
    assert sink.skipped == [("../build/libthin.a", "lto.o", BITCODE_REASON, "not-analysable")]


def test_thin_archive_pointing_into_a_regular_archive_names_the_nested_member(
    objs: Path, tmp_path: Path
) -> None:
    for name in ("one.o", "two.o"):
        shutil.copy(objs / name, tmp_path / name)
    run(["ar", "rcS", "normal.a", "one.o", "two.o"], cwd=tmp_path)
    run(["ar", "rcT", "outer.a", "normal.a"], cwd=tmp_path)
    blobs, sink = scan(tmp_path / "outer.a")
    assert blobs == [
        (f"{tmp_path}/outer.a(normal.a(one.o))", (objs / "one.o").read_bytes()),
        (f"{tmp_path}/outer.a(normal.a(two.o))", (objs / "two.o").read_bytes()),
    ]
    assert sink.errors == []


def test_debian_libm_ld_script_is_followed_to_the_archives_it_names() -> None:
    if not LIBM.is_file() or not LIBM.read_bytes().startswith(b"/* GNU ld script"):
        pytest.skip(f"{LIBM} is not a GNU ld script on this system")
    group = re.search(r"GROUP\s*\(([^)]*)\)", LIBM.read_text())
    assert group is not None
    targets = [t for t in group.group(1).split() if os.path.exists(t)]
    assert len(targets) >= 1
    expected = {(t, m) for t in targets for m in run(["ar", "t", t]).stdout.split()}
    sink = Recorder()
    found = {(b.path, b.member) for b in iter_blobs([str(LIBM)], sink)}
    assert found == expected
    assert sink.errors == [] and sink.skipped == []


def test_ld_script_follows_relative_names_and_notes_search_path_and_missing_entries(
    objs: Path, tmp_path: Path
) -> None:
    (tmp_path / "sub").mkdir()
    shutil.copy(objs / "two.o", tmp_path / "sub" / "y.o")
    run(["ar", "rcs", tmp_path / "libx.a", objs / "one.o"])
    script = tmp_path / "libwrap.so"
    script.write_text("/* GNU ld script */\nGROUP ( libx.a AS_NEEDED ( sub/y.o ) -lnothere missing.a )\n")
    blobs, sink = scan(script)
    assert [name for name, _ in blobs] == [f"{tmp_path}/libx.a(one.o)", f"{tmp_path}/sub/y.o"]
    # Code found through the search path may be linked in unchecked; a missing file cannot be linked.
    kinds = [(path, kind) for path, _, _, kind in sink.skipped]
    assert kinds == [(str(script), "not-analysable"), (str(script), "not-elf")]
    assert "-lnothere" in sink.skipped[0][2] and f"{tmp_path}/missing.a" in sink.skipped[1][2]
    assert sink.errors == []


def test_ld_script_cycle_is_followed_once(objs: Path, tmp_path: Path) -> None:
    shutil.copy(objs / "one.o", tmp_path / "one.o")
    shutil.copy(objs / "two.o", tmp_path / "two.o")
    (tmp_path / "a.ld").write_text("INPUT(b.ld one.o)\n")  # no header: recognised by its commands
    (tmp_path / "b.ld").write_text("INPUT(a.ld, two.o)\n")
    blobs, sink = scan(tmp_path / "a.ld")
    assert [name for name, _ in blobs] == [f"{tmp_path}/two.o", f"{tmp_path}/one.o"]
    assert sink.errors == [] and sink.skipped == []


@pytest.fixture
def tree(objs: Path, tmp_path: Path) -> Path:
    root = tmp_path / "tree"
    (root / "a").mkdir(parents=True)
    (root / ".git" / "objects").mkdir(parents=True)
    shutil.copy(objs / "one.o", root / "a" / "one.o")
    shutil.copy(objs / "two.o", root / "b.o")
    shutil.copy(objs / "two.o", root / ".git" / "objects" / "x.o")
    shutil.copy(objs / "lto.o", root / "a" / "lto.bc")
    run(["ar", "rcs", root / "lib.a", objs / "one.o", objs / "two.o"])
    (root / "notes.txt").write_text("hello\n")
    (root / "image.png").write_bytes(png_bytes())
    (root / "empty.o").write_bytes(b"")
    (root / "loop").symlink_to(root, target_is_directory=True)
    (root / "link.o").symlink_to(root / "b.o")
    return root


def test_directory_walk_is_sorted_by_content_and_skips_vcs_loops_and_non_elf(
    tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tree)
    blobs, sink = scan(".")
    assert [name for name, _ in blobs] == ["a/one.o", "b.o", "lib.a(one.o)", "lib.a(two.o)"]
    assert sink.skipped == [("a/lto.bc", None, BITCODE_REASON, "not-analysable")]  # LTO never passes as clean
    assert sink.errors == []


def test_directory_named_by_path_prefixes_what_it_finds(tree: Path) -> None:
    blobs, _ = scan(tree / "a")
    assert [name for name, _ in blobs] == [f"{tree}/a/one.o"]


def test_ld_script_inside_a_directory_walk_is_followed(tree: Path, tmp_path: Path, objs: Path) -> None:
    shutil.copy(objs / "one.o", tmp_path / "outside.o")
    (tree / "a" / "libz.so").write_text(f"/* GNU ld script */ INPUT({tmp_path}/outside.o)\n")
    blobs, _ = scan(tree / "a")
    assert [name for name, _ in blobs] == [f"{tmp_path}/outside.o", f"{tree}/a/one.o"]


def test_non_elf_files_named_explicitly_are_skipped_with_what_they_are(tree: Path) -> None:
    blobs, sink = scan(tree / "image.png", tree / "notes.txt", tree / "empty.o")
    assert blobs == []
    assert sink.skipped == [
        (f"{tree}/image.png", None, "not an ELF file (a PNG image)", "not-elf"),
        (f"{tree}/notes.txt", None, "not an ELF file (text)", "not-elf"),
        (f"{tree}/empty.o", None, "empty file", "empty"),
    ]
    assert sink.errors == []


def test_a_file_named_twice_or_through_a_symlink_is_read_once(tree: Path) -> None:
    blobs, _ = scan(tree / "b.o", tree / "link.o", tree / "b.o")
    assert [name for name, _ in blobs] == [f"{tree}/b.o"]


def test_only_library_stand_in_scripts_are_followed(objs: Path, tmp_path: Path) -> None:
    shutil.copy(objs / "one.o", tmp_path / "with space.o")
    (tmp_path / "quoted.so").write_text('/* a comment first */\nINPUT ( "with space.o" ) /* and after */\n')
    (tmp_path / "kernel.lds").write_text("ENTRY(_start)\nSECTIONS { .text : { *(.text) } }\n")
    (tmp_path / "prose.txt").write_text("GROUP(the usual suspects) met on Tuesday.\nINPUT( is a word here\n")
    blobs, sink = scan(tmp_path / "quoted.so", tmp_path / "kernel.lds", tmp_path / "prose.txt")
    assert [name for name, _ in blobs] == [f"{tmp_path}/with space.o"]
    assert [(path, kind) for path, _, _, kind in sink.skipped] == [
        (f"{tmp_path}/kernel.lds", "not-elf"),  # a full linker script names no library inputs
        (f"{tmp_path}/prose.txt", "not-elf"),
    ]
    assert sink.errors == []
