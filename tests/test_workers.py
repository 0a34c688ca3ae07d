"""Workers read objects where the walk found them, batches stay small, and the progress line behaves."""

from __future__ import annotations

import io
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import require_tool, run

import redzone_check.scan
from redzone_check.inputs import Blob, Where, _Inputs, iter_blobs
from redzone_check.options import ScanOptions
from redzone_check.progress import Progress, render
from redzone_check.scan import _batches, scan
from redzone_check.workers import Item, Task, Worker

UNITS = {
    "a": "long a(long x) { volatile long v[2] = {x, x}; return v[0] + v[1]; }",
    "b": "int b(int x) { return x * 3; }",
    "c": "long c(long x) { volatile long w[3] = {x, 1, 2}; return w[2]; }",
}


@pytest.fixture
def archive(compile_c: Callable[..., Path], tmp_path: Path) -> Path:
    require_tool("ar")
    objects = [compile_c(src, name=name) for name, src in UNITS.items()]
    out = tmp_path / "libabc.a"
    run(["ar", "rcs", out, *objects])
    return out


def _tasks(paths: list[str]) -> list[Item]:
    """What a scan's walk hands its workers for these inputs."""
    return [(i, b.path, b.member, b.where) for i, b in enumerate(iter_blobs(paths, _Sink()))]


def test_worker_reads_objects_where_the_walk_found_them_in_any_order(
    archive: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    items = _tasks([str(archive)])
    assert [(m, w.offset) for _, _, m, w in items] == [(m, o + 60) for m, o in header_offsets(archive)]

    def no_walk(*args: object) -> Iterator[Blob]:
        raise AssertionError("a worker reads objects where the walk found them, without walking")

    monkeypatch.setattr(_Inputs, "paths", no_walk)
    worker = Worker(ScanOptions(jobs=1, use_cache=False), None)
    later = worker.run(Task((items[2],)))
    earlier = worker.run(Task((items[0], items[1])))
    assert [r.index for r in later + earlier] == [2, 0, 1]
    assert [r.analysed for r in later + earlier] == [True, True, True]
    assert [f.function for r in later + earlier for f in r.findings] == ["c", "a"]


def test_where_covers_nested_thin_and_symlinked_inputs(archive: Path, tmp_path: Path) -> None:
    # A symlink to the first archive is read once; a thin archive's members are read from their
    # own files; an archive inside an archive is read at its offset in the outer file.
    (tmp_path / "again.a").symlink_to(archive)
    members = tmp_path / "members"
    members.mkdir()
    run(["ar", "x", archive], cwd=members)
    thin = tmp_path / "libthin.a"
    run(["ar", "rcT", thin.name, *(f"members/{n}.o" for n in UNITS)], cwd=tmp_path)
    outer = tmp_path / "outer.a"
    run(["ar", "rc", outer, archive])
    paths = [str(archive), str(tmp_path / "again.a"), str(thin), str(outer)]
    items = _tasks(paths)
    assert [(p, m) for _, p, m, _ in items] == [
        *((str(archive), f"{n}.o") for n in UNITS),
        *((str(thin), f"members/{n}.o") for n in UNITS),
        *((str(outer), f"libabc.a({n}.o)") for n in UNITS),
    ]
    assert {w.path for _, _, _, w in items} == {str(archive), str(outer)} | {
        str(members / f"{n}.o") for n in UNITS
    }
    results = Worker(ScanOptions(jobs=1, use_cache=False), None).run(Task(tuple(reversed(items))))
    assert all(r.analysed and not r.errors for r in results)
    assert [f.function for r in results for f in r.findings] == ["c", "a"] * 3


class _Sink:
    def skip(self, path: str, member: str | None, reason: str, kind: str) -> None:
        pass

    def error(self, path: str, member: str | None, message: str) -> None:
        raise AssertionError(message)


def header_offsets(archive: Path) -> list[tuple[str, int]]:
    """(member, offset of its 60-byte header), from binutils: `ar tvO` prints each member's offset."""
    listing = subprocess.run(["ar", "tO", str(archive)], capture_output=True, text=True, check=True)
    found = []
    for line in listing.stdout.splitlines():
        name, offset = line.rsplit(" ", 1)
        found.append((name, int(offset, 16) - 60))
    return found


def test_object_whose_file_changed_since_the_walk_is_an_error(archive: Path, tmp_path: Path) -> None:
    items = _tasks([str(archive)])
    worker = Worker(ScanOptions(jobs=1, use_cache=False), None)
    assert not worker.run(Task((items[0],)))[0].errors
    # Rewritten in place (same inode, new size), replaced by another file, and gone.
    with archive.open("ab") as grown:
        grown.write(b"\n")
    replaced = tmp_path / "libabc.a.new"
    replaced.write_bytes(archive.read_bytes())
    rewritten = worker.run(Task((items[1],)))
    replaced.replace(archive)
    renamed = worker.run(Task((items[2],)))
    archive.unlink()
    missing = worker.run(Task((items[0],)))
    for result in rewritten + renamed + missing:
        assert [e.message for e in result.errors] == ["changed while it was being scanned"]
        assert not result.analysed


def test_batches_are_bounded_in_objects_and_bytes() -> None:
    def where(size: int) -> Where:
        return Where("lib.a", (0, 0, 0, 0), 0, size)

    items = [(i, "lib.a", f"m{i}.o", where(1000)) for i in range(150)]
    sizes = [len(t.items) for t in _batches(items)]
    assert sizes == [64, 64, 22]
    big = [
        (0, "lib.a", "huge.o", where(10**7)),
        (1, "lib.a", "small.o", where(10)),
        (2, "lib.a", "next.o", where(10)),
    ]
    assert [len(t.items) for t in _batches(big)] == [1, 2]
    assert all(t.mode == "calls" for t in _batches(items, "calls"))


def test_parallel_scan_computes_ocaml_reach_like_a_sequential_one(monkeypatch: pytest.MonkeyPatch) -> None:
    require_tool("ocamlopt")
    where = Path(
        subprocess.run(["ocamlopt", "-where"], capture_output=True, text=True, check=True).stdout.strip()
    )
    paths = [str(where / "libasmrun.a"), str(where / "stdlib.a")]
    monkeypatch.setattr(redzone_check.scan, "PARALLEL_MIN_BYTES", 0)
    sequential = scan(paths, ScanOptions(jobs=1, use_cache=False))
    parallel = scan(paths, ScanOptions(jobs=2, use_cache=False))
    assert parallel == sequential
    md5 = next(f for f in parallel.findings if f.function == "caml_MD5Transform")
    assert "Stdlib.Digest.string" in [r.function for r in md5.reached_from]


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_progress_waits_for_a_long_scan_and_erases_itself() -> None:
    stream, clock = io.StringIO(), _Clock()
    bar = Progress(True, stream, delay=1.0, clock=clock)
    bar.update(10, 100, 1)
    assert stream.getvalue() == ""
    clock.now = 1.5
    bar.update(50, 100, 5)
    assert "[##############--------------]  50%  5 objects" in stream.getvalue()
    bar.close()
    assert stream.getvalue().endswith("\r\x1b[K")


def test_progress_disabled_writes_nothing() -> None:
    stream, clock = io.StringIO(), _Clock()
    bar = Progress(False, stream, delay=0.0, clock=clock)
    clock.now = 5.0
    bar.update(50, 100, 5)
    bar.close()
    assert stream.getvalue() == ""


def test_progress_line_survives_an_unknown_total() -> None:
    assert render(0, 0, 0, 0.0).startswith("redzone-check [----------------------------]   0%")
