"""Detailed decodings boiled down to plain records, cached by instruction bytes and by shape.

The same instruction bytes recur thousands of times in an archive (prologues,
spills); capstone's detail objects are slow to build and to read, so each
distinct encoding is decoded in detail once. Encodings that differ only in a
displacement or an immediate (`mov %rax,-0x18(%rbp)`, `mov %rax,0x20(%rbp)`) share
a shape: the lite text with its numbers taken out, and the same bytes before the
displacement and immediate (prefixes, opcode, ModRM, SIB: capstone describes one
text differently by encoding). The first of a shape is decoded by capstone and
becomes a template; the others are the template with their own numbers, read off
the lite text. tests/test_digest_templates.py checks this against
capstone for every instruction of real archives.
"""

from __future__ import annotations

import ctypes
import re
from collections.abc import Callable
from typing import Any, Final, NamedTuple

from capstone import CS_ERR_OK, _cs, _cs_insn, x86

from redzone_check.decode import canonical, decoder
from redzone_check.native import Detail, native_detail

OP_REG: Final[int] = x86.X86_OP_REG
OP_IMM: Final[int] = x86.X86_OP_IMM
OP_MEM: Final[int] = x86.X86_OP_MEM
_LOCK: Final = 0xF0
_CACHE_LIMIT: Final = 1 << 16  # about 30 MB; a miss of a known shape costs a template, not capstone


# Op and Digest (like filters.Facts and lite.Ops) are plain classes rather than NamedTuples:
# compiled by mypyc their fields are C struct members, where a NamedTuple's go through a
# Python-level attribute lookup on every read (8% of a scan of libc.a).
class Op:
    __slots__ = ("access", "base", "disp", "idx", "imm", "reg", "scale", "size", "type")

    def __init__(
        self,
        type: int,
        reg: str | None,  # 64-bit register for a register operand
        size: int,
        imm: int,
        base: str | None,  # memory operand: 64-bit base register ("rip" and segment-only are None)
        idx: str | None,  # index register
        disp: int,
        access: int,  # CS_AC_READ | CS_AC_WRITE bits
        scale: int = 1,
    ) -> None:
        self.type = type
        self.reg = reg
        self.size = size
        self.imm = imm
        self.base = base
        self.idx = idx
        self.disp = disp
        self.access = access
        self.scale = scale

    def fields(self) -> tuple[int, str | None, int, int, str | None, str | None, int, int, int]:
        return (
            self.type,
            self.reg,
            self.size,
            self.imm,
            self.base,
            self.idx,
            self.disp,
            self.access,
            self.scale,
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Op) and self.fields() == other.fields()

    def __repr__(self) -> str:
        return f"Op{self.fields()!r}"


class Digest:
    __slots__ = ("id", "lock", "ops", "written")

    def __init__(self, id: int, lock: bool, ops: tuple[Op, ...], written: tuple[str, ...]) -> None:
        self.id = id
        self.lock = lock
        self.ops = ops
        self.written = written  # 64-bit registers written, explicitly or not

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Digest) and (self.id, self.lock, self.ops, self.written) == (
            other.id,
            other.lock,
            other.ops,
            other.written,
        )

    def __repr__(self) -> str:
        return f"Digest({self.id}, {self.lock}, {self.ops!r}, {self.written!r})"


_cache: Final[dict[bytes, Digest | None]] = {}
_templates: Final[dict[tuple[str, str, int], list[_Template]]] = {}

# A displacement, an absolute address, a branch target or an immediate: a number that
# stands alone in an operand. Not the digits of %r8 or %st(1), nor a scale.
_NUMBER: Final = re.compile(r"(?<![^\s,:*$])(-?(?:0x[0-9a-f]+|\d+))(?=$|[(,])")


def _signed(bits: int) -> Callable[[int], int]:
    mask, sign = (1 << bits) - 1, 1 << (bits - 1)

    def convert(text: int) -> int:
        value = text & mask
        return value - (1 << bits) if value & sign else value

    return convert


# How capstone's value of an operand may relate to the number it prints.
_MODES: Final = tuple(_signed(bits) for bits in (64, 32, 16, 8))


class _Template(NamedTuple):
    head: bytes  # the encoding up to the first displacement or immediate byte
    digest: Digest
    slots: tuple[tuple[int, bool], ...]  # (operand index, is immediate) for each printed number
    modes: tuple[tuple[int, ...], ...]  # per slot, the indices of _MODES consistent so far


def digest(raw: bytes, address: int, mnemonic: str = "", op_str: str | None = None) -> Digest | None:
    """The digest of one instruction; None when capstone cannot decode it.

    `mnemonic` and `op_str` are its lite text, when the caller has it: instructions
    of a known shape then need no detailed decoding.
    """
    hit = _cache.get(raw)
    if hit is not None or raw in _cache:
        return hit
    if len(_cache) >= _CACHE_LIMIT:
        _cache.clear()
        _templates.clear()
    result = detailed(raw, address) if op_str is None else _from_template(raw, address, mnemonic, op_str)
    # Branch targets depend on the address, but the analysis takes them from the
    # lite decoding; nothing kept here does.
    _cache[raw] = result
    return result


def _from_template(raw: bytes, address: int, mnemonic: str, op_str: str) -> Digest | None:
    parts = _NUMBER.split(op_str)  # text, number, text, number, ..., text
    shape = (mnemonic, "#".join(parts[::2]), len(raw))
    numbers = [int(n, 0) for n in parts[1::2]]
    templates = _templates.setdefault(shape, [])
    for at, template in enumerate(templates):
        if raw.startswith(template.head):
            result = _instantiate(template, numbers)
            if result is None:
                result = _decode(raw, address)[0]
                narrowed = _narrow(template, numbers, result) if result is not None else None
                if narrowed is None:
                    del templates[at]
                else:
                    templates[at] = narrowed
            return result
    result, head = _decode(raw, address)
    if result is not None:
        made = _template(raw[:head], result, numbers)
        if made is not None:
            templates.append(made)
    return result


def detailed(raw: bytes, address: int) -> Digest | None:
    """Capstone's detailed decoding of one instruction, uncached."""
    return _decode(raw, address)[0]


def _decode(raw: bytes, address: int) -> tuple[Digest | None, int]:
    """Capstone's detailed decoding, and how many bytes precede its displacement and immediate.

    Its fields are read in C by the compiled decoder when there is one (tests/test_native.py
    compares the two), else from capstone's ctypes structures.
    """
    native = native_detail()
    if native is not None:
        return _from_native(native(decoder().csh.value, raw, address), len(raw))
    return _decode_ctypes(raw, address)


def _decode_ctypes(raw: bytes, address: int) -> tuple[Digest | None, int]:
    """`_decode`, read straight from capstone's own ctypes structures.

    Its `CsInsn` wrapper copies the instruction, builds a Python object per operand and looks
    every field up by name, which was most of the cost of a detailed decoding.
    tests/test_digest_templates.py checks this against `CsInsn` for every encoding of real archives.
    """
    handle = decoder().csh
    found = ctypes.POINTER(_cs_insn)()
    count = _cs.cs_disasm(handle, raw, len(raw), address, 1, ctypes.byref(found))
    if count == 0:
        return None, len(raw)
    try:
        insn = found[0]
        if insn.id == 0:  # data that skipdata stepped over
            return None, len(raw)
        x = insn.detail.contents.arch.x86
        return _make(handle, found, insn.id, x), _head(raw, x)
    finally:
        _cs.cs_free(found, count)


def _from_native(found: Detail | None, length: int) -> tuple[Digest | None, int]:
    """`_decode`'s result from the compiled decoder's fields: the same records `_make` builds."""
    if found is None:
        return None, length
    insn_id, prefix, operands, written, head = found
    ops = tuple(
        Op(kind, canonical(reg), size, imm, canonical(base), canonical(index), disp, access, scale)
        for kind, reg, size, imm, base, index, disp, access, scale in operands
    )
    names = () if written is None else tuple(sorted({r for r in map(canonical, written) if r is not None}))
    return Digest(insn_id, prefix == _LOCK, ops, names), head


def _head(raw: bytes, x: x86.CsX86) -> int:
    encoding = x.encoding
    return min((o for o in (encoding.disp_offset, encoding.imm_offset) if o), default=len(raw))


def _make(handle: Any, insn: Any, insn_id: int, x: x86.CsX86) -> Digest:
    ops = []
    for op in x.operands[: x.op_count]:
        kind = op.type
        if kind == OP_MEM:
            mem = op.value.mem
            ops.append(
                Op(
                    OP_MEM,
                    None,
                    op.size,
                    0,
                    canonical(mem.base),
                    canonical(mem.index),
                    mem.disp,
                    op.access,
                    mem.scale,
                )
            )
        elif kind == OP_REG:
            ops.append(Op(OP_REG, canonical(op.value.reg), op.size, 0, None, None, 0, op.access))
        elif kind == OP_IMM:
            ops.append(Op(OP_IMM, None, op.size, op.value.imm, None, None, 0, op.access))
        else:
            ops.append(Op(kind, None, op.size, 0, None, None, 0, op.access))
    return Digest(insn_id, x.prefix[0] == _LOCK, tuple(ops), _written(handle, insn))


_RegList = ctypes.c_uint16 * 64


def _written(handle: Any, insn: Any) -> tuple[str, ...]:
    """The 64-bit registers an instruction writes, explicitly or not (none when capstone cannot say)."""
    read, nread, write, nwrite = _RegList(), ctypes.c_uint8(), _RegList(), ctypes.c_uint8()
    status = _cs.cs_regs_access(handle, insn, read, ctypes.byref(nread), write, ctypes.byref(nwrite))
    if status != CS_ERR_OK:
        return ()
    return tuple(sorted({r for r in (canonical(w) for w in write[: nwrite.value]) if r is not None}))


def _template(head: bytes, insn: Digest, numbers: list[int]) -> _Template | None:
    """Which operand field each printed number is, and how it converts; None when unclear."""
    slots: list[tuple[int, bool]] = []
    modes: list[tuple[int, ...]] = []
    remaining_imm = sum(op.type == OP_IMM for op in insn.ops)
    for i, op in enumerate(insn.ops):
        left = len(numbers) - len(slots)
        if op.type == OP_IMM:
            remaining_imm -= 1
        elif op.type != OP_MEM or (op.disp == 0 and left <= remaining_imm):
            continue  # a register, or a memory operand printed without a displacement
        if left == 0:
            return None
        value = op.imm if op.type == OP_IMM else op.disp
        fits = tuple(m for m, convert in enumerate(_MODES) if convert(numbers[len(slots)]) == value)
        if not fits:
            return None
        slots.append((i, op.type == OP_IMM))
        modes.append(fits)
    if len(slots) != len(numbers):
        return None
    return _Template(head, insn, tuple(slots), tuple(modes))


def _instantiate(template: _Template, numbers: list[int]) -> Digest | None:
    """The template with these numbers; None when a number's conversion is not yet decided."""
    if len(numbers) != len(template.slots):
        return None
    ops = list(template.digest.ops)
    for (i, immediate), fits, number in zip(template.slots, template.modes, numbers, strict=True):
        values = {_MODES[m](number) for m in fits}
        if len(values) != 1:
            return None
        value = values.pop()
        o = ops[i]
        if immediate:
            ops[i] = Op(o.type, o.reg, o.size, value, o.base, o.idx, o.disp, o.access, o.scale)
        else:
            ops[i] = Op(o.type, o.reg, o.size, o.imm, o.base, o.idx, value, o.access, o.scale)
    insn = template.digest
    return Digest(insn.id, insn.lock, tuple(ops), insn.written)


def _narrow(template: _Template, numbers: list[int], insn: Digest) -> _Template | None:
    """Keep the conversions that capstone's decoding of this instance agrees with."""
    if len(numbers) != len(template.slots):
        return None
    modes = []
    for (i, immediate), fits, number in zip(template.slots, template.modes, numbers, strict=True):
        op = insn.ops[i]
        value = op.imm if immediate else op.disp
        kept = tuple(m for m in fits if _MODES[m](number) == value)
        if not kept:
            return None
        modes.append(kept)
    return template._replace(modes=tuple(modes))
