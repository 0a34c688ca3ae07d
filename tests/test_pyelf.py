"""pyelftools' ELFFile with shared struct parsers reads real objects exactly as a plain ELFFile does."""

from __future__ import annotations

import gc
import io
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from elftools.elf.elffile import ELFFile

from redzone_check.attribute import Debug
from redzone_check.attribution.lines import LineTable
from redzone_check.attribution.pyelf import open_elf

SOURCE = """
static int table[64];
int fill(int n) { volatile int v[8]; for (int i = 0; i < n && i < 8; i++) v[i] = i; return v[n & 7]; }
int sum(int n) { int s = 0; for (int i = 0; i < n; i++) s += table[i & 63] * fill(i); return s; }
"""


def _view(elf: ELFFile) -> dict[str, Any]:
    symtab = elf.get_section_by_name(".symtab")
    dwarf = elf.get_dwarf_info()
    rows = []
    for unit in dwarf.iter_CUs():
        program = dwarf.line_program_for_CU(unit)
        assert program is not None
        rows.extend((r.state.address, r.state.file, r.state.line) for r in program.get_entries() if r.state)
    return {
        "header": dict(elf.header),
        "sections": [(s.name, s["sh_type"], s["sh_size"]) for s in elf.iter_sections()],
        "symbols": [(s.name, s["st_value"], s["st_info"]["type"]) for s in symtab.iter_symbols()],
        "producers": [u.get_top_DIE().attributes["DW_AT_producer"].value for u in dwarf.iter_CUs()],
        "rows": rows,
    }


def test_shared_parsers_read_like_a_plain_elffile(compile_c: Callable[..., Path]) -> None:
    objects = [
        compile_c(SOURCE, name="gcc_g", flags=("-O2", "-g")),
        compile_c(SOURCE, name="clang_g", cc="clang", flags=("-O1", "-g", "-ffunction-sections")),
        compile_c(SOURCE, name="gcc_g_dwarf4", flags=("-O0", "-gdwarf-4")),
    ]
    for obj in objects:
        data = obj.read_bytes()
        plain, shared = ELFFile(io.BytesIO(data)), open_elf(data)
        assert set(vars(shared)) == set(vars(plain)), "ELFFile.__init__ sets other attributes now"
        assert _view(shared) == _view(plain)
        tables = [LineTable.from_elf(elf) for elf in (plain, shared)]
        functions = [s for s in _view(plain)["symbols"] if s[2] == "STT_FUNC"]
        shndx = {s.name: s["st_shndx"] for s in plain.get_section_by_name(".symtab").iter_symbols()}
        found = [
            [t.lookup(shndx[name], value) if t else None for name, value, _ in functions] for t in tables
        ]
        assert found[0] == found[1] and all(found[0]) and len(found[0]) == 2


def test_parsers_are_built_once_and_leave_no_cycles(compile_c: Callable[..., Path]) -> None:
    data = [compile_c(SOURCE, name=f"u{i}", flags=("-O2", "-g")).read_bytes() for i in range(2)]
    assert open_elf(data[0]).structs is open_elf(data[1]).structs
    _collect_all()
    gc.disable()
    try:
        for _ in range(20):
            elf = open_elf(data[0])
            LineTable.from_elf(elf)
            del elf
        shared = _collect_all()
        for _ in range(20):
            elf = ELFFile(io.BytesIO(data[0]))
            LineTable.from_elf(elf)
            del elf
        plain = _collect_all()
    finally:
        gc.enable()
    assert plain > 20 * 200  # what pyelftools' own parsers leave to the collector
    assert shared < plain / 3  # the rest is the DWARF reader's own


def _collect_all() -> int:
    # One collection can free the DWARF caches of what it collected, whose contents the next one collects.
    total = found = gc.collect()
    while found:
        found = gc.collect()
        total += found
    return total


def test_debug_frees_its_copy_of_the_object_on_exit(compile_c: Callable[..., Path]) -> None:
    data = compile_c(SOURCE, name="freed", flags=("-O2", "-g")).read_bytes()
    messages: list[str] = []
    with Debug(data, messages.append) as debug:
        assert debug.line(1, 0) is not None
        elf = debug.elf()
        assert elf is not None
    assert elf.stream.closed and not messages


def test_pyelftools_is_imported_only_for_objects_with_findings(compile_c: Callable[..., Path]) -> None:
    # A pre-commit run on a clean object should not pay for importing pyelftools.
    clean = compile_c("int add(int a, int b) { return a + b; }", name="clean", flags=("-O2", "-g"))
    flagged = compile_c(SOURCE, name="flagged", flags=("-O2", "-g"))
    probe = (
        "import sys\nfrom redzone_check.cli import main\n"
        "status = main(['--no-cache', '--quiet', '--format', 'json', '--output', '/dev/null', sys.argv[1]])\n"
        "print(status, any(m.startswith('elftools') for m in sys.modules))\n"
    )
    seen = [
        subprocess.run([sys.executable, "-c", probe, str(obj)], capture_output=True, text=True, check=True)
        for obj in (clean, flagged)
    ]
    assert [s.stdout.split() for s in seen] == [["0", "False"], ["1", "True"]]
