"""Repository-relative report paths: --path-map, dune's _build/<context>/, `../`, symlinked roots."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from redzone_check.attribution.paths import PathMapper


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/repo/src/stub.c", "src/stub.c"),
        ("/repo/_build/default/src/stub.c", "src/stub.c"),
        ("/repo/_build/cross-x86_64/lib/ffi.c", "lib/ffi.c"),
        ("/repo/build/../src/a.c", "src/a.c"),  # out-of-tree build dir, as DWARF joins it
        ("/repo/./src//b.c", "src/b.c"),
        ("src/c.c", "src/c.c"),  # no DW_AT_comp_dir: relative to the root
        ("_build/default/bin/main.ml", "bin/main.ml"),
        ("/usr/include/stdio.h", "/usr/include/stdio.h"),
        ("/repo-other/x.c", "/repo-other/x.c"),  # a prefix of the name is not a parent directory
        ("/repo/../elsewhere/y.c", "/elsewhere/y.c"),
        ("/repo", "."),
    ],
)
def test_source_paths_relative_to_the_root(path: str, expected: str) -> None:
    assert PathMapper("/repo").source(path) == expected


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/build/pkg-1.0/src/a.c", "src/a.c"),
        ("/build/pkg-1.0/vendor/zlib/inflate.c", "third_party/zlib/inflate.c"),  # longest OLD wins
        ("/build/pkg-1.0-extra/a.c", "/build/pkg-1.0-extra/a.c"),  # only whole path components match
        ("/ci/workspace/_build/default/src/stub.c", "src/stub.c"),  # map first, then dune's prefix
        ("/other/x.c", "/other/x.c"),
    ],
)
def test_path_maps_rewrite_build_prefixes(path: str, expected: str) -> None:
    mapper = PathMapper(
        "/repo",
        [
            ("/build/pkg-1.0", "/repo"),
            ("/build/pkg-1.0/vendor/", "/repo/third_party/"),
            ("/ci/workspace", "/repo"),
        ],
    )
    assert mapper.source(path) == expected


def test_relative_map_target_is_taken_from_the_root(tmp_path: Path) -> None:
    mapper = PathMapper(str(tmp_path), [("/build/pkg", "lib")])
    assert mapper.source("/build/pkg/x.c") == "lib/x.c"


def test_binary_paths_relative_to_the_root_from_any_working_directory(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    archive = tmp_path / "out" / "libstub.a"
    archive.write_bytes(b"!<arch>\n")
    mapper = PathMapper(str(tmp_path))
    assert mapper.binary(str(archive)) == "out/libstub.a"
    old = os.getcwd()
    try:
        os.chdir(tmp_path / "out")
        assert PathMapper("..").binary("libstub.a") == "out/libstub.a"
    finally:
        os.chdir(old)
    assert mapper.binary("/usr/lib/libm.a") == "/usr/lib/libm.a"


def test_root_behind_a_symlink_matches_either_spelling(tmp_path: Path) -> None:
    real = tmp_path / "real"
    (real / "src").mkdir(parents=True)
    (real / "src" / "a.c").write_text("")
    link = tmp_path / "link"
    link.symlink_to(real)
    mapper = PathMapper(str(link))
    assert mapper.source(str(real / "src" / "a.c")) == "src/a.c"
    assert mapper.source(str(link / "src" / "a.c")) == "src/a.c"
