"""Capstone decoders (created once per process) and register naming."""

from __future__ import annotations

from functools import cache

from capstone import CS_ARCH_X86, CS_MODE_64, CS_OPT_SYNTAX_ATT, Cs

# Every general-purpose register name (any width) -> its 64-bit register.
REG64: dict[str, str] = {}
for _r in ("ax", "bx", "cx", "dx"):
    for _n in (f"r{_r}", f"e{_r}", _r, f"{_r[0]}l", f"{_r[0]}h"):
        REG64[_n] = f"r{_r}"
for _r in ("si", "di", "bp", "sp"):
    for _n in (f"r{_r}", f"e{_r}", _r, f"{_r}l"):
        REG64[_n] = f"r{_r}"
for _i in range(8, 16):
    for _s in ("", "d", "w", "b"):
        REG64[f"r{_i}{_s}"] = f"r{_i}"


# A bit per 64-bit register, for the register sets of the lite filters: sets of up to sixteen
# members are cheaper as ints than as frozensets, and the collector never has to walk an int.
GPRS = ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp", *(f"r{_i}" for _i in range(8, 16)))
BIT: dict[str, int] = {_name: 1 << _i for _i, _name in enumerate(GPRS)}


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
    return REG64.get(name) if name else None
