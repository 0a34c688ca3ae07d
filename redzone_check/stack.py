"""One function -> the instructions that touch memory below the current %rsp.

The analysis is an abstract interpretation over the function's control-flow
graph. %rsp and every register copied or derived from it hold an interval of
offsets from a symbolic base (an "epoch"): the entry %rsp, or a fresh base when
%rsp is replaced by something unknown. An access through %rsp itself is always
judged against the current %rsp, whatever its offset from entry; an access
through a derived register is judged by the difference of the two intervals,
and is "unknown" (counted, never reported) when that difference is not decided.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from capstone import CS_AC_WRITE, CsInsn, x86

from redzone_check.decode import canonical, decoder, is_control, lite_decoder

INF = 1 << 62
_WIDEN_AFTER = 6

# x87/SSE state stores that capstone marks as reads.
_STORES = frozenset(
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
_NOT_ACCESSES = frozenset(
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
_CALLER_SAVED = ("rax", "rcx", "rdx", "rsi", "rdi", "r8", "r9", "r10", "r11")
_X86_PREFIX_LOCK = 0xF0


@dataclass(frozen=True)
class Val:
    """An interval [lo, hi] of byte offsets from the base `epoch`."""

    epoch: int
    lo: int
    hi: int

    def add(self, k: int) -> Val:
        return Val(self.epoch, _sat(self.lo + k), _sat(self.hi + k))


def _sat(v: int) -> int:
    return max(-INF, min(INF, v))


@dataclass
class State:
    rsp: Val
    regs: dict[str, Val] = field(default_factory=dict)  # other registers holding stack addresses
    alloca: str | None = None  # register whose value was just subtracted from %rsp

    def copy(self) -> State:
        return State(self.rsp, dict(self.regs), self.alloca)

    def get(self, reg: str) -> Val | None:
        return self.rsp if reg == "rsp" else self.regs.get(reg)

    def set(self, reg: str, val: Val | None, fresh: int) -> None:
        if reg == "rsp":
            self.rsp = val if val is not None else Val(fresh, 0, 0)
            self.alloca = None
        elif val is None:
            self.regs.pop(reg, None)
        else:
            self.regs[reg] = val
        if reg == self.alloca:
            self.alloca = None


@dataclass(frozen=True)
class Access:
    index: int  # into the decoded instruction list
    kind: str  # read | write
    rsp_offset: int
    size: int
    benign: bool


@dataclass
class Analysis:
    accesses: list[Access]
    unknown: int  # accesses whose relation to the current %rsp is not decided
    insns: list[CsInsn]


def analyse(code: bytes | memoryview, base: int, relocatable: bool = False) -> Analysis:
    """Decode `code` (one function, placed at `base`) and find accesses below the current %rsp.

    In a relocatable object a branch to another function is a rel32 of zero
    waiting for its relocation; it is a tail call, not a jump to the next instruction.
    """
    insns = list(decoder().disasm(bytes(code), base))
    return _Analyser(insns, relocatable).run()


def may_use_red_zone(code: bytes | memoryview, base: int) -> bool:
    """A sound, cheap prefilter on the lite decoding.

    The full analysis can only report an access whose base is %rsp with a
    negative displacement, or whose base register was derived from %rsp by an
    instruction that names %rsp outside a memory operand (mov, xchg, ...), by
    a lea from %rsp, or by enter. A function with none of these cannot be
    flagged, so it is skipped without the 15x slower detailed decoding.
    """
    for _addr, _size, mnemonic, op_str in lite_decoder().disasm_lite(bytes(code), base):
        if "sp" not in op_str:
            if mnemonic.startswith("enter"):
                return True
            continue
        if _stack_operand_may_matter(mnemonic, op_str):
            return True
    return False


def _stack_operand_may_matter(mnemonic: str, op_str: str) -> bool:
    for reg in ("%rsp", "%esp", "%sp", "%spl"):
        at = op_str.find(reg)
        while at >= 0:
            inside = op_str.rfind("(", 0, at) > op_str.rfind(")", 0, at)
            if inside:
                if mnemonic.startswith("lea"):
                    return True
                paren = op_str.rfind("(", 0, at)
                if op_str[:paren].split(",")[-1].lstrip().startswith(("-", "%fs:-", "%gs:-")):
                    return True
            else:
                is_adjust = mnemonic.startswith(("sub", "add")) and op_str.startswith("$")
                if not is_adjust or not op_str.endswith(reg):
                    return True
            at = op_str.find(reg, at + 1)
    return False


class _Analyser:
    def __init__(self, insns: list[CsInsn], relocatable: bool) -> None:
        self.insns = insns
        self.relocatable = relocatable
        self.at = {insn.address: i for i, insn in enumerate(insns)}
        self.state_in: list[State | None] = [None] * len(insns)
        self.visits = [0] * len(insns)
        self.indirect: State | None = None

    def run(self) -> Analysis:
        if not self.insns:
            return Analysis([], 0, self.insns)
        self._flow(0, State(Val(0, 0, 0)))
        while True:
            todo = next((i for i, s in enumerate(self.state_in) if s is None), None)
            if todo is None:
                break
            # Jump-table targets get the state at the indirect jump; code nothing
            # reaches gets a fresh %rsp base, so only %rsp-relative verdicts hold.
            seed = self.indirect.copy() if self.indirect else State(Val(-2 - todo, 0, 0))
            self._flow(todo, seed)
        return self._verdicts()

    def _flow(self, start: int, seed: State) -> None:
        work = [start]
        self._merge_into(start, seed)
        while work:
            i = work.pop()
            state = self.state_in[i]
            assert state is not None
            out = state.copy()
            succs = self._step(i, out)
            for j in succs:
                if self._merge_into(j, out):
                    work.append(j)

    def _merge_into(self, j: int, incoming: State) -> bool:
        old = self.state_in[j]
        if old is None:
            self.state_in[j] = incoming.copy()
            return True
        self.visits[j] += 1
        merged = _join(old, incoming, j, self.visits[j] > _WIDEN_AFTER)
        if merged == old:
            return False
        self.state_in[j] = merged
        return True

    def _succ(self, target: int) -> list[int]:
        j = self.at.get(target)
        return [] if j is None else [j]

    def _step(self, i: int, st: State) -> list[int]:
        insn = self.insns[i]
        transfer(insn, st, fresh=insn.address + 1)
        nxt = [i + 1] if i + 1 < len(self.insns) else []
        kind = is_control(insn)
        if kind is None or kind == "call":
            return nxt
        if kind == "ret":
            return []
        target = _direct_target(insn)
        if self.relocatable and _unrelocated(insn):
            target = None
            if kind == "jmp":
                return []  # a tail call
        if kind == "jmp":
            if target is None:
                self.indirect = st.copy() if self.indirect is None else _join(self.indirect, st, -1, True)
                return []
            return self._succ(target)  # a target outside the function is a tail call
        return nxt + ([] if target is None else self._succ(target))  # conditional

    def _verdicts(self) -> Analysis:
        accesses: list[Access] = []
        unknown = 0
        for i, insn in enumerate(self.insns):
            state = self.state_in[i]
            if state is None or insn.id in _NOT_ACCESSES:
                continue
            for op in insn.operands:
                if op.type != x86.X86_OP_MEM:
                    continue
                verdict = judge(insn, op, state)
                if isinstance(verdict, str):
                    unknown += 1
                elif verdict is not None:
                    write = bool(op.access & CS_AC_WRITE) or insn.id in _STORES
                    benign = _is_fence(insn)
                    accesses.append(Access(i, "write" if write else "read", verdict, op.size, benign))
        return Analysis(accesses, unknown, self.insns)


def judge(insn: CsInsn, op: x86.X86Op, st: State) -> int | str | None:
    """Offset below the current %rsp of a memory operand, "unknown", or None when not below."""
    mem = op.mem
    if mem.base == 0:
        return None
    base = canonical(mem.base)
    index = canonical(mem.index) if mem.index else None
    if base is None:
        return None
    disp = int(mem.disp)
    if base == "rsp":
        if index is not None and index == st.alloca:
            return None  # alloca/stack-clash probe: inside what was just allocated
        # An index register is assumed >= 0, so the lowest address is rsp + disp.
        return disp if disp < 0 else None
    val = st.regs.get(base)
    if val is None:
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


def _is_fence(insn: CsInsn) -> bool:
    # `lock orl $0,-0x40(%rsp)` orders memory and changes nothing it touches.
    if insn.prefix[0] != _X86_PREFIX_LOCK or insn.id not in (x86.X86_INS_OR, x86.X86_INS_ADD):
        return False
    return any(op.type == x86.X86_OP_IMM and op.imm == 0 for op in insn.operands)


def _direct_target(insn: CsInsn) -> int | None:
    ops = insn.operands
    if len(ops) == 1 and ops[0].type == x86.X86_OP_IMM:
        return int(ops[0].imm)
    return None


def _unrelocated(insn: CsInsn) -> bool:
    raw = bytes(insn.bytes)
    if len(raw) < 5 or raw[-4:] != b"\0\0\0\0":
        return False
    return raw[-5] == 0xE9 or (len(raw) >= 6 and raw[-6] == 0x0F and 0x80 <= raw[-5] <= 0x8F)


def _join(a: State, b: State, where: int, widen: bool) -> State:
    rsp = _join_val(a.rsp, b.rsp, where, widen)
    regs = {}
    for reg, va in a.regs.items():
        vb = b.regs.get(reg)
        if vb is not None and vb.epoch == va.epoch:
            regs[reg] = _join_val(va, vb, where, widen)
    alloca = a.alloca if a.alloca == b.alloca else None
    return State(rsp, regs, alloca)


def _join_val(a: Val, b: Val, where: int, widen: bool) -> Val:
    if a.epoch != b.epoch:
        return Val(-(1 << 40) - where, 0, 0)
    lo, hi = min(a.lo, b.lo), max(a.hi, b.hi)
    if widen:
        lo = -INF if lo < a.lo else lo
        hi = INF if hi > a.hi else hi
    return Val(a.epoch, lo, hi)


def transfer(insn: CsInsn, st: State, fresh: int) -> None:
    """Update the stack state for one instruction (its effect on %rsp and derived registers)."""
    iid = insn.id
    ops = insn.operands
    if iid in (x86.X86_INS_PUSH, x86.X86_INS_PUSHFQ, x86.X86_INS_PUSHF):
        size = ops[0].size if ops and ops[0].type != x86.X86_OP_IMM else 8
        st.rsp = st.rsp.add(-(2 if size == 2 else 8))
        return
    if iid in (x86.X86_INS_POP, x86.X86_INS_POPFQ, x86.X86_INS_POPF):
        size = ops[0].size if ops else 8
        dest = canonical(ops[0].reg) if ops and ops[0].type == x86.X86_OP_REG else None
        st.rsp = st.rsp.add(2 if size == 2 else 8)
        if dest is not None:
            st.set(dest, None, fresh)
        return
    if iid == x86.X86_INS_CALL:
        for reg in _CALLER_SAVED:
            st.regs.pop(reg, None)
        return
    if iid == x86.X86_INS_LEAVE:
        rbp = st.regs.pop("rbp", None)
        st.set("rsp", rbp.add(8) if rbp is not None else None, fresh)
        return
    if iid == x86.X86_INS_ENTER:
        st.rsp = st.rsp.add(-8)
        st.regs["rbp"] = st.rsp
        st.rsp = st.rsp.add(-int(ops[0].imm))
        return
    if iid in (x86.X86_INS_RET, x86.X86_INS_JMP) or iid in _JCC:
        return
    if _transfer_arith(insn, st, fresh):
        return
    _clobber(insn, st, fresh)


_JCC = frozenset(
    getattr(x86, name) for name in dir(x86) if name.startswith("X86_INS_J") and name not in ("X86_INS_JMP",)
) | {x86.X86_INS_LOOP, x86.X86_INS_LOOPE, x86.X86_INS_LOOPNE}


def _operands(insn: CsInsn) -> tuple[x86.X86Op | None, x86.X86Op | None]:
    """(source, destination) whatever the syntax: the destination is the written operand."""
    ops = list(insn.operands)
    if len(ops) != 2:
        return None, None
    if ops[1].access & CS_AC_WRITE and not ops[0].access & CS_AC_WRITE:
        return ops[0], ops[1]
    if ops[0].access & CS_AC_WRITE and not ops[1].access & CS_AC_WRITE:
        return ops[1], ops[0]
    return None, None


def _reg64(op: x86.X86Op | None) -> str | None:
    if op is None or op.type != x86.X86_OP_REG or op.size != 8:
        return None
    return canonical(op.reg)


def _transfer_arith(insn: CsInsn, st: State, fresh: int) -> bool:
    iid = insn.id
    if iid == x86.X86_INS_XCHG and len(insn.operands) == 2:
        a, b = (_reg64(op) for op in insn.operands)
        if a and b:
            va, vb = st.get(a), st.get(b)
            st.set(a, vb, fresh)
            st.set(b, va, fresh)
            return True
        return False
    src, dst = _operands(insn)
    d = _reg64(dst)
    if d is None or src is None:
        return False
    cur = st.get(d)
    if iid == x86.X86_INS_MOV:
        s = _reg64(src)
        st.set(d, st.get(s) if s else None, fresh)
        return True
    if iid == x86.X86_INS_LEA:
        mem = src.mem
        base = canonical(mem.base) if mem.base else None
        bval = st.get(base) if base else None
        val = bval.add(mem.disp) if bval is not None and mem.index == 0 else None
        st.set(d, val, fresh)
        return True
    if iid in (x86.X86_INS_SUB, x86.X86_INS_ADD) and cur is not None:
        sign = -1 if iid == x86.X86_INS_SUB else 1
        if src.type == x86.X86_OP_IMM:
            new = cur.add(sign * int(src.imm))
            alloca = st.alloca
            st.set(d, new, fresh)
            st.alloca = alloca if d != "rsp" else None
            return True
        s = _reg64(src)
        if d == "rsp" and s is not None and st.get(s) is None:
            # alloca: %rsp moves down (sub) or up (add) by an unknown, non-negative amount.
            st.rsp = Val(cur.epoch, -INF, cur.hi) if sign < 0 else Val(cur.epoch, cur.lo, INF)
            st.alloca = s if sign < 0 else None
            return True
        st.set(d, None, fresh)
        return True
    if iid == x86.X86_INS_AND and cur is not None and src.type == x86.X86_OP_IMM:
        mask = int(src.imm)
        if mask < 0 and (-mask) & (-mask - 1) == 0:
            # Aligning down by 2^k lowers the value by at most 2^k - 1.
            alloca = st.alloca
            st.set(d, Val(cur.epoch, _sat(cur.lo + mask + 1), cur.hi), fresh)
            st.alloca = alloca if d != "rsp" else None
            return True
    return False


def _clobber(insn: CsInsn, st: State, fresh: int) -> None:
    try:
        _read, written = insn.regs_access()
    except Exception:  # capstone cannot describe some instructions; be conservative
        written = []
    for reg_id in written:
        reg = canonical(reg_id)
        if reg is None:
            continue
        if reg == st.alloca:
            st.alloca = None
        if reg == "rsp":
            st.set("rsp", None, fresh)
        else:
            st.regs.pop(reg, None)


def offending(analysis: Analysis) -> Iterator[tuple[CsInsn, Access]]:
    for access in analysis.accesses:
        yield analysis.insns[access.index], access


def instruction_text(insn: CsInsn) -> str:
    return f"{insn.mnemonic} {insn.op_str}".strip()


def iter_functions_code(items: Iterable[tuple[bytes, int]]) -> Iterator[Analysis]:
    for code, base in items:
        yield analyse(code, base)
