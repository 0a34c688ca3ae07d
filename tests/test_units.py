"""Compile units and recorded build flags, from objects built at test time."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import require_tool, run
from elftools.elf.elffile import ELFFile

from redzone_check.attribution.units import CompileUnits, Unit, command_line, parse_producer

SOURCE = "int twice(int x) { return 2 * x; }\n"


def units_of(path: Path) -> tuple[Unit, ...]:
    return CompileUnits.from_elf(ELFFile(io.BytesIO(path.read_bytes()))).units


def only_unit(path: Path) -> Unit:
    (unit,) = units_of(path)
    return unit


def test_gcc_debug_info_records_switches_and_lacks_no_red_zone(compile_c: Callable[..., Path]) -> None:
    unit = only_unit(compile_c(SOURCE, flags=("-g", "-O2")))
    assert unit.language == "c"
    assert unit.build.compiler is not None and unit.build.compiler.startswith("GCC 12.")
    assert unit.build.recorded and "-O2" in unit.build.flags and "-g" in unit.build.flags
    assert unit.build.missing == ("-mno-red-zone",)
    assert unit.producer is not None and unit.producer.startswith("GNU C")


@pytest.mark.parametrize(
    ("flags", "missing", "explicit"),
    [
        (("-mno-red-zone",), (), False),
        (("-mno-red-zone", "-mred-zone"), ("-mno-red-zone",), True),
        (("-mred-zone", "-mno-red-zone"), (), True),
    ],
)
def test_the_last_red_zone_switch_decides(
    compile_c: Callable[..., Path], flags: tuple[str, ...], missing: tuple[str, ...], explicit: bool
) -> None:
    build = only_unit(compile_c(SOURCE, flags=("-g", "-O2", *flags))).build
    assert build.missing == missing
    assert (build.note is not None and "-mred-zone" in build.note) is explicit


def test_clang_without_record_command_line_says_how_to_record(compile_c: Callable[..., Path]) -> None:
    unit = only_unit(compile_c(SOURCE, cc="clang", flags=("-g", "-O2")))
    assert unit.build.compiler is not None and unit.build.compiler.startswith("clang 14.")
    assert not unit.build.recorded and unit.build.flags == () and unit.build.missing == ()
    assert unit.build.note is not None and "-grecord-command-line" in unit.build.note


def test_clang_record_command_line_flags_come_from_the_producer(compile_c: Callable[..., Path]) -> None:
    build = only_unit(
        compile_c(SOURCE, cc="clang", flags=("-g", "-grecord-command-line", "-mno-red-zone"))
    ).build
    assert build.recorded and build.missing == ()
    assert "-mno-red-zone" in build.flags and not any(f.endswith("/clang") for f in build.flags)


@pytest.mark.parametrize(
    ("cc", "flag", "compiler"),
    [("gcc", "-frecord-gcc-switches", "GCC 12."), ("clang", "-frecord-command-line", "clang 14.")],
)
def test_without_dwarf_flags_come_from_gcc_command_line_section(
    compile_c: Callable[..., Path], cc: str, flag: str, compiler: str
) -> None:
    unit = only_unit(compile_c(SOURCE, cc=cc, flags=("-O1", flag)))
    assert unit.name is None and unit.build.producer is None
    assert unit.build.recorded and "-O1" in unit.build.flags
    assert unit.build.compiler is not None and unit.build.compiler.startswith(compiler)


def test_without_dwarf_or_switches_the_comment_names_the_compiler(compile_c: Callable[..., Path]) -> None:
    build = only_unit(compile_c(SOURCE, flags=("-O2",))).build
    assert build.compiler is not None and build.compiler.startswith("GCC 12.")
    assert not build.recorded and build.note is not None
    assert "-g" in build.note and "-frecord-gcc-switches" in build.note


def test_compressed_debug_info_is_read(compile_c: Callable[..., Path]) -> None:
    obj = compile_c(SOURCE, flags=("-g", "-gz", "-O2", "-mno-red-zone"))
    assert "C" in run(["readelf", "-S", "-W", obj]).stdout.split(".debug_info")[1].splitlines()[0]
    assert only_unit(obj).build.missing == ()


def test_cplusplus_language(tmp_path: Path) -> None:
    require_tool("clang")
    src, obj = tmp_path / "k.cc", tmp_path / "k.o"
    src.write_text("namespace k { int f(int x) { return x + 1; } }\n")
    run(["clang", "-x", "c++", "-g", "-c", "-o", obj, src])
    assert only_unit(obj).language == "c++"


def test_hand_written_assembly_has_no_compiler_flags(assemble: Callable[..., Path]) -> None:
    unit = only_unit(assemble(".text\n.globl f\nf:\n  mov %rdi,-8(%rsp)\n  ret\n", flags=("-g",)))
    assert unit.language == "asm" and unit.build.compiler is not None
    assert unit.build.compiler.startswith("GNU AS") and not unit.build.recorded
    assert unit.build.note is not None and "hand-written" in unit.build.note


@pytest.mark.parametrize("flags", [("-g",), ()])
def test_ocamlopt_objects_are_ocaml_and_say_where_flags_come_from(
    tmp_path: Path, flags: tuple[str, ...]
) -> None:
    require_tool("ocamlopt")
    (tmp_path / "ops.ml").write_text("let ( +! ) a b = a + b + 1\nlet f x = x +! 2\n")
    run(["ocamlopt", *flags, "-c", "ops.ml"], cwd=tmp_path)
    unit = only_unit(tmp_path / "ops.o")
    assert unit.language == "ocaml" and not unit.build.recorded
    assert unit.build.note is not None and "ocamlopt" in unit.build.note and "C compiler" in unit.build.note
    assert (unit.producer or "").startswith("GNU AS") is bool(flags)


def test_several_units_are_told_apart_by_their_line_programs(
    compile_c: Callable[..., Path], tmp_path: Path
) -> None:
    first = compile_c(
        "int one(int x) { return x + 1; }\n", name="one", flags=("-g", "-O2", "-ffunction-sections")
    )
    second = compile_c(
        "int two(int x) { return x + 2; }\n",
        name="two",
        cc="clang",
        flags=("-g", "-O2", "-ffunction-sections"),
    )
    merged = tmp_path / "merged.o"
    run(["ld", "-r", "-o", merged, first, second])
    elf = ELFFile(io.BytesIO(merged.read_bytes()))
    units = CompileUnits.from_elf(elf)
    assert len(units.units) == 2
    index = {sec.name: i for i, sec in enumerate(elf.iter_sections())}
    one, two = units.for_address(index[".text.one"], 0), units.for_address(index[".text.two"], 0)
    assert one is not None and one.name.endswith("/one.c") and one.build.recorded
    assert two is not None and two.name.endswith("/two.c") and not two.build.recorded


@pytest.mark.parametrize(
    ("producer", "compiler", "flags"),
    [
        (
            "GNU C17 12.2.0 -mtune=generic -march=x86-64 -g -O2",
            "GCC 12.2.0",
            ("-mtune=generic", "-march=x86-64", "-g", "-O2"),
        ),
        ("GNU C++17 12.2.0 -mno-red-zone", "GCC 12.2.0", ("-mno-red-zone",)),
        ("GNU AS 2.40", "GNU AS 2.40", ()),
        ("Debian clang version 14.0.6", "clang 14.0.6", ()),
        ("clang version 17.0.1 (https://github.com/llvm/llvm-project e19b7dc36bc0)", "clang 17.0.1", ()),
        (
            "Debian clang version 14.0.6 /usr/lib/llvm-14/bin/clang -g -grecord-command-line -c a.c",
            "clang 14.0.6",
            ("-g", "-grecord-command-line", "-c", "a.c"),
        ),
        ("clang LLVM (rustc version 1.70.0 (90c541806 2023-05-31))", "rustc 1.70.0", ()),
    ],
)
def test_producer_strings(producer: str, compiler: str, flags: tuple[str, ...]) -> None:
    assert parse_producer(producer) == (compiler, flags)


@pytest.mark.parametrize(
    ("data", "flags"),
    [
        (b"GNU C17 12.2.0 -mtune=generic -O2\0", ("-mtune=generic", "-O2")),
        (
            b"-mtune=generic\0-march=x86-64\0-O2\0-mno-red-zone\0",
            ("-mtune=generic", "-march=x86-64", "-O2", "-mno-red-zone"),
        ),
        (
            b"\0/usr/lib/llvm-14/bin/clang -frecord-command-line -O2 -c a.c\0",
            ("-frecord-command-line", "-O2", "-c", "a.c"),
        ),
        (b"\0\0", None),
        (None, None),
    ],
)
def test_gcc_command_line_section_formats(data: bytes | None, flags: tuple[str, ...] | None) -> None:
    assert command_line(data) == flags
