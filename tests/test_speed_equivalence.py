"""What makes scans fast never changes what they find.

On real archives of this machine (libgcc.a, OCaml's runtime libasmrun.a and its stdlib.a): the
sound prefilter (`--no-prefilter` turns it off) and parallel workers (`--jobs`) give byte-identical
JSON, summary counts and input problems included.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import require_tool, scan_json

import redzone_check.scan


def _libgcc() -> Path:
    require_tool("gcc")
    out = subprocess.run(["gcc", "-print-libgcc-file-name"], capture_output=True, text=True, check=True)
    return Path(out.stdout.strip())


def _ocaml_lib(name: str) -> Callable[[], Path]:
    def find() -> Path:
        require_tool("ocamlopt")
        out = subprocess.run(["ocamlopt", "-where"], capture_output=True, text=True, check=True)
        return Path(out.stdout.strip()) / name

    return find


ARCHIVES = {"libgcc.a": _libgcc, "libasmrun.a": _ocaml_lib("libasmrun.a"), "stdlib.a": _ocaml_lib("stdlib.a")}


@pytest.fixture(autouse=True)
def _parallel_even_for_small_inputs(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # Inputs below PARALLEL_MIN_BYTES are scanned in-process; these tests must fork the workers.
    monkeypatch.setattr(redzone_check.scan, "PARALLEL_MIN_BYTES", 0)
    monkeypatch.setattr(redzone_check.scan, "BATCH_OBJECTS", 8)
    yield


def _scan(archive: Path, *flags: str) -> dict[str, Any]:
    _status, doc = scan_json([str(archive), *flags], cwd=archive.parent)
    assert doc["summary"]["objects"] > 10, "too small to exercise batching"
    return doc


@pytest.mark.parametrize("name", sorted(ARCHIVES))
def test_prefilter_changes_no_result(name: str) -> None:
    archive = ARCHIVES[name]()
    assert archive.is_file(), archive
    filtered = _scan(archive, "--jobs", "1")
    unfiltered = _scan(archive, "--jobs", "1", "--no-prefilter")
    assert filtered == unfiltered


@pytest.mark.parametrize("name", sorted(ARCHIVES))
def test_parallel_workers_give_the_sequential_result(name: str) -> None:
    archive = ARCHIVES[name]()
    sequential = _scan(archive, "--jobs", "1")
    parallel = _scan(archive, "--jobs", "2")
    assert parallel == sequential
    if name != "stdlib.a":  # OCaml code does not use the red zone; the C archives do
        assert sequential["findings"]


def test_parallel_scan_of_several_inputs_keeps_their_order_and_problems(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("not an object\n")
    inputs = [
        str(ARCHIVES["libasmrun.a"]()),
        str(text),
        str(ARCHIVES["libgcc.a"]()),
        str(tmp_path / "gone.o"),
    ]
    _s1, sequential = scan_json([*inputs, "--jobs", "1"], cwd=tmp_path)
    _s2, parallel = scan_json([*inputs, "--jobs", "2"], cwd=tmp_path)
    assert parallel == sequential
    assert [s["reason"] for s in parallel["skipped"]][:1] == ["not an ELF file (text)"]
    assert [e["path"] for e in parallel["errors"]] == ["gone.o"]
    paths = [f["path"] for f in parallel["findings"]]
    assert any("libasmrun" in p for p in paths) and any("libgcc" in p for p in paths)
