"""Cheap facts about instructions from capstone's lite decoding (mnemonic and operand text).

Detailed decoding is about 15x slower, so the analysis decodes in detail only
the instructions that can matter to the stack state; everything here is read
off the AT&T text, memoised per distinct operand string.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Final

from redzone_check.decode import BIT, REG64

_REG: Final = re.compile(r"%([a-z][a-z0-9]*)")
_PREFIXES: Final = frozenset(
    {"lock", "rep", "repe", "repz", "repne", "repnz", "notrack", "bnd", "xacquire", "xrelease"}
)

# Instructions that write general-purpose registers they do not name.
_IMPLICIT: Final = frozenset(
    {
        "cpuid",
        "rdtsc",
        "rdtscp",
        "rdpid",
        "rdmsr",
        "rdpmc",
        "xgetbv",
        "rdpkru",
        "syscall",
        "sysenter",
        "div",
        "idiv",
        "mul",
        "cbtw",
        "cwtl",
        "cltq",
        "cwtd",
        "cltd",
        "cqto",
        "cbw",
        "cwde",
        "cdqe",
        "cwd",
        "cdq",
        "cqo",
        "lods",
        "stos",
        "movs",
        "scas",
        "cmps",
        "ins",
        "outs",
        "xlat",
        "xlatb",
        "cmpxchg",
        "cmpxchg8b",
        "cmpxchg16b",
        "lahf",
        "in",
        "pcmpistri",
        "pcmpestri",
        "vpcmpistri",
        "vpcmpestri",
        "enter",
        "leave",
        "loop",
        "loope",
        "loopne",
        "jrcxz",
        "jecxz",
        "rdrand",
        "rdseed",
        "encls",
        "enclu",
        "getsec",
        "xsusldtrk",
        "senduipi",
        "umwait",
        "tpause",
        "loadiwkey",
        "aesenc128kl",
        "aesdec128kl",
        "aesenc256kl",
        "aesdec256kl",
        "encodekey128",
        "encodekey256",
        "serialize",
        "xbegin",  # %eax gets the abort status
        # VIA PadLock: %rsi, %rdi, %rcx and %rax move with the data
        "xcryptecb",
        "xcryptcbc",
        "xcryptctr",
        "xcryptcfb",
        "xcryptofb",
        "xsha1",
        "xsha256",
        "xstore",
        "montmul",
    }
)
# Instructions that write no general-purpose register: the registers they name are only read.
_READ_ONLY: Final = frozenset(
    f"{op}{suffix}" for op in ("cmp", "test", "bt") for suffix in ("", "b", "w", "l", "q")
)
_SUFFIXES: Final = ("b", "w", "l", "q", "sb", "sw", "sl", "sq")
STOPS: Final = frozenset(
    {
        "ret",
        "retq",
        "retl",
        "retw",
        "lret",
        "lretq",
        "lretl",
        "iret",
        "iretq",
        "iretl",
        "sysret",
        "sysretq",
        "sysretl",
        "sysexit",
        "ud2",
        "ud1",
        "ud0",
        "hlt",
        "ljmp",
        "ljmpq",
        "ljmpl",
    }
)


class Ops:
    """Registers (as 64-bit registers) an operand string names, split by where they appear."""

    __slots__ = ("base", "dest", "has_memory", "inside", "outside")

    def __init__(
        self,
        outside: int,  # named as registers (a mask of `decode.BIT`)
        inside: int,  # used in a memory operand's address (a mask)
        dest: str | None,  # last operand when it is a register
        has_memory: bool,
        base: str | None,  # base register of the memory operand, if any
    ) -> None:
        self.outside = outside
        self.inside = inside
        self.dest = dest
        self.has_memory = has_memory
        self.base = base


@lru_cache(maxsize=65536)
def operands(op_str: str) -> Ops:
    outside = inside = 0
    base = None
    for match in _REG.finditer(op_str):
        reg = REG64.get(match.group(1))
        if reg is None:
            continue
        start = match.start()
        within = op_str.rfind("(", 0, start) > op_str.rfind(")", 0, start)
        if within:
            if base is None and op_str[start - 1] == "(":
                base = reg
            inside |= BIT[reg]
        else:
            outside |= BIT[reg]
    last = op_str.rsplit(",", 1)[-1].strip()
    dest = REG64.get(last[1:]) if last.startswith("%") else None
    return Ops(outside, inside, dest, "(" in op_str, base)


@lru_cache(maxsize=4096)
def opcode(mnemonic: str) -> str:
    """The mnemonic without prefixes such as lock, rep or notrack."""
    words = mnemonic.split()
    while len(words) > 1 and words[0] in _PREFIXES:
        words = words[1:]
    return words[-1] if words else mnemonic


@lru_cache(maxsize=4096)
def writes_implicitly(op: str) -> bool:
    """Whether `op` may write general-purpose registers its operand text does not name
    (one-operand imul, which writes %rdx:%rax, is told apart by its text: see `filters.facts`)."""
    if op in _IMPLICIT:
        return True
    return any(op.endswith(s) and op[: -len(s)] in _IMPLICIT for s in _SUFFIXES)


def reads_only(op: str) -> bool:
    """cmp, test and bt write flags only, so a register they name keeps its value."""
    return op in _READ_ONLY


@lru_cache(maxsize=4096)
def control(op: str) -> str | None:
    """ "call", "ret", "jmp" or "jcc" from an opcode, None for ordinary instructions."""
    if op in STOPS:
        return "ret"
    if op.startswith("call"):
        return "call"
    if op in ("jmp", "jmpq", "jmpl", "jmpw"):
        return "jmp"
    if op.startswith("j") or op.startswith("loop"):
        return "jcc"
    return None


def branch_target(op_str: str) -> int | None:
    """The target of a direct branch (`0x1234`, or `8`: capstone prints numbers below 10 in
    decimal), None for an indirect one (`*%rax`)."""
    if op_str.startswith("0x"):
        try:
            return int(op_str, 16)
        except ValueError:
            return None
    if op_str.isascii() and op_str.isdigit():
        return int(op_str)
    return None
