"""Bad input: one clear line per problem, naming the file and member, never a traceback, and the
scan goes on with the next input.

Corrupt archives are made from real ones written by GNU ar at test time (`ar tO` gives the member
offsets), then cut or patched at the byte positions the ar format defines.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import stat
import tempfile
import traceback
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import require_tool, run, run_cli, scan_json

from redzone_check.inputs import iter_blobs
from redzone_check.model import SkipKind

LONG = "member_name_longer_than_fifteen.o"
SIZE_FIELD = slice(48, 58)  # of a 60-byte member header


class Recorder:
    def __init__(self) -> None:
        self.skipped: list[tuple[str, str | None, str, SkipKind]] = []
        self.errors: list[tuple[str, str | None, str]] = []

    def skip(self, path: str, member: str | None, reason: str, kind: SkipKind) -> None:
        self.skipped.append((path, member, reason, kind))

    def error(self, path: str, member: str | None, message: str) -> None:
        self.errors.append((path, member, message))


def scan(*paths: str | Path) -> tuple[list[str], Recorder]:
    sink = Recorder()
    return [blob.display for blob in iter_blobs([str(p) for p in paths], sink)], sink


@pytest.fixture(scope="module")
def objs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """one.o and two.o (gcc -O2), leaf.o (gcc -O0 leaf: uses the red zone), good.a = [one.o, LONG, two.o]."""
    require_tool("gcc")
    require_tool("ar")
    where = tmp_path_factory.mktemp("bad")
    sources = {
        "one": "int one(void) { return 1; }",
        "two": "long two(long x) { return x * 2; }",
        "leaf": "int leaf(int x) { int y = x * 3; return y; }",
    }
    for stem, body in sources.items():
        (where / f"{stem}.c").write_text(body + "\n")
        flags = "-O0" if stem == "leaf" else "-O2"
        run(["gcc", "-c", flags, "-o", where / f"{stem}.o", where / f"{stem}.c"])
    shutil.copy(where / "one.o", where / LONG)
    run(["ar", "rcs", "good.a", "one.o", LONG, "two.o"], cwd=where)
    return where


def header_offsets(archive: Path) -> dict[str, int]:
    """Member name -> offset of its 60-byte header, from binutils (`ar tO` prints data offsets)."""
    out = run(["ar", "tO", archive]).stdout.split()
    return {name: int(offset, 16) - 60 for name, offset in zip(out[::2], out[1::2], strict=True)}


def patched(objs: Path, name: str, at: int, new: bytes) -> Path:
    raw = bytearray((objs / "good.a").read_bytes())
    raw[at : at + len(new)] = new
    path = objs / name
    path.write_bytes(bytes(raw))
    return path


def test_member_size_larger_than_what_remains_is_one_error_after_the_members_before_it(objs: Path) -> None:
    two = header_offsets(objs / "good.a")["two.o"]
    lying = patched(objs, "lying.a", two + SIZE_FIELD.start, b"999999999 ")
    remain = lying.stat().st_size - two - 60
    blobs, sink = scan(lying, objs / "one.o")
    assert blobs == [f"{lying}(one.o)", f"{lying}({LONG})", f"{objs}/one.o"]  # the next input is still read
    message = f"member header at offset {two:#x} claims 999999999 bytes but only {remain} remain"
    assert sink.errors == [(str(lying), "two.o", message)]


def test_truncated_archive_names_the_member_cut_short(objs: Path) -> None:
    two = header_offsets(objs / "good.a")["two.o"]
    cut = objs / "cut.a"
    cut.write_bytes((objs / "good.a").read_bytes()[: two + 60 + 10])
    blobs, sink = scan(cut)
    assert blobs == [f"{cut}(one.o)", f"{cut}({LONG})"]
    size = (objs / "two.o").stat().st_size
    assert sink.errors == [
        (str(cut), "two.o", f"member header at offset {two:#x} claims {size} bytes but only 10 remain")
    ]


def test_truncated_member_header(objs: Path) -> None:
    two = header_offsets(objs / "good.a")["two.o"]
    cut = objs / "cut_header.a"
    cut.write_bytes((objs / "good.a").read_bytes()[: two + 30])
    blobs, sink = scan(cut)
    assert blobs == [f"{cut}(one.o)", f"{cut}({LONG})"]
    assert sink.errors == [
        (str(cut), None, f"member header at offset {two:#x} is truncated: 30 of 60 bytes remain")
    ]


def test_non_numeric_size_and_bad_header_magic(objs: Path) -> None:
    one = header_offsets(objs / "good.a")["one.o"]
    words = patched(objs, "words.a", one + SIZE_FIELD.start, b"12ab      ")
    magic = patched(objs, "magic.a", one + 58, b"XX")
    blobs, sink = scan(words, magic)
    assert blobs == []
    assert sink.errors == [
        (str(words), "one.o", f"member header at offset {one:#x} has a non-numeric size field '12ab      '"),
        (str(magic), "one.o", f"member header at offset {one:#x} does not end in the ar magic `\\n"),
    ]


def test_long_name_reference_outside_the_name_table(objs: Path) -> None:
    at = header_offsets(objs / "good.a")[LONG]
    raw = (objs / "good.a").read_bytes()
    assert raw[at : at + 2] == b"/0"  # GNU ar put the long name in the // table
    table_size = int(raw[raw.index(b"//") + 48 : raw.index(b"//") + 58])
    outside = patched(objs, "outside.a", at, b"/9999          ")
    blobs, sink = scan(outside)
    assert blobs == [f"{outside}(one.o)"]
    message = (
        f"member header at offset {at:#x} refers to long name /9999, outside the {table_size}-byte // table"
    )
    assert sink.errors == [(str(outside), None, message)]


def test_long_name_reference_without_a_name_table(tmp_path: Path) -> None:
    path = tmp_path / "nolong.a"
    path.write_bytes(b"!<arch>\n" + b"/4".ljust(16) + b"0".ljust(32) + b"4".ljust(10) + b"`\n" + b"abcd")
    blobs, sink = scan(path)
    assert blobs == []
    assert sink.errors == [
        (str(path), None, "member header at offset 0x8 refers to long name /4 but there is no // table")
    ]


def test_bsd_name_longer_than_its_member(tmp_path: Path) -> None:
    path = tmp_path / "bsdname.a"
    path.write_bytes(
        b"!<arch>\n" + b"#1/64".ljust(16) + b"0".ljust(32) + b"8".ljust(10) + b"`\n" + b"x.o\0\0\0\0\0"
    )
    _, sink = scan(path)
    assert sink.errors == [
        (str(path), "#1/64", "member header at offset 0x8 has a 64-byte BSD name in a 8-byte member")
    ]


def test_every_truncation_of_an_archive_gives_at_most_one_error_and_only_intact_members(objs: Path) -> None:
    raw = (objs / "good.a").read_bytes()
    members = {
        "one.o": (objs / "one.o").read_bytes(),
        LONG: (objs / LONG).read_bytes(),
        "two.o": (objs / "two.o").read_bytes(),
    }
    path = objs / "trunc.a"
    for length in range(8, len(raw), 13):
        path.write_bytes(raw[:length])
        sink = Recorder()
        for blob in iter_blobs([str(path)], sink):
            assert blob.member is not None and bytes(blob.data) == members[blob.member]
        assert len(sink.errors) <= 1, (length, sink.errors)


def test_random_header_damage_never_raises(objs: Path) -> None:
    raw = (objs / "good.a").read_bytes()
    offsets = list(header_offsets(objs / "good.a").values())
    rng = random.Random(20240601)
    path = objs / "damaged.a"
    for _ in range(300):
        damaged = bytearray(raw)
        for _ in range(rng.randint(1, 4)):
            at = rng.choice(offsets) + rng.randrange(60)
            damaged[at] = rng.randrange(256)
        path.write_bytes(bytes(damaged))
        sink = Recorder()
        list(iter_blobs([str(path)], sink))
        assert len(sink.errors) <= 1


def test_missing_thin_member_is_one_error_and_the_other_members_are_read(objs: Path, tmp_path: Path) -> None:
    for name in ("one.o", "two.o", LONG):
        shutil.copy(objs / name, tmp_path / name)
    run(["ar", "rcT", "thin.a", "one.o", "two.o", LONG], cwd=tmp_path)
    (tmp_path / "two.o").unlink()
    (tmp_path / LONG).unlink()
    (tmp_path / LONG).mkdir()
    blobs, sink = scan(tmp_path / "thin.a")
    assert blobs == [f"{tmp_path}/thin.a(one.o)"]
    assert sink.errors == [
        (
            f"{tmp_path}/thin.a",
            "two.o",
            f"thin archive member file {tmp_path}/two.o: No such file or directory",
        ),
        (
            f"{tmp_path}/thin.a",
            LONG,
            f"thin archive member file {tmp_path}/{LONG} is not a regular file (directory)",
        ),
    ]


def test_missing_file_and_fifo_are_errors_and_the_scan_goes_on(objs: Path, tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)  # opened without blocking: a FIFO named by mistake must not hang the scan
    blobs, sink = scan(tmp_path / "missing.o", fifo, objs / "one.o")
    assert blobs == [f"{objs}/one.o"]
    assert sink.errors == [
        (f"{tmp_path}/missing.o", None, "cannot read: No such file or directory"),
        (str(fifo), None, "cannot read: not a regular file (named pipe)"),
    ]


def test_empty_file_is_skipped_not_an_error(tmp_path: Path) -> None:
    (tmp_path / "empty.o").write_bytes(b"")
    blobs, sink = scan(tmp_path / "empty.o")
    assert blobs == [] and sink.errors == []
    assert sink.skipped == [(f"{tmp_path}/empty.o", None, "empty file", "empty")]


def test_malformed_ld_script_is_one_error(tmp_path: Path) -> None:
    (tmp_path / "libbad.so").write_text("/* GNU ld script */\nGROUP ( libc.so.6 \n")
    _, sink = scan(tmp_path / "libbad.so")
    assert sink.errors == [(f"{tmp_path}/libbad.so", None, "malformed GNU ld script: unbalanced parentheses")]


@pytest.fixture
def world_dir() -> Iterator[Path]:
    # pytest's tmp_path is private to root (0700); an unprivileged child needs to get in.
    where = Path(tempfile.mkdtemp(prefix="redzone-bad-"))
    where.chmod(0o755)
    yield where
    for path in (where / "secret.o", where / "locked"):
        if path.exists():
            path.chmod(0o755)
    shutil.rmtree(where)


def _scan_unprivileged(paths: list[Path]) -> dict[str, list[list[str | None]]]:
    """Scan in a forked child that drops root (root reads files whatever their mode)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        try:
            os.close(read_end)
            if os.geteuid() == 0:
                os.setgroups([])
                os.setgid(65534)
                os.setuid(65534)
            blobs, sink = scan(*paths)
            payload = {"blobs": [[b] for b in blobs], "errors": [list(e) for e in sink.errors]}
        except BaseException:
            payload = {"crash": [[traceback.format_exc()]]}
        os.write(write_end, json.dumps(payload).encode())
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        data = pipe.read()
    os.waitpid(pid, 0)
    result: dict[str, list[list[str | None]]] = json.loads(data)
    assert "crash" not in result, result
    return result


def test_unreadable_file_and_directory_are_errors(objs: Path, world_dir: Path) -> None:
    shutil.copy(objs / "one.o", world_dir / "secret.o")
    shutil.copy(objs / "two.o", world_dir / "ok.o")
    (world_dir / "locked").mkdir()
    shutil.copy(objs / "two.o", world_dir / "locked" / "x.o")
    (world_dir / "secret.o").chmod(0)
    (world_dir / "locked").chmod(0)
    result = _scan_unprivileged([world_dir / "secret.o", world_dir / "locked", world_dir / "ok.o"])
    assert result["blobs"] == [[f"{world_dir}/ok.o"]]
    assert result["errors"] == [
        [f"{world_dir}/secret.o", None, "cannot read: Permission denied"],
        [f"{world_dir}/locked", None, "cannot list directory: Permission denied"],
    ]


# End to end through the CLI: exit status 2, one stderr line per problem, other inputs still scanned.


@pytest.fixture(scope="module")
def broken(objs: Path) -> dict[str, Path]:
    two = header_offsets(objs / "good.a")["two.o"]
    raw = (objs / "one.o").read_bytes()
    shoff_outside = bytearray(raw)
    shoff_outside[0x28:0x30] = (len(raw) + 0x10000).to_bytes(8, "little")  # e_shoff
    paths = {
        "lying": patched(objs, "cli_lying.a", two + SIZE_FIELD.start, b"999999999 "),
        "short_elf": objs / "short.o",
        "shoff": objs / "shoff.o",
        "missing": objs / "missing.o",
    }
    paths["short_elf"].write_bytes(raw[:30])
    paths["shoff"].write_bytes(bytes(shoff_outside))
    return paths


def test_cli_reports_each_bad_input_on_one_line_and_exits_2(objs: Path, broken: dict[str, Path]) -> None:
    inputs = [broken["lying"], broken["short_elf"], objs / "leaf.o", broken["shoff"], broken["missing"]]
    status, out, err = run_cli(inputs)
    assert status == 2
    assert "Traceback" not in out + err
    problems = [line for line in err.splitlines() if line.startswith("redzone-check: error:")]
    assert len(problems) == 4, err
    assert problems[0].startswith(f"redzone-check: error: {broken['lying']}(two.o): member header at offset")
    assert "claims 999999999 bytes" in problems[0]
    assert problems[1].startswith(f"redzone-check: error: {broken['short_elf']}: ")
    assert problems[2].startswith(f"redzone-check: error: {broken['shoff']}: ")
    assert problems[3] == f"redzone-check: error: {broken['missing']}: cannot read: No such file or directory"
    assert "leaf" in out and "RZ001" in out  # the good object after the bad ones was still analysed


def test_cli_json_lists_errors_and_keeps_scanning(objs: Path, broken: dict[str, Path]) -> None:
    status, doc = scan_json([broken["lying"], broken["shoff"], objs / "leaf.o"])
    assert status == 2
    assert [(e["path"], e["member"]) for e in doc["errors"]] == [
        (str(broken["lying"]), "two.o"),
        (str(broken["shoff"]), None),
    ]
    assert [f["function"] for f in doc["findings"]] == ["leaf"]
    assert doc["summary"]["objects"] == 3  # one.o and the long-named copy from the archive, then leaf.o


def test_cli_archive_errors_missing_files_and_fifos_do_not_stop_the_scan(
    objs: Path, broken: dict[str, Path], tmp_path: Path
) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    status, out, err = run_cli([broken["lying"], fifo, broken["missing"], objs / "leaf.o"])
    assert status == 2
    assert "Traceback" not in out + err
    problems = [line for line in err.splitlines() if line.startswith("redzone-check: error:")]
    assert problems == [
        f"redzone-check: error: {broken['lying']}(two.o): member header at offset "
        f"{header_offsets(objs / 'good.a')['two.o']:#x} claims 999999999 bytes but only "
        f"{broken['lying'].stat().st_size - header_offsets(objs / 'good.a')['two.o'] - 60} remain",
        f"redzone-check: error: {fifo}: cannot read: not a regular file (named pipe)",
        f"redzone-check: error: {broken['missing']}: cannot read: No such file or directory",
    ]
    assert f"{objs}/leaf.o" in out and "RZ001" in out  # the good object after the bad ones was analysed


def test_cli_skips_non_elf_and_empty_inputs_without_an_error(objs: Path, tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello\n")
    (tmp_path / "empty.o").write_bytes(b"")
    status, doc = scan_json([tmp_path / "notes.txt", tmp_path / "empty.o", objs / "one.o"])
    assert status == 0 and doc["errors"] == []
    assert [(s["path"], s["kind"]) for s in doc["skipped"]] == [
        (f"{tmp_path}/notes.txt", "not-elf"),
        (f"{tmp_path}/empty.o", "empty"),
    ]


def test_unprivileged_helper_really_drops_root(world_dir: Path) -> None:
    (world_dir / "secret.o").write_bytes(b"\x7fELF")
    (world_dir / "secret.o").chmod(0)
    assert stat.S_IMODE((world_dir / "secret.o").stat().st_mode) == 0
    assert _scan_unprivileged([world_dir / "secret.o"])["errors"] != []


def test_thin_archive_that_contains_itself_stops_at_the_nesting_limit(tmp_path: Path) -> None:
    def header(name: bytes, size: int) -> bytes:
        return name.ljust(16) + b"0".ljust(32) + str(size).encode().ljust(10) + b"`\n"

    table = b"self.a/\n"
    path = tmp_path / "self.a"
    path.write_bytes(b"!<thin>\n" + header(b"//", len(table)) + table + header(b"/0", 100))
    blobs, sink = scan(path)
    assert blobs == []
    nested = "self.a(" * 7 + "self.a" + ")" * 7
    assert sink.errors == [(str(path), nested, "archives nested more than 8 deep")]


def test_thin_archive_into_a_damaged_archive_keeps_the_intact_members(objs: Path, tmp_path: Path) -> None:
    for name in ("one.o", "two.o"):
        shutil.copy(objs / name, tmp_path / name)
    run(["ar", "rcS", "normal.a", "one.o", "two.o"], cwd=tmp_path)
    run(["ar", "rcT", "outer.a", "normal.a"], cwd=tmp_path)
    two = header_offsets(tmp_path / "normal.a")["two.o"]
    normal = tmp_path / "normal.a"
    normal.write_bytes(normal.read_bytes()[: two + 60 + 4])
    blobs, sink = scan(tmp_path / "outer.a")
    assert blobs == [f"{tmp_path}/outer.a(normal.a(one.o))"]
    size = (objs / "two.o").stat().st_size
    message = f"thin archive points into {normal}: member header at offset {two:#x} claims {size} bytes"
    message += " but only 4 remain"
    assert sink.errors == [(f"{tmp_path}/outer.a", "normal.a", message)]
    normal.unlink()
    blobs, sink = scan(tmp_path / "outer.a")
    assert blobs == []
    assert (
        sink.errors
        == [
            (
                f"{tmp_path}/outer.a",
                "normal.a",
                f"thin archive points into {normal}: No such file or directory",
            )
        ]
        * 2
    )
