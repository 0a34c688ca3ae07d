"""Byte-identical objects of a run are analysed once, and their copies report what they reported before.

The oracle is the same engine with the de-duplication turned off: `content_key` made unique per
object, so every copy is analysed as an object of its own, as it was before copies were recognised.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import shutil
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import require_tool, run, scan_json

import redzone_check.scan
import redzone_check.workers
from redzone_check.callgraph import CallGraph
from redzone_check.calls import ObjectCalls, ObjectSymbols
from redzone_check.options import ScanOptions
from redzone_check.scan import scan
from redzone_check.workers import Analysed

# gcc -O2 keeps the volatile array of a leaf below %rsp: one RZ001 finding in `helper`.
HELPER = "long helper(long x) { volatile long v[2] = {x, x + 1}; return v[0] + v[1]; }"
CLEAN = "int triple(int x) { return x * 3; }"
OTHER = "int other(int x) { return x ^ 5; }"
# Two different objects that the dup.a archive stores under one member name (`ar q`).
STUB_A = "long helper(long); long my_stub(long x) { return helper(x) * 2; }"
STUB_B = "int my_other(int x) { return x - 1; }"
I386 = ".text\n.globl f32\nf32:\n  pushl %ebp\n  movl %esp, %ebp\n  popl %ebp\n  ret\n"
# ELF magic, 64-bit, little-endian, then nothing: "corrupt ELF: truncated ELF header".
CORRUPT = b"\x7fELF\x02\x01\x01" + bytes(23)
# Makes the run compute which `external` reaches helper, so copies go through the call graph's reads too.
NATIVE_ML = 'external my_stub : int -> int = "my_stub"\n'


@pytest.fixture
def tree(tmp_path: Path, compile_c: Callable[..., Path], assemble: Callable[..., Path]) -> list[str]:
    """Archives and files holding byte-identical copies of each kind of object; the paths to scan.

    liba.a: helper.o (a finding), clean.o, i386.o (not x86-64), corrupt.o, notes.txt (not ELF).
    libb.a: the same bytes as helper.o, clean.o (renamed clean2.o), i386.o, corrupt.o, and other.o.
    liba-copy.a is a copy of liba.a and liba-link.a a symlink to it; clean-copy.o a copy of clean.o.
    earlier.a holds STUB_A as one.o; dup.a holds STUB_A's bytes again and then STUB_B, both as one.o.
    """
    require_tool("ar")
    objs = tmp_path / "objs"
    build = tmp_path / "build"
    build.mkdir()
    helper = compile_c(HELPER, name="helper", directory=objs)
    clean = compile_c(CLEAN, name="clean", directory=objs)
    other = compile_c(OTHER, name="other", directory=objs)
    i386 = assemble(I386, name="i386", flags=("--32",))
    corrupt = objs / "corrupt.o"
    corrupt.write_bytes(CORRUPT)
    notes = objs / "notes.txt"
    notes.write_text("not an object\n")
    clean2 = objs / "clean2.o"
    shutil.copyfile(clean, clean2)
    run(["ar", "rc", build / "liba.a", helper, clean, i386, corrupt, notes])
    run(["ar", "rc", build / "libb.a", other, helper, clean2, i386, corrupt])
    shutil.copyfile(build / "liba.a", build / "liba-copy.a")
    os.symlink("liba.a", build / "liba-link.a")
    shutil.copyfile(clean, build / "clean-copy.o")
    one_a = compile_c(STUB_A, name="one", directory=objs / "a")
    one_b = compile_c(STUB_B, name="one", directory=objs / "b")
    run(["ar", "rc", build / "earlier.a", one_a])
    run(["ar", "q", build / "dup.a", one_a])
    run(["ar", "q", build / "dup.a", one_b])
    (tmp_path / "native.ml").write_text(NATIVE_ML)
    names = ["liba.a", "libb.a", "liba-copy.a", "liba-link.a", "clean-copy.o", "earlier.a", "dup.a"]
    return [f"build/{name}" for name in names]


def _no_dedup(monkeypatch: pytest.MonkeyPatch) -> None:
    counter = itertools.count()
    monkeypatch.setattr(redzone_check.scan, "content_key", lambda data: next(counter).to_bytes(8, "big"))


def _scan(paths: list[str], cwd: Path, *args: str) -> dict[str, Any]:
    _status, doc = scan_json([*args, *paths], cwd=cwd)
    return doc


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_copies_report_what_a_scan_analysing_every_object_reports(
    tree: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, jobs: str
) -> None:
    monkeypatch.setattr(redzone_check.scan, "PARALLEL_MIN_BYTES", 0)
    pids = tmp_path / "pids"
    analyse = redzone_check.workers.analyse

    def recording(data: bytes | memoryview, prefilter: bool) -> Analysed:
        with pids.open("a") as out:  # from forked workers too
            out.write(f"{os.getpid()}\n")
        return analyse(data, prefilter)

    monkeypatch.setattr(redzone_check.workers, "analyse", recording)
    deduplicated = _scan(tree, tmp_path, "--jobs", jobs)
    _no_dedup(monkeypatch)
    plain = _scan(tree, tmp_path, "--jobs", jobs)
    assert deduplicated == plain
    if jobs == "2":
        # Copies whose originals have findings or errors are analysed by the workers too.
        assert str(os.getpid()) not in pids.read_text().split()

    places = {(f["path"], f["member"], f["function"]) for f in deduplicated["findings"]}
    assert {
        ("build/liba.a", "helper.o", "helper"),
        ("build/libb.a", "helper.o", "helper"),
        ("build/liba-copy.a", "helper.o", "helper"),
    } <= places
    # The symlink is liba.a itself, read once as before; the copies report under their own names.
    assert not any(path == "build/liba-link.a" for path, _, _ in places)
    skipped = {(s["path"], s["member"], s["kind"]) for s in deduplicated["skipped"]}
    for archive in ("build/liba.a", "build/libb.a", "build/liba-copy.a"):
        assert (archive, "i386.o", "not-applicable") in skipped
    errors = [(e["path"], e["member"]) for e in deduplicated["errors"]]
    assert errors == [(a, "corrupt.o") for a in ("build/liba.a", "build/libb.a", "build/liba-copy.a")]
    # liba.a's 2, libb.a's 3, liba-copy.a's 2, clean-copy.o, earlier.a's one.o and dup.a's two.
    assert deduplicated["summary"]["objects"] == 11
    reach = [f["reached_from"] for f in deduplicated["findings"]]
    assert all(r and r[0]["kind"] == "external" for r in reach)


def test_each_distinct_object_is_analysed_once(
    tree: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    analysed: Counter[str] = Counter()
    analyse = redzone_check.workers.analyse

    def counting(data: bytes | memoryview, prefilter: bool) -> Analysed:
        analysed[hashlib.sha256(data).hexdigest()] += 1
        return analyse(data, prefilter)

    monkeypatch.setattr(redzone_check.workers, "analyse", counting)
    _scan(tree, tmp_path, "--jobs", "1")
    objs = tmp_path / "objs"

    def key(path: Path) -> str:
        return hashlib.sha256(path.read_bytes()).hexdigest()

    # Findings are attributed with their own path, and an error may be the original's own, so
    # those copies are analysed again; every other copy takes its original's result.
    assert analysed == {
        key(objs / "helper.o"): 3,
        key(objs / "corrupt.o"): 3,
        key(objs / "clean.o"): 1,
        key(tmp_path / "i386.o"): 1,
        key(objs / "other.o"): 1,
        key(objs / "a" / "one.o"): 1,
        key(objs / "b" / "one.o"): 1,
    }


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_call_graph_gets_every_copy_in_walk_order(
    tree: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, jobs: str
) -> None:
    monkeypatch.setattr(redzone_check.scan, "PARALLEL_MIN_BYTES", 0)
    added: list[tuple[str, tuple[str, ...]]] = []
    add_symbols = CallGraph.add_symbols

    def recording(graph: CallGraph, key: str, symbols: ObjectSymbols) -> None:
        added.append((key, tuple(name for name, _ in symbols.defined)))
        add_symbols(graph, key, symbols)

    monkeypatch.setattr(CallGraph, "add_symbols", recording)
    _scan(tree, tmp_path, "--jobs", jobs)
    deduplicated = list(added)
    added.clear()
    _no_dedup(monkeypatch)
    _scan(tree, tmp_path, "--jobs", jobs)
    assert deduplicated == added
    # dup.a's first one.o is a copy of earlier.a's, and the second, different one.o replaces it in
    # the graph only if it comes after the copy.
    ones = [names for key, names in deduplicated if key == "build/dup.a(one.o)"]
    assert ones == [("my_stub",), ("my_other",)]
    assert [key for key, _ in deduplicated].count("build/liba-copy.a(clean.o)") == 1


def test_calls_of_a_copy_are_read_from_its_original_once(
    tree: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Scanned in this process (--jobs 1), so every read of calls is seen here.
    read: list[bytes] = []
    calls_of = redzone_check.workers.calls_of

    def recording(data: bytes | memoryview) -> ObjectCalls:
        read.append(hashlib.sha256(data).digest())
        return calls_of(data)

    monkeypatch.setattr(redzone_check.workers, "calls_of", recording)
    deduplicated = _scan(tree, tmp_path, "--jobs", "1")
    once = list(read)
    read.clear()
    _no_dedup(monkeypatch)
    plain = _scan(tree, tmp_path, "--jobs", "1")
    assert deduplicated == plain
    # Without copies known, the bytes of earlier.a's one.o are read again for dup.a's first one.o.
    assert len(set(read)) < len(read)
    assert len(set(once)) == len(once) == len(set(read))


def test_each_copy_gets_its_own_unit_findings_with_require_no_red_zone_flag(
    tmp_path: Path, compile_c: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    require_tool("ar")
    # -g records gcc's switches in DW_AT_producer, without -mno-red-zone: one RZ003 per archive.
    unit = compile_c(CLEAN, name="unit", flags=("-O2", "-g"), directory=tmp_path / "objs")
    run(["ar", "rc", tmp_path / "liba.a", unit])
    shutil.copyfile(tmp_path / "liba.a", tmp_path / "libb.a")
    paths = ["liba.a", "libb.a"]
    deduplicated = _scan(paths, tmp_path, "--require-no-red-zone-flag")
    rules = [(f["rule"], f["path"]) for f in deduplicated["findings"]]
    assert rules == [("RZ003", "liba.a"), ("RZ003", "libb.a")]
    _no_dedup(monkeypatch)
    assert _scan(paths, tmp_path, "--require-no-red-zone-flag") == deduplicated


def test_cached_scans_of_copies_report_what_a_scan_analysing_every_object_reports(
    tree: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    options = ScanOptions(jobs=1, cache_dir=str(tmp_path / "cache"))
    cold = scan(tree, options)
    assert any((tmp_path / "cache").rglob("*"))
    warm = scan(tree, options)
    _no_dedup(monkeypatch)
    assert cold == warm == scan(tree, ScanOptions(jobs=1, use_cache=False))
