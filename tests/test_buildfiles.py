"""The build-file line that sets a C source's flags: dune, make, kbuild, CMake, meson, compile_commands."""

from __future__ import annotations

import json
from pathlib import Path

from data_ocaml.project import HERE

from redzone_check.attribution.buildfiles import locate, source_for_object
from redzone_check.model import BuildLocation


def write(root: Path, relative: str, text: str) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_dune_foreign_stubs_flags_line() -> None:
    loc = locate("src/mystub.c", str(HERE))
    assert loc == BuildLocation("src/dune", 7, "dune", "(flags :standard -O2 -g)")
    assert loc.advice() == "add -mno-red-zone to (flags :standard -O2 -g) in src/dune:7"


def test_dune_stanza_without_flags_points_at_the_stanza_or_an_env_c_flags(tmp_path: Path) -> None:
    write(tmp_path, "lib/dune", "(library\n (name l)\n (foreign_stubs (language c) (names a b)))\n")
    write(tmp_path, "lib/a.c", "")
    loc = locate("lib/a.c", str(tmp_path))
    assert loc is not None and (loc.file, loc.line) == ("lib/dune", 3)
    assert loc.advice().startswith("add (flags :standard -mno-red-zone) to (foreign_stubs")
    write(tmp_path, "dune", "(env\n (_\n  (c_flags (:standard -O3))))\n")
    assert locate("lib/a.c", str(tmp_path)) == BuildLocation("dune", 3, "dune", "(c_flags (:standard -O3))")
    assert locate("lib/other.c", str(tmp_path)) is None


def test_old_style_dune_c_names_and_c_flags(tmp_path: Path) -> None:
    write(tmp_path, "dune", '; stubs\n(library (name l)\n (c_names x y)\n (c_flags (-O2 "-DX=1")))\n')
    assert locate("y.c", str(tmp_path)) == BuildLocation("dune", 4, "dune", '(c_flags (-O2 "-DX=1"))')


def test_makefile_prefers_target_specific_then_plain_assignment(tmp_path: Path) -> None:
    write(
        tmp_path, "Makefile", "CC = gcc\nCFLAGS += -Wall\nCFLAGS = -O2\n\nall: a.o b.o\nb.o: CFLAGS += -O3\n"
    )
    write(tmp_path, "src/a.c", "")
    assert locate("src/a.c", str(tmp_path)) == BuildLocation("Makefile", 3, "make", "CFLAGS = -O2")
    assert locate("b.c", str(tmp_path)) == BuildLocation("Makefile", 6, "make", "b.o: CFLAGS += -O3")


def test_nearest_build_file_upwards_wins_and_kbuild_is_recognised(tmp_path: Path) -> None:
    write(tmp_path, "Makefile", "CFLAGS = -O2\n")
    write(tmp_path, "drivers/Kbuild", "obj-m += d.o\nccflags-y += -DDEBUG\n")
    assert locate("drivers/d.c", str(tmp_path)) == BuildLocation(
        "drivers/Kbuild", 2, "kbuild", "ccflags-y += -DDEBUG"
    )
    write(tmp_path, "other/Makefile", "all:\n\techo\n")  # no flags here: keep looking upwards
    assert locate("other/o.c", str(tmp_path)) == BuildLocation("Makefile", 1, "make", "CFLAGS = -O2")


def test_cmake_target_compile_options_of_the_target_that_builds_the_file(tmp_path: Path) -> None:
    write(
        tmp_path,
        "CMakeLists.txt",
        "project(p C)\nadd_library(core STATIC\n  src/core.c\n  src/util.c)\nadd_library(other other.c)\n"
        "target_compile_options(other PRIVATE -O1)\ntarget_compile_options(core PRIVATE\n  -O2)\n",
    )
    loc = locate("src/util.c", str(tmp_path))
    assert loc == BuildLocation("CMakeLists.txt", 7, "cmake", "target_compile_options(core PRIVATE -O2)")
    write(
        tmp_path, "CMakeLists.txt", 'add_executable(app main.c)\nset(CMAKE_C_FLAGS "${CMAKE_C_FLAGS} -O2")\n'
    )
    loc = locate("main.c", str(tmp_path))
    assert loc is not None and (loc.line, loc.kind) == (2, "cmake")


def test_meson_c_args_of_the_target(tmp_path: Path) -> None:
    write(
        tmp_path,
        "meson.build",
        "project('p', 'c')\nlib = static_library('l',\n  'a.c',\n  c_args : ['-O2'])\n",
    )
    assert locate("a.c", str(tmp_path)) == BuildLocation("meson.build", 4, "meson", "c_args : ['-O2']")


def test_compile_commands_entry_for_the_file(tmp_path: Path) -> None:
    entries = [
        {"directory": str(tmp_path), "command": "gcc -O2 -c b.c", "file": "b.c"},
        {"directory": str(tmp_path / "build"), "command": "gcc -O3 -c ../a.c", "file": "../a.c"},
    ]
    write(tmp_path, "build/compile_commands.json", json.dumps(entries, indent=2))
    loc = locate("a.c", str(tmp_path))
    assert loc == BuildLocation(
        "build/compile_commands.json", 9, "compile_commands", '"command": gcc -O3 -c ../a.c'
    )


def test_source_outside_the_root_or_unbuilt_has_no_location(tmp_path: Path) -> None:
    assert locate("../elsewhere.c", str(tmp_path)) is None
    assert locate("lonely.c", str(tmp_path)) is None


def test_source_for_object_finds_the_single_matching_source(tmp_path: Path) -> None:
    write(tmp_path, "src/mystub.c", "")
    write(tmp_path, "_build/default/src/mystub.c", "")  # dune's copy is not the source
    write(tmp_path, "a/dup.c", "")
    write(tmp_path, "b/dup.c", "")
    assert source_for_object("mystub.o", str(tmp_path)) == "src/mystub.c"
    assert source_for_object("dup.o", str(tmp_path)) is None
