"""DWARF line lookup, checked against binutils and elfutils on multi-file C compiled at test time."""

from __future__ import annotations

import io
import os
import re
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import require_tool, run
from elftools.elf.elffile import ELFFile

from redzone_check.attribution.lines import LineInfo, LineTable
from redzone_check.attribution.units import CompileUnits
from redzone_check.errors import InputError

HEADER_INLINE = """\
static inline int clamp(int v, int lo, int hi)
{
    if (v < lo)
        return lo;
    if (v > hi)
        return hi;
    return v;
}
"""
# A function defined in a header before anything else in b.c: gcc's DWARF 5 file entry 1
# is then defs.h, not b.c (binutils 2.40 addr2line reads entry 1 as entry 0).
HEADER_DEFINITION = """\
int from_header(int x)
{
    int y = x * 5;
    return y > 10 ? y - 3 : y + 4;
}
"""
A_C = """\
#include "include/inc.h"
#include <string.h>
int table[64];
int sum(const int *p, int n)
{
    int s = 0;
    for (int i = 0; i < n; i++)
        s += clamp(p[i], -100, 100);
    return s;
}
void fill(char *dst, const char *src, int n)
{
    char tmp[32];
    memcpy(tmp, src, n < 32 ? n : 32);
    for (int i = 0; i < n && i < 32; i++)
        dst[i] = tmp[i] ^ (char)clamp(table[i], 0, 255);
}
static int helper(int x) { return table[x & 63] * 7 + clamp(x, 1, 9); }
int use(int x) { return helper(x) + helper(x + 1); }
"""
B_C = """\
#include "include/defs.h"
#include "include/inc.h"
double avg(const double *v, int n)
{
    double s = 0;
    for (int i = 0; i < n; i++)
        s += v[i];
    return n ? s / n : 0;
}
int pick(int a, int b) { return clamp(a, b, 2 * b); }
"""
MAIN_C = "int sum(const int *, int);\nint main(void) { int v[3] = {1, 2, 3}; return sum(v, 3); }\n"

VARIANTS = {
    "gcc-dwarf4": ("gcc", ("-gdwarf-4",)),
    "gcc-dwarf5": ("gcc", ("-gdwarf-5",)),
    "clang-dwarf4": ("clang", ("-gdwarf-4",)),
    "clang-dwarf5": ("clang", ("-gdwarf-5",)),
    "gcc-gz": ("gcc", ("-gdwarf-5", "-gz")),
    "clang-gz": ("clang", ("-gdwarf-5", "-gz")),
}


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Sources in src/, objects built out of tree in build/ (paths in DWARF then hold `../`)."""
    root = tmp_path_factory.mktemp("lines")
    (root / "src" / "include").mkdir(parents=True)
    (root / "src" / "include" / "inc.h").write_text(HEADER_INLINE)
    (root / "src" / "include" / "defs.h").write_text(HEADER_DEFINITION)
    (root / "src" / "a.c").write_text(A_C)
    (root / "src" / "b.c").write_text(B_C)
    (root / "src" / "main.c").write_text(MAIN_C)
    (root / "build").mkdir()
    return root


@pytest.fixture(scope="module")
def objects(tree: Path) -> dict[str, list[Path]]:
    built: dict[str, list[Path]] = {}
    for variant, (cc, flags) in VARIANTS.items():
        require_tool(cc)
        built[variant] = []
        for unit in ("a", "b"):
            obj = tree / "build" / f"{unit}-{variant}.o"
            run([cc, "-c", "-g", "-O2", "-ffunction-sections", *flags, "-o", obj, f"../src/{unit}.c"],
                cwd=tree / "build")  # fmt: skip
            built[variant].append(obj)
    return built


def instructions(binary: Path) -> dict[str, list[int]]:
    """Every instruction start per section, as objdump prints it (an address in linked files)."""
    out = run(["objdump", "-d", "--no-show-raw-insn", binary]).stdout
    found: dict[str, list[int]] = {}
    section = None
    for line in out.splitlines():
        if m := re.match(r"Disassembly of section (\S+):", line):
            section = m[1]
        elif (m := re.match(r"\s+([0-9a-f]+):\s", line)) and section:
            found.setdefault(section, []).append(int(m[1], 16))
    return found


def oracle(
    tool: str, binary: Path, section: str | None, addresses: list[int]
) -> list[tuple[str, int | None]]:
    where = ["-j", section] if section else []
    out = run([tool, *where, "-e", binary, *map(hex, addresses)]).stdout.splitlines()
    rows = []
    for line in out:  # file:line, file:line:column (elfutils) or ??:0, maybe " (discriminator N)"
        m = re.match(r"(.*?):(\d+|\?)(?::\d+)?(?: \(discriminator \d+\))?$", line)
        assert m, line
        rows.append((os.path.normpath(m[1]), int(m[2]) if m[2].isdigit() and m[2] != "0" else None))
    assert len(rows) == len(addresses)
    return rows


def open_elf(path: Path) -> ELFFile:
    return ELFFile(io.BytesIO(path.read_bytes()))


def section_indexes(elf: ELFFile) -> dict[str, int]:
    return {sec.name: i for i, sec in enumerate(elf.iter_sections())}


def lookups(path: Path) -> Iterator[tuple[str, int, LineInfo | None]]:
    elf = open_elf(path)
    table = LineTable.from_elf(elf)
    assert table is not None
    indexes = section_indexes(elf)
    for section, addresses in instructions(path).items():
        base = elf.get_section(indexes[section])["sh_addr"]
        for address in addresses:
            yield section, address, table.lookup(indexes[section], address - base)


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_instruction_line_agrees_with_addr2line_j(objects: dict[str, list[Path]], variant: str) -> None:
    require_tool("addr2line")
    for obj in objects[variant]:
        mine: dict[str, list[int | None]] = {}
        for section, _, info in lookups(obj):
            mine.setdefault(section, []).append(info.line if info else None)
        assert len(mine) >= 3, "expected one section per function (-ffunction-sections)"
        for section, offsets in instructions(obj).items():
            expected = [line for _, line in oracle("addr2line", obj, section, offsets)]
            assert mine[section] == expected, f"{obj.name} {section}"
            assert any(expected), f"{obj.name} {section} has no lines at all"


@pytest.mark.parametrize("variant", ["gcc-dwarf4", "gcc-dwarf5", "gcc-gz"])
def test_gcc_file_names_agree_with_eu_addr2line_j(objects: dict[str, list[Path]], variant: str) -> None:
    require_tool("eu-addr2line")
    for obj in objects[variant]:
        mine: dict[str, list[str | None]] = {}
        for section, _, info in lookups(obj):
            mine.setdefault(section, []).append(info.file if info else None)
        for section, offsets in instructions(obj).items():
            expected = [
                file if line else None for file, line in oracle("eu-addr2line", obj, section, offsets)
            ]
            assert mine[section] == expected, f"{obj.name} {section}"


def decoded_lines(library: Path) -> list[tuple[int, str | None]]:
    """(address, file base name) rows of `objdump --dwarf=decodedline`, sorted; the last row
    at an address wins, as in addr2line. Line 0 (no source line) and end rows have no file."""
    rows: dict[int, str | None] = {}
    for line in run(["objdump", "--dwarf=decodedline", library]).stdout.splitlines():
        if m := re.match(r"(\S+)\s+(\d+|-)\s+(0x[0-9a-f]+)\b", line):
            rows[int(m[3], 16)] = os.path.basename(m[1]) if m[2] not in ("0", "-") else None
    return sorted(rows.items())


def function_symbols(elf: ELFFile) -> dict[str, tuple[int, int, int]]:
    symtab = elf.get_section_by_name(".symtab")
    return {
        s.name: (s["st_shndx"], s["st_value"], s["st_size"])
        for s in symtab.iter_symbols()
        if s["st_info"]["type"] == "STT_FUNC" and isinstance(s["st_shndx"], int)
    }


@pytest.mark.parametrize("variant", ["clang-dwarf4", "clang-dwarf5"])
def test_clang_file_names_agree_with_objdump_on_the_linked_executable(
    tree: Path, objects: dict[str, list[Path]], variant: str
) -> None:
    """eu-addr2line finds nothing in clang objects, so the oracle is objdump's decoded line table
    of the same objects linked into an executable, matched through the function symbols."""
    library = tree / "build" / f"prog-{variant}"
    run(["clang", "-no-pie", "-o", library, tree / "src" / "main.c", *objects[variant]])
    rows = decoded_lines(library)
    starts = [address for address, _ in rows]
    linked = function_symbols(open_elf(library))
    checked = 0
    for obj in objects[variant]:
        elf = open_elf(obj)
        table = LineTable.from_elf(elf)
        assert table is not None
        for name, (shndx, value, size) in function_symbols(elf).items():
            for offset in (
                o for o in instructions(obj)[elf.get_section(shndx).name] if value <= o < value + size
            ):
                info = table.lookup(shndx, offset)
                address = linked[name][1] + offset - value
                index = max(i for i, start in enumerate(starts) if start <= address)
                got = os.path.basename(info.file) if info else None
                assert got == rows[index][1], (name, hex(offset))
                checked += 1
    assert checked > 50


def test_dwarf5_file_entry_one_is_the_header_not_the_primary_file(
    tree: Path, objects: dict[str, list[Path]]
) -> None:
    obj = objects["gcc-dwarf5"][1]
    entries = run(["readelf", "--debug-dump=rawline", obj]).stdout
    assert re.search(r"^\s+1\s+\d+\s+.*: defs\.h$", entries, re.M), "fixture no longer puts defs.h at entry 1"
    elf = open_elf(obj)
    info = LineTable.from_elf(elf).lookup(section_indexes(elf)[".text.from_header"], 0)  # type: ignore[union-attr]
    assert info == LineInfo(str(tree / "src" / "include" / "defs.h"), 3)


def test_lines_in_linked_executable_and_shared_library_agree_with_addr2line(tree: Path) -> None:
    require_tool("gcc")
    build = tree / "build"
    executable, library = build / "prog", build / "libab.so"
    run(
        ["gcc", "-g", "-O2", "-no-pie", "-o", executable, "../src/main.c", "../src/a.c", "../src/b.c"],
        cwd=build,
    )
    run(["gcc", "-g", "-O2", "-shared", "-fPIC", "-o", library, "../src/a.c", "../src/b.c"], cwd=build)
    for binary, kind in ((executable, "ET_EXEC"), (library, "ET_DYN")):
        assert open_elf(binary)["e_type"] == kind
        by_address = {address: info for _, address, info in lookups(binary)}
        addresses = sorted(by_address)
        expected = oracle("eu-addr2line", binary, None, addresses)
        lines = [line for _, line in oracle("addr2line", binary, None, addresses)]
        got = [(i.file, i.line) if i else (None, None) for i in map(by_address.get, addresses)]
        want = [(file if line else None, line) for (file, _), line in zip(expected, lines, strict=True)]
        assert got == want
        assert sum(1 for file, _ in got if file and file.endswith("src/a.c")) > 20


def test_compressed_debug_sections_give_the_same_lines(objects: dict[str, list[Path]]) -> None:
    for compressed, plain in (("gcc-gz", "gcc-dwarf5"), ("clang-gz", "clang-dwarf5")):
        obj = objects[compressed][0]
        assert open_elf(obj).get_section_by_name(".debug_line")["sh_flags"] & 0x800, "SHF_COMPRESSED"
        assert list(lookups(obj)) == list(lookups(objects[plain][0]))


def test_object_without_debug_line_has_no_table(compile_c: object) -> None:
    obj = compile_c("int f(int x) { return x + 1; }\n")  # type: ignore[operator]
    assert LineTable.from_elf(open_elf(obj)) is None


def damaged(obj: Path, section: str, at: int, data: bytes) -> ELFFile:
    raw = bytearray(obj.read_bytes())
    offset = open_elf(obj).get_section_by_name(section)["sh_offset"] + at
    raw[offset : offset + len(data)] = data
    return ELFFile(io.BytesIO(bytes(raw)))


def test_bogus_line_program_version_is_an_input_error(objects: dict[str, list[Path]]) -> None:
    elf = damaged(objects["gcc-dwarf5"][0], ".debug_line", 4, struct.pack("<H", 99))
    table = LineTable.from_elf(elf)
    assert table is not None
    with pytest.raises(InputError, match="DWARF"):
        table.lookup(section_indexes(elf)[".text.sum"], 0)


def test_relocation_pointing_outside_debug_line_is_an_input_error(objects: dict[str, list[Path]]) -> None:
    elf = damaged(objects["gcc-dwarf5"][0], ".rela.debug_line", 0, struct.pack("<Q", 1 << 32))
    with pytest.raises(InputError, match=r"outside \.debug_line"):
        LineTable.from_elf(elf).lookup(1, 0)  # type: ignore[union-attr]


def test_compressed_section_claiming_a_huge_size_is_an_input_error(objects: dict[str, list[Path]]) -> None:
    elf = damaged(objects["gcc-gz"][0], ".debug_line", 8, struct.pack("<Q", 1 << 40))  # Elf64_Chdr.ch_size
    with pytest.raises(InputError, match="impossible size"):
        LineTable.from_elf(elf).lookup(1, 0)  # type: ignore[union-attr]


@pytest.mark.parametrize("section", [".debug_line", ".debug_info", ".debug_abbrev", ".rela.debug_line"])
def test_damaged_dwarf_raises_only_input_error(objects: dict[str, list[Path]], section: str) -> None:
    obj = objects["clang-dwarf5"][0]
    size = open_elf(obj).get_section_by_name(section)["sh_size"]
    outcomes = set()
    for at in range(0, size, max(1, size // 25)):
        for garbage in (b"\xff\xff\xff\xff", b"\x00\x00\x00\x00"):
            elf = damaged(obj, section, at, garbage)
            try:
                table = LineTable.from_elf(elf)
                for index in range(elf.num_sections()):
                    table.lookup(index, 0) if table else None
                CompileUnits.from_elf(elf).for_address(2, 0)
                outcomes.add("read")
            except InputError as exc:
                assert "\n" not in str(exc)
                outcomes.add("error")
    assert outcomes == {"read", "error"}, outcomes


@pytest.mark.parametrize("cc", ["gcc", "clang"])
def test_every_finding_line_agrees_with_addr2line_j(tree: Path, cc: str) -> None:
    """The done-when of issue 2, through the real CLI. DWARF 4, because binutils 2.40 addr2line
    names the wrong file for DWARF 5 (see the test above); its lines are right either way."""
    from conftest import scan_json

    require_tool(cc)
    build = tree / "build"
    objects = []
    for unit in ("a", "b"):
        obj = build / f"{unit}-{cc}-O0.o"
        run([cc, "-c", "-gdwarf-4", "-O0", "-ffunction-sections", "-o", obj, f"../src/{unit}.c"], cwd=build)
        objects.append(obj)
    _, doc = scan_json(["--source-root", tree, *objects])
    findings = [f for f in doc["findings"] if f["rule"] == "RZ001"]
    assert len(findings) >= 4, [f["function"] for f in findings]
    for finding in findings:
        obj = tree / finding["path"]
        ((file, line),) = oracle("addr2line", obj, finding["section"], [finding["section_offset"]])
        assert finding["source"] == {"file": os.path.relpath(file, tree), "line": line}, finding["function"]
