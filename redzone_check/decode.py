"""Capstone decoders (created once per process) and register naming."""

from __future__ import annotations

from functools import cache

from capstone import CS_ARCH_X86, CS_MODE_64, CS_OPT_SYNTAX_ATT, Cs, CsInsn, x86

_GPR64 = ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp", *(f"r{i}" for i in range(8, 16)))
_ALIASES: dict[str, str] = {}
for _r in ("ax", "bx", "cx", "dx"):
    for _n in (f"r{_r}", f"e{_r}", _r, f"{_r[0]}l", f"{_r[0]}h"):
        _ALIASES[_n] = f"r{_r}"
for _r in ("si", "di", "bp", "sp"):
    for _n in (f"r{_r}", f"e{_r}", _r, f"{_r}l"):
        _ALIASES[_n] = f"r{_r}"
for _i in range(8, 16):
    for _s in ("", "d", "w", "b"):
        _ALIASES[f"r{_i}{_s}"] = f"r{_i}"


@cache
def decoder() -> Cs:
    """Detailed AT&T decoder, as objdump prints instructions."""
    md = Cs(CS_ARCH_X86, CS_MODE_64)
    md.syntax = CS_OPT_SYNTAX_ATT
    md.detail = True
    md.skipdata = True  # padding or data between functions must not stop decoding
    return md


@cache
def lite_decoder() -> Cs:
    md = Cs(CS_ARCH_X86, CS_MODE_64)
    md.syntax = CS_OPT_SYNTAX_ATT
    md.skipdata = True
    return md


@cache
def canonical(reg_id: int) -> str | None:
    """The 64-bit general-purpose register that `reg_id` is part of, or None."""
    if reg_id == 0:
        return None
    name = decoder().reg_name(reg_id)
    return _ALIASES.get(name) if name else None


def is_control(insn: CsInsn) -> str | None:
    """ "call", "ret", "jmp", "jcc" for control transfers, None otherwise."""
    iid = insn.id
    if iid == x86.X86_INS_CALL:
        return "call"
    if iid in _RETS:
        return "ret"
    if iid == x86.X86_INS_JMP or iid == x86.X86_INS_LJMP:
        return "jmp"
    if iid in _JUMPS:
        return "jcc"
    if iid in _STOPS:
        return "ret"
    return None


_RETS = frozenset(
    {
        x86.X86_INS_RET,
        x86.X86_INS_RETF,
        x86.X86_INS_RETFQ,
        x86.X86_INS_IRET,
        x86.X86_INS_IRETD,
        x86.X86_INS_IRETQ,
        x86.X86_INS_SYSRET,
        x86.X86_INS_SYSEXIT,
    }
)
_STOPS = frozenset({x86.X86_INS_UD2, x86.X86_INS_HLT})
_JUMPS = frozenset(
    getattr(x86, n) for n in dir(x86) if n.startswith("X86_INS_J") and n not in ("X86_INS_JMP",)
) | {x86.X86_INS_LOOP, x86.X86_INS_LOOPE, x86.X86_INS_LOOPNE}
assert "rsp" in _GPR64

# Every general-purpose register name (any width) -> its 64-bit register.
REG64: dict[str, str] = dict(_ALIASES)
