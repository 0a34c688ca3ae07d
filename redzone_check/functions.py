"""An object -> its functions: symbols grouped by address, with sizes and bytes."""

from __future__ import annotations

from collections import defaultdict
from typing import NamedTuple

from redzone_check.elf import (
    SHN_LORESERVE,
    SHN_UNDEF,
    STB_GLOBAL,
    STB_LOCAL,
    STB_WEAK,
    STT_FUNC,
    STT_GNU_IFUNC,
    STT_NOTYPE,
    ElfFile,
    Section,
    Symbol,
)

_BIND_RANK = {STB_GLOBAL: 0, STB_WEAK: 1, STB_LOCAL: 2}


class Function(NamedTuple):  # not a frozen dataclass: see elf.Symbol
    name: str  # the primary raw symbol
    aliases: tuple[str, ...]  # other symbols at the same address
    section_index: int
    section: str
    offset: int  # within the section
    size: int
    address: int  # st_value: a section offset in ET_REL, a virtual address otherwise
    is_global: bool
    region: bool = False  # code no symbol covers (stripped binaries), named `<section+0xN>`


def _is_code_symbol(sym: Symbol) -> bool:
    if not sym.name or sym.shndx == SHN_UNDEF or sym.shndx >= SHN_LORESERVE:
        return False
    if sym.type in (STT_FUNC, STT_GNU_IFUNC):
        return True
    # Hand-written assembly often has neither .type nor .size; local `.L` labels
    # and mapping symbols are not functions.
    return sym.type == STT_NOTYPE and not sym.name.startswith((".L", "$", "L0\x01"))


def _primary(symbols: list[Symbol]) -> Symbol:
    # Prefer a FUNC over a bare label, a global over a weak alias (`__ceill` over `ceill`
    # is not decidable by binding alone, so fewer leading underscores breaks the tie last).
    return min(
        symbols,
        key=lambda s: (
            s.type not in (STT_FUNC, STT_GNU_IFUNC),
            _BIND_RANK.get(s.bind, 3),
            len(s.name) - len(s.name.lstrip("_")),
            s.name,
        ),
    )


def list_functions(elf: ElfFile) -> list[Function]:
    """Every function in the executable sections, one entry per address."""
    sections = {s.index: s for s in elf.sections if s.executable}
    if not sections:
        return []
    by_place: dict[tuple[int, int], list[Symbol]] = defaultdict(list)
    for sym in elf.symbols():
        if sym.shndx in sections and _is_code_symbol(sym):
            by_place[(sym.shndx, sym.value)].append(sym)
    starts: dict[int, list[int]] = defaultdict(list)
    for shndx, value in by_place:
        starts[shndx].append(value)
    for values in starts.values():
        values.sort()

    functions = []
    for (shndx, value), syms in by_place.items():
        section = sections[shndx]
        base = section.addr if elf.type != 1 else 0
        offset = value - base
        if not 0 <= offset < section.size:
            continue
        primary = _primary(syms)
        size = max(s.size for s in syms)
        if size == 0:
            # Without `.size`, a function runs to the next symbol or to the section end.
            later = [v for v in starts[shndx] if v > value]
            size = (min(later) - base if later else section.size) - offset
        size = min(size, section.size - offset)
        aliases = tuple(sorted({s.name for s in syms} - {primary.name}))
        functions.append(
            Function(
                primary.name,
                aliases,
                shndx,
                section.name,
                offset,
                size,
                value,
                any(s.bind != STB_LOCAL for s in syms),
            )
        )
    functions.extend(_uncovered(functions, sections, elf.type))
    functions.sort(key=lambda f: (f.section_index, f.offset))
    return functions


_MIN_REGION = 16  # smaller gaps between functions are alignment padding


def _uncovered(functions: list[Function], sections: dict[int, Section], elf_type: int) -> list[Function]:
    """Code that no symbol covers: stripped binaries keep only their exported symbols."""
    spans: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for fn in functions:
        spans[fn.section_index].append((fn.offset, fn.offset + fn.size))
    out = []
    for section in sections.values():
        if elf_type == 1 and spans[section.index]:
            # In an object every routine has a symbol (assemblers keep local ones too), so
            # what lies between them is data: perlasm keeps its tables in .text.
            continue
        base = section.addr if elf_type != 1 else 0
        at = 0
        for start, end in [*sorted(spans[section.index]), (section.size, section.size)]:
            if start - at >= _MIN_REGION:
                name = f"<{section.name}+0x{at:x}>"
                out.append(
                    Function(name, (), section.index, section.name, at, start - at, base + at, False, True)
                )
            at = max(at, end)
    return out
