"""What the lite text of each instruction says, and the sound filters built on it.

capstone's lite decoding gives mnemonic and operand text only, 15 times faster than its
detailed decoding. From that text alone: the prefilter (can this function be flagged at all?),
the function filter (can the analysis judge anything below %rsp?) and the registers that may
ever hold a stack address. Each errs on the side of analysing; `--no-prefilter` turns the
filters off, and tests/test_speed_equivalence.py checks they change no result.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Final

from redzone_check.decode import BIT, GPRS, lite_decoder
from redzone_check.lite import Ops, control, opcode, operands, reads_only, writes_implicitly
from redzone_check.native import disasm_lite

_RSP: Final[int] = BIT["rsp"]
Lite = list[tuple[int, int, str, str]]  # (address, size, mnemonic, operand text)


def decode(code: bytes | memoryview, base: int) -> Lite:
    """The lite decoding of one function, shared by the prefilter and the analysis."""
    return disasm_lite(lite_decoder(), bytes(code), base)


def may_use_red_zone(lite: Lite) -> bool:
    """A sound, cheap prefilter on the lite decoding.

    The full analysis can only report an access whose base is %rsp with a
    negative displacement or an index register, or whose base or index register
    was derived from %rsp by an instruction that names %rsp outside a memory
    operand (mov, xchg, ...), by a lea from %rsp, or by enter. A function with
    none of these cannot be flagged, so it is skipped without the 15x slower
    detailed decoding.
    """
    return any(matters(mnemonic, op_str) for _addr, _size, mnemonic, op_str in lite)


def matters(mnemonic: str, op_str: str) -> bool:
    """Whether one instruction keeps its function for the analysis (see `may_use_red_zone`)."""
    if "sp" not in op_str:
        return mnemonic.startswith("enter")
    return _stack_operand_may_matter(mnemonic, op_str)


def _stack_operand_may_matter(mnemonic: str, op_str: str) -> bool:
    for reg in ("%rsp", "%esp", "%sp", "%spl"):
        at = op_str.find(reg)
        while at >= 0:
            inside = op_str.rfind("(", 0, at) > op_str.rfind(")", 0, at)
            if inside:
                # Inside an address %rsp can only be the base (it cannot be an index).
                if mnemonic.startswith("lea") or _below_rsp(op_str):
                    return True
            else:
                is_adjust = mnemonic.startswith(("sub", "add")) and op_str.startswith("$")
                if not is_adjust or not op_str.endswith(reg):
                    return True
            at = op_str.find(reg, at + 1)
    return False


class Facts:
    """What the lite text of one instruction says, read once per distinct text."""

    __slots__ = ("always", "below", "carries", "derefs", "inside", "kind", "names")

    def __init__(
        self,
        kind: str | None,  # control(): call, ret, jmp, jcc or None
        # the registers it names, as a mask of `decode.BIT`: all of them, but for cmp, test and bt
        # (which write none) only those of the memory address
        names: int,
        always: bool,  # push, pop, call, leave, enter, or it writes registers it does not name
        carries: tuple[tuple[int, int], ...],  # (a, b): a stack address in a may reach b; (0, b): b gets one
        inside: int,  # the registers of its memory address
        derefs: int,  # registers in the address of a memory access (not a lea's)
        below: bool,  # an access through %rsp with a negative displacement or an index register
    ) -> None:
        self.kind = kind
        self.names = names
        self.always = always
        self.carries = carries
        self.inside = inside
        self.derefs = derefs
        self.below = below

    def fields(self) -> tuple[str | None, int, bool, tuple[tuple[int, int], ...], int, int, bool]:
        return (self.kind, self.names, self.always, self.carries, self.inside, self.derefs, self.below)


def facts(mnemonic: str, op_str: str) -> Facts:
    """The facts of one instruction's lite text."""
    # A text that names no register says nothing beyond its mnemonic: the branches to every
    # target (`jmp 0x1a2b`) and the immediates then share one entry, and the cache holds the set's
    # distinct texts (78,000 rather than 138,000 on the benchmark set) instead of thrashing.
    if "%" not in op_str:
        return _facts(mnemonic, "")
    return _facts_of_text(mnemonic, op_str)


# How `fact_fields` names a Facts.kind for the compiled analysis (`_function.c`).
KIND_CODES: Final[dict[str | None, int]] = {None: 0, "call": 1, "ret": 2, "jmp": 3, "jcc": 4}
FactFields = tuple[int, int, bool, tuple[tuple[int, int], ...], int, int, bool]


def fact_fields(mnemonic: str, op_str: str) -> FactFields:
    """`facts(mnemonic, op_str).fields()` as the compiled analysis reads them, the kind as
    KIND_CODES. It asks once per shape of text."""
    kind, names, always, carries, inside, derefs, below = facts(mnemonic, op_str).fields()
    return (KIND_CODES[kind], names, always, carries, inside, derefs, below)


# A number that stands alone (a displacement, an immediate, a scale), not the digit of %r8 or %xmm1.
_NUMBER: Final = re.compile(r"(?<![\w%])(?:0x[0-9a-f]+|\d+)")


@lru_cache(maxsize=1 << 17)
def _facts_of_text(mnemonic: str, op_str: str) -> Facts:
    """The facts of a text are those of its shape: the text with every number made 0. No fact
    depends on a number but through its sign, which stays (`-0x18(%rsp)` becomes `-0(%rsp)`), and
    the benchmark set's 78,000 texts have 30,000 shapes, so most texts cost a substitution rather
    than a parse (tests/test_filters.py checks every distinct text of three archives)."""
    return _facts(mnemonic, _NUMBER.sub("0", op_str))


@lru_cache(maxsize=1 << 16)
def _facts(mnemonic: str, op_str: str) -> Facts:
    op = opcode(mnemonic)
    ops = operands(op_str)
    lea = op.startswith("lea")
    derefs = 0 if lea else ops.inside
    below = not lea and ops.base == "rsp" and _below_rsp(op_str)
    # One-operand imul writes %rdx:%rax, which it does not name.
    always = _always(op) or (op.startswith("imul") and "," not in op_str)
    if reads_only(op):
        # cmp, test, bt: only the registers of a memory operand can matter (it is read, and judged).
        return Facts(control(op), ops.inside, always, (), ops.inside, derefs, below)
    return Facts(control(op), ops.outside | ops.inside, always, _carries(op, ops), ops.inside, derefs, below)


@lru_cache(maxsize=4096)
def _always(op: str) -> bool:
    return op.startswith(("push", "pop", "call", "leave", "enter")) or writes_implicitly(op)


def _below_rsp(op_str: str) -> bool:
    paren = op_str.find("(%")
    if paren < 0:
        return False
    after = op_str.find(",", paren)
    if after >= 0 and after < op_str.find(")", paren):
        return True  # an index register, whose known value may be negative
    return op_str[:paren].split(",")[-1].lstrip().startswith(("-", "%fs:-", "%gs:-"))


def may_access_below(facts: list[Facts]) -> bool:
    """Whether the analysis could find anything: the function dereferences a register that may
    hold a stack address, or accesses %rsp with a negative displacement or an index. Sound: a
    verdict needs one of these (the others are never judged), so skipping the rest changes no result.
    """
    derefs = 0
    for fact in facts:
        if fact.below:
            return True
        derefs |= fact.derefs
    derefs &= ~_RSP
    return derefs != 0 and derefs & closure(facts, index_registers=False) != 0


def closure(facts: list[Facts], index_registers: bool) -> int:
    """Registers that can ever hold a stack address (a sound over-approximation), as a mask.

    Flow-insensitive: a graph of "may carry a value to" edges between registers, searched
    from %rsp, so each instruction is read once whatever the length of the chains. With
    `index_registers`, also the registers used beside them in an address: the analysis tracks
    their constant bounds, which decide the verdict.
    """
    edges = [0] * len(GPRS)  # register number -> the registers it may carry a value to
    tracked = _RSP
    for fact in facts:
        for src, dst in fact.carries:
            if src == 0:
                tracked |= dst
            else:
                edges[src.bit_length() - 1] |= dst
        inside = fact.inside
        if index_registers and inside & (inside - 1):  # two registers or more
            for reg in _bits(inside):
                edges[reg.bit_length() - 1] |= inside
    todo = tracked
    while todo:
        low = todo & -todo
        todo ^= low
        new = edges[low.bit_length() - 1] & ~tracked
        tracked |= new
        todo |= new
    return tracked


def _bits(mask: int) -> list[int]:
    """Each register of `mask` as a mask of its own."""
    found = []
    while mask:
        low = mask & -mask
        found.append(low)
        mask ^= low
    return found


def _carries(op: str, ops: Ops) -> tuple[tuple[int, int], ...]:
    outside = _bits(ops.outside)
    if ops.dest is None:
        return ((0, BIT["rbp"]),) if op.startswith("enter") else ()
    dest = BIT[ops.dest]
    found = [(src, dest) for src in outside if src != dest]
    if op.startswith("lea") and ops.base is not None and ops.base != ops.dest:
        found.append((BIT[ops.base], dest))
    if op.startswith("xchg"):
        found.extend((a, b) for a in outside for b in outside if a != b)
    if op.startswith("enter"):
        found.append((0, BIT["rbp"]))
    return tuple(found)
