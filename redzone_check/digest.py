"""Detailed decodings boiled down to plain tuples, cached by instruction bytes.

The same instruction bytes recur thousands of times in an archive (prologues,
spills); capstone's detail objects are slow to build and to read, so each
distinct encoding is decoded in detail once.
"""

from __future__ import annotations

from typing import NamedTuple

from capstone import x86

from redzone_check.decode import canonical, decoder

OP_REG = x86.X86_OP_REG
OP_IMM = x86.X86_OP_IMM
OP_MEM = x86.X86_OP_MEM
_LOCK = 0xF0
_CACHE_LIMIT = 1 << 18


class Op(NamedTuple):
    type: int
    reg: str | None  # 64-bit register for a register operand
    size: int
    imm: int
    base: str | None  # memory operand: 64-bit base register ("rip" and segment-only are None)
    idx: str | None  # index register
    disp: int
    access: int  # CS_AC_READ | CS_AC_WRITE bits
    scale: int = 1


class Digest(NamedTuple):
    id: int
    lock: bool
    ops: tuple[Op, ...]
    written: tuple[str, ...]  # 64-bit registers written, explicitly or not


_cache: dict[bytes, Digest | None] = {}


def digest(raw: bytes, address: int) -> Digest | None:
    """The digest of one instruction; None when capstone cannot decode it."""
    hit = _cache.get(raw)
    if hit is not None or raw in _cache:
        return hit
    found = list(decoder().disasm(raw, address, 1))
    result = _make(found[0]) if found else None
    if len(_cache) >= _CACHE_LIMIT:
        _cache.clear()
    # Branch targets depend on the address, but the analysis takes them from the
    # lite decoding; nothing kept here does.
    _cache[raw] = result
    return result


def _make(insn: x86.CsInsn) -> Digest:
    ops = []
    for op in insn.operands:
        if op.type == OP_MEM:
            mem = op.mem
            ops.append(
                Op(
                    OP_MEM,
                    None,
                    op.size,
                    0,
                    canonical(mem.base),
                    canonical(mem.index),
                    int(mem.disp),
                    op.access,
                    int(mem.scale),
                )
            )
        elif op.type == OP_REG:
            ops.append(Op(OP_REG, canonical(op.reg), op.size, 0, None, None, 0, op.access))
        elif op.type == OP_IMM:
            ops.append(Op(OP_IMM, None, op.size, int(op.imm), None, None, 0, op.access))
        else:
            ops.append(Op(op.type, None, op.size, 0, None, None, 0, op.access))
    try:
        _read, written_ids = insn.regs_access()
    except Exception:  # capstone cannot describe some instructions
        written_ids = []
    written = tuple(sorted({r for r in (canonical(w) for w in written_ids) if r is not None}))
    return Digest(insn.id, insn.prefix[0] == _LOCK, tuple(ops), written)
