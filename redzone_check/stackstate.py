"""The stack state and what one instruction does to it: the abstract domain of `stack.py`.

%rsp and every register copied or derived from it hold an interval of byte offsets from a
symbolic base (an "epoch"): the entry %rsp, or a fresh base when %rsp is replaced by something
unknown. Plain numbers (index registers with known bounds) use the CONST epoch.
"""

from __future__ import annotations

from typing import Final

from capstone import CS_AC_WRITE, x86

from redzone_check.decode import BIT, GPRS, canonical
from redzone_check.digest import OP_IMM, OP_MEM, OP_REG, Digest, Op

INF: Final[int] = 1 << 62
CONST: Final[int] = -(1 << 50)  # the "epoch" of plain numbers (index registers with known bounds)

# x87/SSE state stores that capstone marks as reads.
STORES: Final[frozenset[int]] = frozenset(
    {
        x86.X86_INS_FNSTCW,
        x86.X86_INS_FNSTSW,
        x86.X86_INS_FST,
        x86.X86_INS_FSTP,
        x86.X86_INS_FIST,
        x86.X86_INS_FISTP,
        x86.X86_INS_FISTTP,
        x86.X86_INS_FBSTP,
        x86.X86_INS_FNSTENV,
        x86.X86_INS_FNSAVE,
        x86.X86_INS_FXSAVE,
        x86.X86_INS_FXSAVE64,
        x86.X86_INS_STMXCSR,
        x86.X86_INS_VSTMXCSR,
        x86.X86_INS_XSAVE,
        x86.X86_INS_XSAVE64,
        x86.X86_INS_XSAVEOPT,
        x86.X86_INS_XSAVEC,
        x86.X86_INS_SGDT,
        x86.X86_INS_SIDT,
    }
)

# Instructions that only read their operands, even a memory operand in the destination's place.
COMPARES: Final[frozenset[int]] = frozenset(
    {
        x86.X86_INS_CMP,
        x86.X86_INS_TEST,
        x86.X86_INS_BT,
        x86.X86_INS_CMPSB,
        x86.X86_INS_CMPSW,
        x86.X86_INS_CMPSD,
        x86.X86_INS_CMPSQ,
    }
)

NOT_ACCESSES: Final[frozenset[int]] = frozenset(
    {
        x86.X86_INS_NOP,
        x86.X86_INS_LEA,
        x86.X86_INS_PREFETCH,
        x86.X86_INS_PREFETCHNTA,
        x86.X86_INS_PREFETCHT0,
        x86.X86_INS_PREFETCHT1,
        x86.X86_INS_PREFETCHT2,
        x86.X86_INS_PREFETCHW,
        x86.X86_INS_CLFLUSH,
        x86.X86_INS_CLFLUSHOPT,
        x86.X86_INS_ENDBR64,
    }
)

# capstone's ids as compiled constants: read through the module, each was a dict lookup and a
# getattr on every instruction step (mypyc keeps a `Final[int]` as a C static).
_ADD: Final[int] = x86.X86_INS_ADD
_AND: Final[int] = x86.X86_INS_AND
_CALL: Final[int] = x86.X86_INS_CALL
_DEC: Final[int] = x86.X86_INS_DEC
_ENTER: Final[int] = x86.X86_INS_ENTER
_INC: Final[int] = x86.X86_INS_INC
_LEA: Final[int] = x86.X86_INS_LEA
_LEAVE: Final[int] = x86.X86_INS_LEAVE
_MOV: Final[int] = x86.X86_INS_MOV
_OR: Final[int] = x86.X86_INS_OR
_POP: Final[int] = x86.X86_INS_POP
_POPF: Final[int] = x86.X86_INS_POPF
_POPFQ: Final[int] = x86.X86_INS_POPFQ
_PUSH: Final[int] = x86.X86_INS_PUSH
_PUSHF: Final[int] = x86.X86_INS_PUSHF
_PUSHFQ: Final[int] = x86.X86_INS_PUSHFQ
_SUB: Final[int] = x86.X86_INS_SUB
_XCHG: Final[int] = x86.X86_INS_XCHG
_XOR: Final[int] = x86.X86_INS_XOR
WRITE: Final[int] = CS_AC_WRITE  # an operand access bit

_CALLER_SAVED: Final = ("rax", "rcx", "rdx", "rsi", "rdi", "r8", "r9", "r10", "r11")


def flow_constants() -> tuple[object, ...]:
    """The arguments of `_decoder.flow_setup()`: every constant the C analysis (`_stackflow.c`) uses.

    It knows no capstone number or register name of its own; they all come from here and
    `decode.canonical`, so both analyses read instructions the same way.
    """
    names = [canonical(reg_id) for reg_id in range(x86.X86_REG_ENDING)]
    registers = bytes(255 if name is None else GPRS.index(name) for name in names)
    ids = (_ADD, _AND, _CALL, _DEC, _ENTER, _INC, _LEA, _LEAVE, _MOV, _OR, _POP, _POPF, _POPFQ)
    ids_more = (_PUSH, _PUSHF, _PUSHFQ, _SUB, _XCHG, _XOR)
    caller_saved = sum(BIT[reg] for reg in _CALLER_SAVED)
    sets = (tuple(STORES), tuple(COMPARES), tuple(NOT_ACCESSES))
    rsp, rbp = GPRS.index("rsp"), GPRS.index("rbp")
    return (registers, ids + ids_more, *sets, rsp, rbp, caller_saved, OP_REG, OP_IMM, OP_MEM, WRITE)


# Val and State are plain classes rather than dataclasses: compiled by mypyc they become native
# classes whose constructor and __eq__ are C, and the analysis makes millions of them.
class Val:
    """An interval [lo, hi] of byte offsets from the base `epoch`. Never mutated."""

    __slots__ = ("epoch", "hi", "lo")

    def __init__(self, epoch: int, lo: int, hi: int) -> None:
        self.epoch = epoch
        self.lo = lo
        self.hi = hi

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Val):
            return NotImplemented
        return self.epoch == other.epoch and self.lo == other.lo and self.hi == other.hi

    def __hash__(self) -> int:
        return hash((self.epoch, self.lo, self.hi))

    def __repr__(self) -> str:
        return f"Val({self.epoch}, {self.lo}, {self.hi})"

    def add(self, k: int) -> Val:
        return Val(self.epoch, _sat(self.lo + k), _sat(self.hi + k))


class State:
    __slots__ = ("alloca", "origin", "regs", "rsp")

    def __init__(
        self,
        rsp: Val,
        regs: dict[str, Val] | None = None,
        alloca: str | None = None,
        origin: dict[str, int] | None = None,
    ) -> None:
        self.rsp = rsp
        self.regs = regs if regs is not None else {}  # other registers holding stack addresses
        self.alloca = alloca  # register whose value was just subtracted from %rsp
        self.origin = origin if origin is not None else {}  # register -> the lea that made it

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, State):
            return NotImplemented
        return (
            self.rsp == other.rsp
            and self.regs == other.regs
            and self.alloca == other.alloca
            and self.origin == other.origin
        )

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"State({self.rsp!r}, {self.regs!r}, {self.alloca!r}, {self.origin!r})"

    def copy(self) -> State:
        return State(self.rsp, dict(self.regs), self.alloca, dict(self.origin))

    def get(self, reg: str) -> Val | None:
        return self.rsp if reg == "rsp" else self.regs.get(reg)

    def set(self, reg: str, val: Val | None, fresh: int) -> None:
        self.origin.pop(reg, None)
        if reg == "rsp":
            self.rsp = val if val is not None and val.epoch != CONST else Val(fresh, 0, 0)
            self.alloca = None
        elif val is None:
            self.regs.pop(reg, None)
        else:
            self.regs[reg] = val
        if reg == self.alloca:
            self.alloca = None


def _sat(v: int) -> int:
    return max(-INF, min(INF, v))


def judge(op: Op, st: State) -> int | str | None:
    """Offset below the current %rsp of a memory operand, "unknown", or None when not below."""
    base, index, disp = op.base, op.idx, op.disp
    val = st.regs.get(base) if base else None
    if base != "rsp" and (val is None or val.epoch == CONST) and index is not None and op.scale == 1:
        # `-0x1(%rax,%r13,1)` with %r13 = %rsp-0x18: the stack address is the index.
        ival = st.get(index)
        if ival is not None and ival.epoch != CONST:
            base, index, val = index, base, ival
    if base is None:
        return None
    if index is not None and index == st.alloca and base == "rsp":
        return None  # alloca/stack-clash probe: inside what was just allocated
    # An index register is assumed >= 0 unless a constant lower bound is known, so the
    # lowest address is base + disp + scale * bound.
    disp += _index_floor(st, index, op.scale)
    if base == "rsp":
        return disp if disp < 0 else None
    if val is None or val.epoch == CONST:
        return None
    if val.epoch != st.rsp.epoch:
        return "unknown"
    lo = val.lo - st.rsp.hi + disp
    hi = val.hi - st.rsp.lo + disp
    if lo >= 0:
        return None
    if hi < 0:
        return hi
    return "unknown"


def _index_floor(st: State, index: str | None, scale: int) -> int:
    if index is None:
        return 0
    val = st.regs.get(index)
    if val is None or val.epoch != CONST or val.lo <= -INF:
        return 0
    return scale * val.lo


def writes(insn: Digest, index: int) -> bool:
    """Whether the instruction writes its memory operand `index`.

    capstone 5 marks the memory destination of many stores as read only: `movups`, `movq`, `movhps`,
    `vmovdqu`, `vmovdqa64`, `movntdq`, `lock cmpxchg`, `rorl`, `insb` among others. Its operands are
    in AT&T order, where the last of two or more is the destination, and every instruction but a
    compare writes its destination.
    """
    ops = insn.ops
    if ops[index].access & WRITE or insn.id in STORES:
        return True
    return len(ops) >= 2 and index == len(ops) - 1 and insn.id not in COMPARES


def is_fence(insn: Digest) -> bool:
    # `lock orl $0,-0x40(%rsp)` orders memory and changes nothing it touches.
    if not insn.lock or insn.id not in (_OR, _ADD):
        return False
    return any(op.type == OP_IMM and op.imm == 0 for op in insn.ops)


def join(a: State, b: State, where: int, widen: bool) -> State:
    rsp = join_val(a.rsp, b.rsp, where, widen)
    regs = {}
    for reg, va in a.regs.items():
        vb = b.regs.get(reg)
        if vb is not None and vb.epoch == va.epoch:
            regs[reg] = join_val(va, vb, where, widen)
    alloca = a.alloca if a.alloca == b.alloca else None
    origin = {r: at for r, at in a.origin.items() if b.origin.get(r) == at and r in regs}
    return State(rsp, regs, alloca, origin)


def join_val(a: Val, b: Val, where: int, widen: bool) -> Val:
    if a.epoch != b.epoch:
        return Val(-(1 << 40) - where, 0, 0)
    lo, hi = min(a.lo, b.lo), max(a.hi, b.hi)
    if widen:
        lo = -INF if lo < a.lo else lo
        hi = INF if hi > a.hi else hi
    return Val(a.epoch, lo, hi)


def transfer(insn: Digest, st: State, fresh: int) -> None:
    """Update the stack state for one instruction (its effect on %rsp and derived registers)."""
    iid = insn.id
    ops = insn.ops
    if iid in (_PUSH, _PUSHFQ, _PUSHF):
        size = ops[0].size if ops and ops[0].type != OP_IMM else 8
        st.rsp = st.rsp.add(-(2 if size == 2 else 8))
        return
    if iid in (_POP, _POPFQ, _POPF):
        size = ops[0].size if ops else 8
        dest = ops[0].reg if ops and ops[0].type == OP_REG else None
        st.rsp = st.rsp.add(2 if size == 2 else 8)
        if dest is not None:
            st.set(dest, None, fresh)
        return
    if iid == _CALL:
        for reg in _CALLER_SAVED:
            st.regs.pop(reg, None)
        return
    if iid == _LEAVE:
        rbp = st.regs.pop("rbp", None)
        st.set("rsp", rbp.add(8) if rbp is not None else None, fresh)
        return
    if iid == _ENTER:
        st.rsp = st.rsp.add(-8)
        st.regs["rbp"] = st.rsp
        st.rsp = st.rsp.add(-int(ops[0].imm))
        return
    if _transfer_arith(insn, st, fresh):
        return
    _clobber(insn, st, fresh)


def _operands(insn: Digest) -> tuple[Op | None, Op | None]:
    """(source, destination) whatever the syntax: the destination is the written operand."""
    ops = insn.ops
    if len(ops) != 2:
        return None, None
    if ops[1].access & WRITE and not ops[0].access & WRITE:
        return ops[0], ops[1]
    if ops[0].access & WRITE and not ops[1].access & WRITE:
        return ops[1], ops[0]
    return None, None


def _reg64(op: Op | None) -> str | None:
    if op is None or op.type != OP_REG or op.size != 8:
        return None
    return op.reg


def _transfer_arith(insn: Digest, st: State, fresh: int) -> bool:
    iid = insn.id
    if iid == _XCHG and len(insn.ops) == 2:
        a, b = (_reg64(op) for op in insn.ops)
        if a and b:
            va, vb = st.get(a), st.get(b)
            st.set(a, vb, fresh)
            st.set(b, va, fresh)
            return True
        return False
    if iid in (_INC, _DEC) and len(insn.ops) == 1:
        r = _reg64(insn.ops[0]) or _reg32(insn.ops[0])
        cur = st.get(r) if r else None
        if r is None or cur is None:
            return False
        new = cur.add(1 if iid == _INC else -1)
        st.set(r, new if _fits(insn.ops[0], new) else None, fresh)
        return True
    src, dst = _operands(insn)
    if src is None or dst is None:
        return False
    if _transfer_const(iid, src, dst, st, fresh):
        return True
    d = _reg64(dst)
    if d is None:
        return False
    cur = st.get(d)
    if iid == _MOV:
        s = _reg64(src)
        st.set(d, st.get(s) if s else None, fresh)
        if s in st.origin:
            st.origin[d] = st.origin[s]
        return True
    if iid == _LEA:
        base = src.base
        bval = st.get(base) if base else None
        val = bval.add(src.disp) if bval is not None and src.idx is None else None
        st.set(d, val, fresh)
        if val is not None and val.epoch != CONST and d != "rsp":
            st.origin[d] = fresh - 1
        return True
    if iid in (_SUB, _ADD) and cur is not None:
        sign = -1 if iid == _SUB else 1
        if src.type == OP_IMM:
            new = cur.add(sign * int(src.imm))
            alloca = st.alloca
            st.set(d, new, fresh)
            st.alloca = alloca if d != "rsp" else None
            return True
        s = _reg64(src)
        sval = st.get(s) if s is not None else None
        if d == "rsp" and s is not None and (sval is None or sval.epoch == CONST):
            # alloca: %rsp moves down (sub) or up (add) by a non-negative amount, known or not.
            lo, hi = (sval.lo, sval.hi) if sval is not None and sval.lo >= 0 else (0, INF)
            if sign < 0:
                st.rsp = Val(cur.epoch, _sat(cur.lo - hi), _sat(cur.hi - lo))
            else:
                st.rsp = Val(cur.epoch, _sat(cur.lo + lo), _sat(cur.hi + hi))
            st.alloca = s if sign < 0 else None
            return True
        st.set(d, None, fresh)
        return True
    if iid == _AND and cur is not None and src.type == OP_IMM:
        mask = int(src.imm)
        if mask < 0 and (-mask) & (-mask - 1) == 0:
            # Aligning down by 2^k lowers the value by at most 2^k - 1.
            alloca = st.alloca
            st.set(d, Val(cur.epoch, _sat(cur.lo + mask + 1), cur.hi), fresh)
            st.alloca = alloca if d != "rsp" else None
            return True
    return False


def _reg32(op: Op | None) -> str | None:
    if op is None or op.type != OP_REG or op.size != 4:
        return None
    return op.reg


def _fits(op: Op, val: Val) -> bool:
    """Whether a value written to a 32-bit register stays what it was (zero extension)."""
    if op.size == 8:
        return True
    return val.epoch == CONST and val.lo >= 0 and val.hi < (1 << 31)


def _transfer_const(iid: int, src: Op, dst: Op, st: State, fresh: int) -> bool:
    """Plain numbers in 32-bit registers: `mov $16,%eax`, `xor %eax,%eax`, `add $1,%eax`."""
    d = _reg32(dst)
    if d is None:
        if iid == _MOV and src.type == OP_IMM and dst.type == OP_REG and dst.size == 8:
            st.set(dst.reg or "", Val(CONST, src.imm, src.imm), fresh)
            return True
        return False
    if iid == _MOV and src.type == OP_IMM:
        value = src.imm & 0xFFFFFFFF
        st.set(d, Val(CONST, value, value), fresh)
        return True
    if iid == _XOR and src.type == OP_REG and src.reg == d:
        st.set(d, Val(CONST, 0, 0), fresh)
        return True
    if iid == _MOV and src.type == OP_REG and src.reg:
        val = st.get(src.reg)
        st.set(d, val if val is not None and _fits(dst, val) else None, fresh)
        return True
    cur = st.get(d)
    if iid in (_ADD, _SUB) and src.type == OP_IMM and cur is not None:
        new = cur.add(src.imm if iid == _ADD else -src.imm)
        st.set(d, new if _fits(dst, new) else None, fresh)
        return True
    st.set(d, None, fresh)
    return True


def _clobber(insn: Digest, st: State, fresh: int) -> None:
    for reg in insn.written:
        if reg == st.alloca:
            st.alloca = None
        if reg == "rsp":
            st.set("rsp", None, fresh)
        else:
            st.regs.pop(reg, None)
