"""The result cache: a re-run reuses analyses, damaged entries are redone, and it can be turned off."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import require_tool, run, run_cli

import redzone_check.workers
from redzone_check.cache import LAYOUT, ResultCache, salt
from redzone_check.options import ScanOptions
from redzone_check.scan import scan
from redzone_check.workers import Analysed

LEAF = """
long leaf(long a, long b) {
    volatile long spill[4] = {a, b, a + b, a - b};
    return spill[0] + spill[3];
}
"""  # gcc -O2 keeps the volatile array below %rsp in a leaf: one RZ001 finding


def _entries(cache_dir: Path) -> list[Path]:
    return sorted(p for p in cache_dir.rglob("*") if p.is_file() and not p.name.startswith(".tmp-"))


@pytest.fixture
def leaf(compile_c: Callable[..., Path]) -> Path:
    return compile_c(LEAF, name="leaf", flags=("-O2",))


def _options(cache_dir: Path, **extra: object) -> ScanOptions:
    return ScanOptions(jobs=1, cache_dir=str(cache_dir), **extra)  # type: ignore[arg-type]


def _no_analysis(*_args: object) -> Analysed:
    raise AssertionError("analysed again although the cache holds the result")


def test_rerun_takes_the_analysis_from_the_cache(
    leaf: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache_dir = tmp_path / "cache"
    first = scan([str(leaf)], _options(cache_dir))
    assert [f.function for f in first.findings] == ["leaf"]
    assert len(_entries(cache_dir)) == 1
    monkeypatch.setattr(redzone_check.workers, "analyse", _no_analysis)
    assert scan([str(leaf)], _options(cache_dir)) == first


def test_changed_bytes_or_prefilter_option_miss_the_cache(
    leaf: Path, compile_c: Callable[..., Path], tmp_path: Path
) -> None:
    cache_dir = tmp_path / "cache"
    scan([str(leaf)], _options(cache_dir))
    scan([str(leaf)], _options(cache_dir, prefilter=False))
    fixed = compile_c(LEAF, name="fixed", flags=("-O2", "-mno-red-zone"))
    assert scan([str(fixed)], _options(cache_dir)).findings == ()
    assert len(_entries(cache_dir)) == 3


def test_damaged_entry_is_ignored_and_rewritten(leaf: Path, tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    first = scan([str(leaf)], _options(cache_dir))
    (entry,) = _entries(cache_dir)
    good = entry.read_bytes()
    for damage in (good[:10], good[:-1] + bytes([good[-1] ^ 1]), b""):
        entry.write_bytes(damage)
        assert scan([str(leaf)], _options(cache_dir)) == first
        assert entry.read_bytes() == good


def test_entry_of_another_shape_is_recomputed(leaf: Path, tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    first = scan([str(leaf)], _options(cache_dir))
    cache = ResultCache.open(cache_dir, salt(("prefilter",)))
    assert cache is not None
    (entry,) = _entries(cache_dir)
    cache.put(entry.parent.name + entry.name, {"not": "an analysis"})
    assert scan([str(leaf)], _options(cache_dir)) == first


def test_cache_in_a_directory_others_can_write_is_not_used(tmp_path: Path) -> None:
    (tmp_path / LAYOUT).mkdir()
    os.chmod(tmp_path / LAYOUT, 0o777)
    assert ResultCache.open(tmp_path, b"salt") is None
    os.chmod(tmp_path / LAYOUT, 0o700)
    assert ResultCache.open(tmp_path, b"salt") is not None


def test_prune_keeps_the_newest_entries_within_the_bound(tmp_path: Path) -> None:
    cache = ResultCache.open(tmp_path, b"salt")
    assert cache is not None
    keys = [cache.key(bytes([i])) for i in range(6)]
    for age, key in enumerate(keys):
        cache.put(key, b"x" * 1000)
        path = cache.root / key[:2] / key[2:]
        os.utime(path, (1000 + age, 1000 + age))
    cache.max_bytes = 3 * 1100
    assert cache.prune() == 3
    assert [cache.get(k) is not None for k in keys] == [False] * 3 + [True] * 3


def test_no_cache_flag_and_environment_write_nothing(
    leaf: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    cache_dir = tmp_path / "xdg" / "redzone-check"
    assert run_cli([leaf, "--no-cache"], cwd=tmp_path)[0] == 1
    monkeypatch.setenv("REDZONE_CHECK_NO_CACHE", "1")
    assert run_cli([leaf], cwd=tmp_path)[0] == 1
    assert not _entries(cache_dir)
    monkeypatch.delenv("REDZONE_CHECK_NO_CACHE")
    status, out, _ = run_cli([leaf], cwd=tmp_path)
    assert status == 1 and "leaf" in out
    assert len(_entries(cache_dir)) == 1


def _no_lines(*_args: object) -> object:
    raise AssertionError("call-site lines read again although the cache holds them")


def test_rerun_takes_the_ocaml_call_site_lines_from_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # OCaml's runtime and standard library: red-zone C in libasmrun.a is reached from stdlib code,
    # whose call-site lines are read from its DWARF.
    require_tool("ocamlopt")
    where = Path(run(["ocamlopt", "-where"]).stdout.strip())
    paths = [str(where / "libasmrun.a"), str(where / "stdlib.a")]
    options = _options(tmp_path / "cache", source_root=str(tmp_path))
    read: list[object] = []
    real = redzone_check.workers.with_site_lines
    monkeypatch.setattr(redzone_check.workers, "with_site_lines", lambda *a: read.append(a) or real(*a))
    first = scan(paths, options)
    assert read, "the first scan should read call-site lines"
    assert any(r.line for f in first.findings for r in f.reached_from)
    monkeypatch.setattr(redzone_check.workers, "analyse", _no_analysis)
    monkeypatch.setattr(redzone_check.workers, "with_site_lines", _no_lines)
    assert scan(paths, options) == first
