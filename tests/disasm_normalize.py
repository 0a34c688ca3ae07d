"""objdump as an independent oracle: functions of an object or archive, normalised disassembly, and
the instructions that certainly touch memory below %rsp.

Everything here comes from binutils (`objdump -t` and `objdump -dr`), never from the engine or capstone.
"""

from __future__ import annotations

import difflib
import re
import subprocess
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

_FILE = re.compile(r"^(?P<name>\S.*):\s+file format (?P<format>\S+)$")
_SECTION = re.compile(r"^Disassembly of section (?P<name>\S+):$")
_INSN = re.compile(r"^\s+(?P<addr>[0-9a-f]+):\t(?P<text>.*)$")
_RELOC = re.compile(r"^\t+(?P<addr>[0-9a-f]+): (?P<type>R_\S+)\t(?P<target>.*)$")
_SYMBOL = re.compile(
    r"^(?P<value>[0-9a-f]{16}) (?P<flags>.{7}) (?P<section>\S+)\t(?P<size>[0-9a-f]{16}) (?P<name>.*)$"
)
_VISIBILITY = re.compile(r"^\.(hidden|protected|internal) ")

_NOP = re.compile(r"^(?:(?:data16|cs|ds|es|ss|rex\.?\w*)\s+)*(?:nop\w*\b|xchg\s+%ax,%ax$)")
_BRANCH = re.compile(
    r"^(?P<op>(?:\w+\s+)*?(?:j\w+|call\w*|loop\w*|xbegin\w*))\s+(?P<addr>[0-9a-f]+) <(?P<sym>[^>]+)>$"
)
_RIP_COMMENT = re.compile(r"\s+#\s+(?P<addr>[0-9a-f]+) <(?P<sym>[^>]+)>$")
_RIP_DISP = re.compile(r"-?0x[0-9a-f]+\(%rip\)")
_ZERO = re.compile(r"(?<![\w%])0x0\b")
_STACK_OPERAND = re.compile(r"\(%(?:rsp|rbp)[,)]")
_BELOW_RSP = re.compile(r"(?<![\w-])-0x(?P<disp>[0-9a-f]+)\(%rsp\)")
# Instructions that name a memory operand without touching it (lea computes an address; nops and
# prefetches have no architectural access).
_NO_ACCESS = re.compile(
    r"^(?:(?:data16|cs|ds|es|ss|rex\.?\w*|notrack|bnd)\s+)*(?:lea\w?|nop\w*|prefetch\w*)\b"
)


@dataclass(frozen=True)
class Insn:
    address: int
    text: str
    relocs: tuple[str, ...]  # "R_X86_64_PC32 .rodata-0x4"


@dataclass(frozen=True)
class Symbol:
    name: str
    section: str
    value: int
    size: int
    is_function: bool


@dataclass(frozen=True)
class Function:
    member: str | None  # archive member, None for a lone object
    section: str
    names: tuple[str, ...]  # every symbol at its start; typed (FUNC) symbols first
    start: int
    end: int
    insns: tuple[Insn, ...]

    @property
    def name(self) -> str:
        return self.names[0]


def _objdump(args: Iterable[str], path: Path) -> list[str]:
    proc = subprocess.run(["objdump", *args, str(path)], capture_output=True, text=True, check=True)
    return proc.stdout.splitlines()


def _members(lines: list[str]) -> Iterable[tuple[str | None, list[str]]]:
    """Split objdump output per object; the member name is None outside archives."""
    in_archive = any(line.startswith("In archive ") for line in lines[:5])
    name: str | None = None
    chunk: list[str] = []
    started = False
    for line in lines:
        m = _FILE.match(line)
        if m:
            if started:
                yield name, chunk
            name, chunk, started = (m["name"] if in_archive else None), [], True
        elif started:
            chunk.append(line)
    if started:
        yield name, chunk


def _symbols(lines: list[str]) -> list[Symbol]:
    out = []
    for line in lines:
        m = _SYMBOL.match(line)
        if not m or m["section"].startswith("*"):
            continue
        flags, name = m["flags"], _VISIBILITY.sub("", m["name"])
        # flags[5] 'd' marks section and debugging symbols, flags[6] 'f' the file name, 'O' data.
        if flags[5] == "d" or flags[6] in "fO" or name.startswith(".L"):
            continue
        out.append(Symbol(name, m["section"], int(m["value"], 16), int(m["size"], 16), flags[6] == "F"))
    return out


def _sections(lines: list[str]) -> dict[str, list[Insn]]:
    sections: dict[str, list[Insn]] = {}
    current: list[Insn] | None = None
    for line in lines:
        if m := _SECTION.match(line):
            # Two sections of one name cannot be told apart by `objdump -t`; no input here has them.
            assert m["name"] not in sections, f"section {m['name']} appears twice"
            current = sections[m["name"]] = []
        elif current is None:
            continue
        elif m := _RELOC.match(line):
            last = current[-1]
            current[-1] = Insn(last.address, last.text, (*last.relocs, f"{m['type']} {m['target']}"))
        elif m := _INSN.match(line):
            current.append(Insn(int(m["addr"], 16), m["text"].strip(), ()))
    return sections


def _functions(member: str | None, section: str, insns: list[Insn], symbols: list[Symbol]) -> list[Function]:
    at: dict[int, list[Symbol]] = defaultdict(list)
    for sym in symbols:
        if sym.section == section:
            at[sym.value].append(sym)
    starts = sorted(at)
    ranges: list[tuple[int, int, tuple[str, ...], bool]] = []
    for k, start in enumerate(starts):
        group = sorted(at[start], key=lambda s: (not s.is_function, s.name))
        sized = max((s.size for s in group if s.is_function), default=0)
        # Assembly without `.size` runs to the next symbol or to the end of the section.
        end = start + sized if sized else (starts[k + 1] if k + 1 < len(starts) else 1 << 64)
        ranges.append((start, end, tuple(s.name for s in group), bool(sized)))
    owned: dict[int, list[Insn]] = defaultdict(list)
    for insn in insns:
        inside = [k for k, (s, e, _, _) in enumerate(ranges) if s <= insn.address < e]
        if inside:
            # An unsized label inside a sized function does not split it.
            owned[max(inside, key=lambda k: (ranges[k][3], ranges[k][0]))].append(insn)
    return [
        Function(member, section, names, s, e, tuple(owned[k]))
        for k, (s, e, names, _) in enumerate(ranges)
        if owned[k]
    ]


def functions(path: Path) -> list[Function]:
    """Every function of an object or archive, as objdump sees it."""
    tables = dict(_members(_objdump(["-t"], path)))
    out: list[Function] = []
    for member, chunk in _members(_objdump(["-dr", "--no-show-raw-insn"], path)):
        symbols = _symbols(tables.get(member, []))
        for section, insns in _sections(chunk).items():
            out.extend(_functions(member, section, insns, symbols))
    return out


def _relocation_token(reloc: str) -> str:
    kind, target = reloc.split(" ", 1)
    sym = re.split(r"(?=[+-]0x)", target, maxsplit=1)[0]
    # A section symbol's addend is a position in that section, which moves when other functions
    # change size; a named symbol's addend (usually -4) is part of the instruction's meaning.
    return f"{kind}:{sym}" if sym.startswith(".") else f"{kind}:{target}"


def _symbolic(sym: str) -> str:
    return re.sub(r"\+0x[0-9a-f]+$", "", sym) if sym.startswith(".") else sym


def normalise(func: Function) -> tuple[str, ...]:
    """Disassembly without addresses: branch targets, rip-relative operands and relocations symbolised."""
    kept = [i for i in func.insns if not _NOP.match(i.text)]
    label: dict[int, int] = {}
    position = 0
    for insn in func.insns:  # a branch to alignment padding lands on the next real instruction
        label[insn.address] = position
        if position < len(kept) and insn is kept[position]:
            position += 1

    def target(addr: int, sym: str, has_reloc: bool) -> str:
        if has_reloc:
            return "R"
        if func.start <= addr < func.end:
            return f"L{label.get(addr, addr - func.start)}"
        return f"<{_symbolic(sym)}>"

    out = []
    for insn in kept:
        text, relocs = insn.text, [_relocation_token(r) for r in insn.relocs]
        if m := _RIP_COMMENT.search(text):
            text = text[: m.start()] + ("" if relocs else " # " + target(int(m["addr"], 16), m["sym"], False))
        text = _RIP_DISP.sub("X(%rip)", text)
        if m := _BRANCH.match(text):
            text = f"{m['op']} {target(int(m['addr'], 16), m['sym'], bool(relocs))}"
        if relocs:
            text = _ZERO.sub("R", text) + " [" + ", ".join(relocs) + "]"
        out.append(" ".join(text.split()))
    return tuple(out)


def touches_stack(func: Function) -> bool:
    """Any memory operand based on %rsp or %rbp."""
    return any(_STACK_OPERAND.search(i.text) for i in func.insns)


def below_rsp_accesses(func: Function) -> list[Insn]:
    """Instructions that certainly read or write memory below the current %rsp, whatever the stack
    state: a negative displacement from %rsp without an index register, on an instruction that
    accesses its memory operand."""
    return [i for i in func.insns if _BELOW_RSP.search(i.text) and not _NO_ACCESS.match(i.text)]


Key = tuple[str, str]  # (object file name, function name)


def by_key(objects: Iterable[Path]) -> dict[Key, Function]:
    return {(obj.name, func.name): func for obj in objects for func in functions(obj)}


@dataclass
class Verdict:
    """What the compiler says about one build: which functions the red zone changed."""

    functions: int = 0
    differing: dict[Key, Function] = field(default_factory=dict)  # differ and touch the stack
    differing_without_stack: list[Key] = field(default_factory=list)
    unmatched: list[Key] = field(default_factory=list)  # only in the red-zone build
    identical: set[Key] = field(default_factory=set)


def verdict(red_zone: dict[Key, Function], no_red_zone: dict[Key, Function]) -> Verdict:
    result = Verdict(functions=len(red_zone))
    for key, func in red_zone.items():
        other = no_red_zone.get(key)
        if other is None:
            result.unmatched.append(key)
        elif normalise(func) == normalise(other):
            result.identical.add(key)
        elif touches_stack(func) or touches_stack(other):
            result.differing[key] = func
        else:
            result.differing_without_stack.append(key)
    return result


def first_difference(a: Function, b: Function, limit: int = 16) -> str:
    """The start of a unified diff of both normalised listings, for failure messages."""
    lines = difflib.unified_diff(normalise(b), normalise(a), "-mno-red-zone", "red zone", n=1, lineterm="")
    return "\n".join(f"      {line}" for line in list(lines)[:limit])
