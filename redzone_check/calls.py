"""One object -> its functions' symbols, and its direct calls, tail jumps and OCaml `caml_c_call` edges.

Scan workers turn each object into an `ObjectSymbols` (cheap: the symbol table) or an `ObjectCalls`
value (decodes the code); both are plain tuples, cheap to pickle. `callgraph.CallGraph` merges them.
"""

from __future__ import annotations

import bisect
import re
import struct
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache

import capstone

from redzone_check.attribution.ocaml_units import is_ocaml_symbol, ocaml_unit_names
from redzone_check.elf import ElfFile
from redzone_check.functions import Function
from redzone_check.native import select

ET_REL = 1
SHT_RELA = 4
STT_SECTION = 3
# Relocations whose value is relative to the place they patch (S + A - P).
_PC_RELATIVE = frozenset({2, 4, 9, 24, 41, 42})  # PC32 PLT32 GOTPCREL PC64 GOTPCRELX REX_GOTPCRELX
_RELA = struct.Struct("<QQq")
# ocamlopt calls allocating externals through these runtime trampolines, with the stub in %rax.
C_CALL_TRAMPOLINES = frozenset({"caml_c_call", "caml_c_call_stack_args"})
# What the loop of `object_calls` looks at: branches, and what loads %rax (a stub's address). The
# compiled decoder hands over only these; the loop itself still decides.
_BRANCHES = ("call", "j")
_LOADS_RAX = ("rax,", "eax,")
_IMMEDIATE = re.compile(r"^(0x[0-9a-f]+|\d+)$")  # capstone prints small values in decimal
_RIP_DISPLACEMENT = re.compile(r"\[rip ([+-]) (0x[0-9a-f]+|\d+)\]")


@dataclass(frozen=True)
class ObjectSymbols:
    defined: tuple[tuple[str, bool], ...]  # (symbol, is_global) for each function defined in the object
    aliases: tuple[tuple[str, str], ...] = ()  # (alias, primary symbol)
    ocaml_units: tuple[str, ...] = ()


def object_symbols(functions: Sequence[Function], ocaml_units: Iterable[str]) -> ObjectSymbols:
    defined = tuple((f.name, f.is_global) for f in functions)
    aliases = tuple((alias, f.name) for f in functions for alias in f.aliases)
    return ObjectSymbols(defined, aliases, tuple(sorted(ocaml_units)))


@dataclass(frozen=True)
class ObjectCalls:
    defined: tuple[tuple[str, bool], ...]  # (symbol, is_global) for each function defined in the object
    edges: tuple[tuple[str, str, str], ...]  # (caller, callee, kind): "call", "tail" or "caml_c_call"
    aliases: tuple[tuple[str, str], ...] = ()  # (alias, primary symbol)
    ocaml_units: tuple[str, ...] = ()
    # (caller, callee, section index, section offset) of the first call from OCaml code into
    # non-OCaml code; turned into (caller, callee, file, line) by `with_site_lines`.
    sites: tuple[tuple[str, str, int, int], ...] = ()
    site_lines: tuple[tuple[str, str, str, int], ...] = ()

    @property
    def symbols(self) -> ObjectSymbols:
        return ObjectSymbols(self.defined, self.aliases, self.ocaml_units)


def object_calls(elf: ElfFile, functions: Sequence[Function]) -> ObjectCalls:
    symbols = elf.symbols()
    relocatable = elf.type == ET_REL
    sections = {s.index: s for s in elf.sections}
    starts: dict[int, list[Function]] = defaultdict(list)
    primary: dict[str, str] = {}
    for f in functions:
        starts[f.section_index].append(f)
        primary[f.name] = f.name
        for alias in f.aliases:
            primary.setdefault(alias, f.name)
    for group in starts.values():
        group.sort(key=lambda f: f.offset)
    relocs = _relocations(elf) if relocatable else {}
    patched_offsets = {shndx: sorted(table) for shndx, table in relocs.items()}

    def function_at(shndx: int, offset: int) -> Function | None:
        group = starts.get(shndx, [])
        lo, hi = 0, len(group)
        while lo < hi:
            mid = (lo + hi) // 2
            if group[mid].offset <= offset:
                lo = mid + 1
            else:
                hi = mid
        if lo and offset < group[lo - 1].offset + max(group[lo - 1].size, 1):
            return group[lo - 1]
        return None

    def by_address(address: int) -> Function | None:
        for s in sections.values():
            if s.index in starts and s.addr <= address:
                found = function_at(s.index, address - s.addr)
                if found is not None:
                    return found
        return None

    def symbol_target(sym_index: int, rtype: int, addend: int, pc_bias: int) -> str | None:
        if not 0 < sym_index <= len(symbols):
            return None
        sym = symbols[sym_index - 1]
        if sym.shndx == 0:
            return sym.name or None
        if sym.type == STT_SECTION or not sym.name:
            offset = sym.value + addend + (pc_bias if rtype in _PC_RELATIVE else 0)
            target = function_at(sym.shndx, offset)
            return target.name if target is not None and target.offset == offset else None
        return primary.get(sym.name, sym.name)

    md = _disassembler()
    edges: set[tuple[str, str, str]] = set()
    units = tuple(sorted(ocaml_unit_names(s.name for s in symbols)))
    unit_set = set(units)
    sites: dict[tuple[str, str], tuple[int, int]] = {}

    def site(caller: Function, callee: str, address: int) -> None:
        if is_ocaml_symbol(caller.name, unit_set) and not is_ocaml_symbol(callee, unit_set):
            offset = address if relocatable else address - sections[caller.section_index].addr
            sites.setdefault((caller.name, callee), (caller.section_index, offset))

    for f in functions:
        section = sections.get(f.section_index)
        if section is None or f.size <= 0:
            continue
        code = bytes(elf.section_data(section)[f.offset : f.offset + f.size])
        base = f.offset if relocatable else section.addr + f.offset
        section_relocs = relocs.get(f.section_index, {})
        patched = patched_offsets.get(f.section_index, [])
        in_rax: str | None = None
        for address, size, mnemonic, operands in select(md, code, base, _BRANCHES, _LOADS_RAX):
            branch = mnemonic == "call" or mnemonic.startswith("j")
            if not branch and not operands.startswith(("rax,", "eax,")):
                continue  # most instructions: neither a call nor a load of a stub's address
            end = address + size
            target: str | None = None
            if patched:
                # The first relocation that patches this instruction's bytes after its first: one
                # search of the sorted offsets rather than a lookup per byte.
                at = address if relocatable else address - section.addr
                i = bisect.bisect_right(patched, at)
                if i < len(patched) and patched[i] < at + size:
                    reloc = section_relocs[patched[i]]
                    target = symbol_target(reloc[0], reloc[1], reloc[2], end - reloc[3])
            if branch:
                if target is None and _IMMEDIATE.match(operands):
                    destination = int(operands, 0)
                    callee = (
                        function_at(f.section_index, destination) if relocatable else by_address(destination)
                    )
                    target = None if callee is None or callee is f else callee.name
                if target is not None and target != f.name:
                    kind = "call" if mnemonic == "call" else "tail"
                    edges.add((f.name, target, kind))
                    site(f, target, address)
                    if target in C_CALL_TRAMPOLINES and in_rax is not None:
                        edges.add((f.name, in_rax, "caml_c_call"))
                        site(f, in_rax, address)
                if mnemonic == "call":
                    in_rax = None
            elif operands.startswith(("rax,", "eax,")):
                in_rax = target
                if in_rax is None and not relocatable and mnemonic == "lea":
                    in_rax = _rip_relative_function(operands, end, by_address)
    defined = tuple((f.name, f.is_global) for f in functions)
    aliases = tuple((alias, f.name) for f in functions for alias in f.aliases)
    found = tuple(sorted((a, b, shndx, off) for (a, b), (shndx, off) in sites.items()))
    return ObjectCalls(defined, tuple(sorted(edges)), aliases, units, found)


@lru_cache(maxsize=1)
def _disassembler() -> capstone.Cs:
    return capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)


def with_site_lines(calls: ObjectCalls, data: bytes | memoryview) -> ObjectCalls:
    """Source lines of the OCaml call sites, from the object's DWARF when it has any (-g)."""
    if not calls.sites:
        return calls
    from elftools.common.exceptions import ELFError

    from redzone_check.attribution.lines import LineTable
    from redzone_check.attribution.pyelf import open_elf
    from redzone_check.errors import InputError

    elf = None
    try:
        elf = open_elf(data)
        table = LineTable.from_elf(elf)
        if table is None:
            return calls
        lines = []
        for caller, callee, shndx, offset in calls.sites:
            info = table.lookup(shndx, offset)
            if info is not None:
                lines.append((caller, callee, info.file, info.line))
    except (InputError, ELFError, ValueError, OSError):
        return calls  # attribution is best effort; detection already happened
    finally:
        if elf is not None:
            elf.stream.close()  # its copy of the bytes, which reference cycles would keep (attribute.Debug)
    return replace(calls, site_lines=tuple(lines))


def _rip_relative_function(
    operands: str, end: int, by_address: Callable[[int], Function | None]
) -> str | None:
    match = _RIP_DISPLACEMENT.search(operands)
    if match is None:
        return None
    displacement = int(match.group(2), 0) * (-1 if match.group(1) == "-" else 1)
    found = by_address(end + displacement)
    return found.name if found is not None else None


def _relocations(elf: ElfFile) -> dict[int, dict[int, tuple[int, int, int, int]]]:
    """Per patched section: offset -> (symbol index, type, addend, offset) of each RELA entry."""
    out: dict[int, dict[int, tuple[int, int, int, int]]] = {}
    for section in elf.sections:
        if section.type != SHT_RELA:
            continue
        data = elf.section_data(section)
        table = out.setdefault(section.info, {})
        for i in range(len(data) // _RELA.size):
            offset, info, addend = _RELA.unpack_from(data, i * _RELA.size)
            table[offset] = (info >> 32, info & 0xFFFFFFFF, addend, offset)
    return out
