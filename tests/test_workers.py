"""Workers find objects by their place in the walk, batches stay small, and the progress line behaves."""

from __future__ import annotations

import io
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import require_tool, run

import redzone_check.scan
from redzone_check.inputs import Blob, _Inputs, iter_blobs
from redzone_check.options import ScanOptions
from redzone_check.progress import Progress, render
from redzone_check.scan import _batches, scan
from redzone_check.workers import Task, Worker

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


def test_worker_walks_again_when_asked_for_an_earlier_object(archive: Path) -> None:
    worker = Worker([str(archive)], ScanOptions(jobs=1, use_cache=False), None)
    later = worker.run(Task(((2, str(archive), "c.o"),)))
    earlier = worker.run(Task(((0, str(archive), "a.o"), (1, str(archive), "b.o"))))
    assert [r.index for r in later + earlier] == [2, 0, 1]
    assert [r.analysed for r in later + earlier] == [True, True, True]
    assert [f.function for r in later + earlier for f in r.findings] == ["c", "a"]


def test_going_back_resumes_at_the_input_that_holds_the_object(
    archive: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A symlink to the first archive is read once (skipped the second time), so resuming at the
    # third input must remember that the first was seen, or the numbers would shift.
    (tmp_path / "again.a").symlink_to(archive)
    other = tmp_path / "other" / "libabc.a"
    other.parent.mkdir()
    other.write_bytes(archive.read_bytes())
    paths = [str(archive), str(tmp_path / "again.a"), str(other)]
    walked = [(b.path, b.member) for b in iter_blobs(paths, _Sink())]
    assert walked == [(p, m) for p in (str(archive), str(other)) for m in ("a.o", "b.o", "c.o")]

    opened: list[str] = []
    real_file = _Inputs._file

    def counted(self: _Inputs, path: str, explicit: bool, depth: int) -> Iterator[Blob]:
        opened.append(path)
        return real_file(self, path, explicit, depth)

    monkeypatch.setattr(_Inputs, "_file", counted)
    worker = Worker(paths, ScanOptions(jobs=1, use_cache=False), None)
    last = worker.run(Task(((5, str(other), "c.o"),)))
    opened.clear()
    back = worker.run(Task(((3, str(other), "a.o"), (4, str(other), "b.o"))))
    assert opened == [str(other)], "the walk resumed at the third input, not at the first"
    first = worker.run(Task(((0, str(archive), "a.o"),)))
    assert [r.index for r in last + back + first] == [5, 3, 4, 0]
    assert all(r.analysed and not r.errors for r in last + back + first)
    assert [f.function for r in last + back + first for f in r.findings] == ["c", "a", "a"]


class _Sink:
    def skip(self, path: str, member: str | None, reason: str, kind: str) -> None:
        pass

    def error(self, path: str, member: str | None, message: str) -> None:
        raise AssertionError(message)


def test_object_that_is_not_where_the_walk_put_it_is_an_error(archive: Path) -> None:
    worker = Worker([str(archive)], ScanOptions(jobs=1, use_cache=False), None)
    (moved, missing) = worker.run(Task(((1, str(archive), "a.o"), (7, str(archive), "z.o"))))
    assert [e.message for e in moved.errors + missing.errors] == ["changed while it was being scanned"] * 2
    assert not moved.analysed and not missing.analysed


def test_batches_are_bounded_in_objects_and_bytes() -> None:
    items = [(i, "lib.a", f"m{i}.o", 1000) for i in range(150)]
    sizes = [len(t.items) for t in _batches(items)]
    assert sizes == [64, 64, 22]
    big = [(0, "lib.a", "huge.o", 10**7), (1, "lib.a", "small.o", 10), (2, "lib.a", "next.o", 10)]
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
