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

import heapq
from collections.abc import Callable
from dataclasses import dataclass, field

from capstone import CS_AC_WRITE, x86

from redzone_check.decode import lite_decoder
from redzone_check.digest import OP_IMM, OP_MEM, OP_REG, Digest, Op, digest
from redzone_check.lite import branch_target, control, opcode, operands, writes_implicitly

INF = 1 << 62
CONST = -(1 << 50)  # the "epoch" of plain numbers (index registers with known bounds)
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
    origin: dict[str, int] = field(default_factory=dict)  # register -> the lea that made it

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


@dataclass(frozen=True)
class Access:
    address: int
    text: str
    kind: str  # read | write | address (the lea whose result an offending access used)
    rsp_offset: int
    size: int
    benign: bool


@dataclass
class Analysis:
    accesses: list[Access]
    unknown: int  # accesses whose relation to the current %rsp is not decided


def analyse(code: bytes | memoryview, base: int, relocatable: bool = False) -> Analysis:
    """Decode `code` (one function, placed at `base`) and find accesses below the current %rsp.

    In a relocatable object a branch to another function is a rel32 of zero
    waiting for its relocation; it is a tail call, not a jump to the next instruction.
    """
    return _Analyser(bytes(code), base, relocatable).run()


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


@dataclass
class _Block:
    start: int  # index into the lite list
    end: int  # one past the last instruction
    succs: list[int] = field(default_factory=list)  # block indices
    indirect: bool = False  # ends in an indirect jump
    # (address, instruction text, digest) of the instructions that matter to the stack state
    steps: list[tuple[int, str, Digest]] | None = None


class _Analyser:
    """Dataflow over basic blocks, decoding in detail only instructions that matter."""

    def __init__(self, code: bytes, base: int, relocatable: bool) -> None:
        self.code = code
        self.base = base
        self.relocatable = relocatable
        self.lite = list(lite_decoder().disasm_lite(code, base))
        self.at = {insn[0]: i for i, insn in enumerate(self.lite)}
        self.tracked = self._closure()
        self.blocks = self._blocks()
        self.state_in: list[State | None] = [None] * len(self.blocks)
        self.visits = [0] * len(self.blocks)
        self.indirect: State | None = None
        self._rpo: list[int] | None = None

    def _closure(self) -> frozenset[str]:
        """Registers that can ever hold a stack address (a sound over-approximation)."""
        tracked = {"rsp"}
        if any(opcode(m).startswith("enter") for _, _, m, _ in self.lite):
            tracked.add("rbp")
        changed = True
        while changed:
            changed = False
            for _addr, _size, mnemonic, op_str in self.lite:
                ops = operands(op_str)
                if ops.inside & tracked and ops.inside - tracked:
                    # A register next to a stack address: its constant lower bound decides the verdict.
                    tracked |= ops.inside
                    changed = True
                if ops.dest is None or ops.dest in tracked:
                    if (
                        opcode(mnemonic).startswith("xchg")
                        and ops.outside & tracked
                        and ops.outside - tracked
                    ):
                        tracked |= ops.outside
                        changed = True
                    continue
                derives = bool(ops.outside & tracked) or (
                    opcode(mnemonic).startswith("lea") and ops.base in tracked
                )
                if derives:
                    tracked.add(ops.dest)
                    changed = True
        return frozenset(tracked)

    def _relevant(self, i: int) -> bool:
        _addr, _size, mnemonic, op_str = self.lite[i]
        op = opcode(mnemonic)
        ops = operands(op_str)
        if ops.outside & self.tracked or ops.inside & self.tracked:
            return True
        if op.startswith(("push", "pop", "call", "leave", "enter")):
            return True
        return writes_implicitly(op)

    def _detail(self, i: int) -> Digest | None:
        addr, size, _, _ = self.lite[i]
        off = addr - self.base
        return digest(self.code[off : off + size], addr)

    def _blocks(self) -> list[_Block]:
        lite = self.lite
        at = self.at
        leaders = {0} if lite else set()
        ends: dict[int, tuple[str, int | None]] = {}
        for i, (addr, size, mnemonic, op_str) in enumerate(lite):
            kind = control(opcode(mnemonic))
            if kind is None or kind == "call":
                continue
            target = branch_target(op_str) if kind != "ret" else None
            if target is not None and self.relocatable and self._unrelocated(addr, size):
                target = -1  # a branch to another function, resolved by a relocation
            ends[i] = (kind, target)
            if i + 1 < len(lite):
                leaders.add(i + 1)
            if target is not None and target in at:
                leaders.add(at[target])
        starts = sorted(leaders)
        index_of = {start: b for b, start in enumerate(starts)}
        blocks = []
        for b, start in enumerate(starts):
            end = starts[b + 1] if b + 1 < len(starts) else len(lite)
            block = _Block(start, end)
            last = end - 1
            kind, target = ends.get(last, (None, None))
            falls = kind in (None, "jcc") and end < len(lite)
            if falls:
                block.succs.append(b + 1)
            if kind in ("jmp", "jcc") and target is not None and target in at:
                block.succs.append(index_of[at[target]])
            block.indirect = kind == "jmp" and target is None
            blocks.append(block)
        return blocks

    def _unrelocated(self, addr: int, size: int) -> bool:
        off = addr - self.base
        raw = self.code[off : off + size]
        if len(raw) < 5 or raw[-4:] != b"\0\0\0\0":
            return False
        return raw[-5] == 0xE9 or (len(raw) >= 6 and raw[-6] == 0x0F and 0x80 <= raw[-5] <= 0x8F)

    def run(self) -> Analysis:
        if not self.blocks:
            return Analysis([], 0)
        self._flow(0, State(Val(0, 0, 0)))
        while True:
            todo = next((b for b, s in enumerate(self.state_in) if s is None), None)
            if todo is None:
                break
            # Jump-table targets get the state at the indirect jump; code nothing
            # reaches gets a fresh %rsp base, so only %rsp-relative verdicts hold.
            seed = self.indirect.copy() if self.indirect else State(Val(-2 - todo, 0, 0))
            # Padding or jump-table code must not blur the states the entry already gave.
            frozen = {b for b, s in enumerate(self.state_in) if s is not None}
            self._flow(todo, seed, frozen)
        return self._verdicts()

    def _flow(self, start: int, seed: State, frozen: set[int] | frozenset[int] = frozenset()) -> None:
        # Blocks in reverse postorder: a block is visited after its predecessors, so loops
        # settle in a few passes instead of chasing every change depth-first.
        order = self._order()
        work = [(order[start], start)]
        queued = {start}
        self._merge_into(start, seed)
        while work:
            _, b = heapq.heappop(work)
            queued.discard(b)
            state = self.state_in[b]
            assert state is not None
            out = state.copy()
            block = self.blocks[b]
            self._run_block(block, out, None)
            if block.indirect:
                self.indirect = out.copy() if self.indirect is None else _join(self.indirect, out, -1, True)
            for succ in block.succs:
                if succ not in frozen and self._merge_into(succ, out) and succ not in queued:
                    heapq.heappush(work, (order[succ], succ))
                    queued.add(succ)

    def _order(self) -> list[int]:
        if self._rpo is None:
            post: list[int] = []
            seen = {0}
            stack = [(0, iter(self.blocks[0].succs))]
            while stack:
                b, succs = stack[-1]
                nxt = next((s for s in succs if s not in seen), None)
                if nxt is None:
                    post.append(b)
                    stack.pop()
                else:
                    seen.add(nxt)
                    stack.append((nxt, iter(self.blocks[nxt].succs)))
            rank = {b: i for i, b in enumerate(reversed(post))}
            self._rpo = [rank.get(b, len(rank) + b) for b in range(len(self.blocks))]
        return self._rpo

    def _steps(self, block: _Block) -> list[tuple[int, str, Digest]]:
        if block.steps is None:
            block.steps = []
            for i in range(block.start, block.end):
                if not self._relevant(i):
                    continue
                insn = self._detail(i)
                if insn is not None:
                    addr, _size, mnemonic, op_str = self.lite[i]
                    block.steps.append((addr, f"{mnemonic} {op_str}".strip(), insn))
        return block.steps

    def _run_block(self, block: _Block, st: State, found: list[Access] | None) -> int:
        unknown = 0
        for addr, text, insn in self._steps(block):
            if found is not None:
                unknown += _judge_all(insn, addr, text, st, found, self._text_at)
            transfer(insn, st, fresh=addr + 1)
        return unknown

    def _text_at(self, address: int) -> str:
        i = self.at.get(address)
        if i is None:
            return ""
        _addr, _size, mnemonic, op_str = self.lite[i]
        return f"{mnemonic} {op_str}".strip()

    def _merge_into(self, b: int, incoming: State) -> bool:
        old = self.state_in[b]
        if old is None:
            self.state_in[b] = incoming.copy()
            return True
        self.visits[b] += 1
        merged = _join(old, incoming, b, self.visits[b] > _WIDEN_AFTER)
        if merged == old:
            return False
        self.state_in[b] = merged
        return True

    def _verdicts(self) -> Analysis:
        accesses: list[Access] = []
        unknown = 0
        for b, block in enumerate(self.blocks):
            state = self.state_in[b]
            if state is not None:
                unknown += self._run_block(block, state.copy(), accesses)
        accesses.sort(key=lambda a: a.address)
        return Analysis(accesses, unknown)


def _judge_all(
    insn: Digest, address: int, text: str, st: State, found: list[Access], text_at: Callable[[int], str]
) -> int:
    if insn.id in _NOT_ACCESSES:
        return 0
    unknown = 0
    for op in insn.ops:
        if op.type != OP_MEM:
            continue
        verdict = judge(op, st)
        if isinstance(verdict, str):
            unknown += 1
        elif verdict is not None:
            write = bool(op.access & CS_AC_WRITE) or insn.id in _STORES
            kind = "write" if write else "read"
            found.append(Access(address, text, kind, verdict, op.size, _is_fence(insn)))
            _address_of(op, st, found, text_at)
    return unknown


def _address_of(op: Op, st: State, found: list[Access], text_at: Callable[[int], str]) -> None:
    """The lea that made the stack pointer an offending access went through: an "address"."""
    for reg in (op.base, op.idx):
        at = st.origin.get(reg) if reg else None
        val = st.regs.get(reg) if reg else None
        if at is None or val is None or val.epoch != st.rsp.epoch:
            continue
        offset = val.hi - st.rsp.lo
        if offset < 0 and not any(a.address == at and a.kind == "address" for a in found):
            found.append(Access(at, text_at(at), "address", offset, 0, False))


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


def _is_fence(insn: Digest) -> bool:
    # `lock orl $0,-0x40(%rsp)` orders memory and changes nothing it touches.
    if not insn.lock or insn.id not in (x86.X86_INS_OR, x86.X86_INS_ADD):
        return False
    return any(op.type == OP_IMM and op.imm == 0 for op in insn.ops)


def _join(a: State, b: State, where: int, widen: bool) -> State:
    rsp = _join_val(a.rsp, b.rsp, where, widen)
    regs = {}
    for reg, va in a.regs.items():
        vb = b.regs.get(reg)
        if vb is not None and vb.epoch == va.epoch:
            regs[reg] = _join_val(va, vb, where, widen)
    alloca = a.alloca if a.alloca == b.alloca else None
    origin = {r: at for r, at in a.origin.items() if b.origin.get(r) == at and r in regs}
    return State(rsp, regs, alloca, origin)


def _join_val(a: Val, b: Val, where: int, widen: bool) -> Val:
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
    if iid in (x86.X86_INS_PUSH, x86.X86_INS_PUSHFQ, x86.X86_INS_PUSHF):
        size = ops[0].size if ops and ops[0].type != OP_IMM else 8
        st.rsp = st.rsp.add(-(2 if size == 2 else 8))
        return
    if iid in (x86.X86_INS_POP, x86.X86_INS_POPFQ, x86.X86_INS_POPF):
        size = ops[0].size if ops else 8
        dest = ops[0].reg if ops and ops[0].type == OP_REG else None
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
    if _transfer_arith(insn, st, fresh):
        return
    _clobber(insn, st, fresh)


def _operands(insn: Digest) -> tuple[Op | None, Op | None]:
    """(source, destination) whatever the syntax: the destination is the written operand."""
    ops = insn.ops
    if len(ops) != 2:
        return None, None
    if ops[1].access & CS_AC_WRITE and not ops[0].access & CS_AC_WRITE:
        return ops[0], ops[1]
    if ops[0].access & CS_AC_WRITE and not ops[1].access & CS_AC_WRITE:
        return ops[1], ops[0]
    return None, None


def _reg64(op: Op | None) -> str | None:
    if op is None or op.type != OP_REG or op.size != 8:
        return None
    return op.reg


def _transfer_arith(insn: Digest, st: State, fresh: int) -> bool:
    iid = insn.id
    if iid == x86.X86_INS_XCHG and len(insn.ops) == 2:
        a, b = (_reg64(op) for op in insn.ops)
        if a and b:
            va, vb = st.get(a), st.get(b)
            st.set(a, vb, fresh)
            st.set(b, va, fresh)
            return True
        return False
    if iid in (x86.X86_INS_INC, x86.X86_INS_DEC) and len(insn.ops) == 1:
        r = _reg64(insn.ops[0]) or _reg32(insn.ops[0])
        cur = st.get(r) if r else None
        if r is None or cur is None:
            return False
        new = cur.add(1 if iid == x86.X86_INS_INC else -1)
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
    if iid == x86.X86_INS_MOV:
        s = _reg64(src)
        st.set(d, st.get(s) if s else None, fresh)
        if s in st.origin:
            st.origin[d] = st.origin[s]
        return True
    if iid == x86.X86_INS_LEA:
        base = src.base
        bval = st.get(base) if base else None
        val = bval.add(src.disp) if bval is not None and src.idx is None else None
        st.set(d, val, fresh)
        if val is not None and val.epoch != CONST and d != "rsp":
            st.origin[d] = fresh - 1
        return True
    if iid in (x86.X86_INS_SUB, x86.X86_INS_ADD) and cur is not None:
        sign = -1 if iid == x86.X86_INS_SUB else 1
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
    if iid == x86.X86_INS_AND and cur is not None and src.type == OP_IMM:
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
        if iid == x86.X86_INS_MOV and src.type == OP_IMM and dst.type == OP_REG and dst.size == 8:
            st.set(dst.reg or "", Val(CONST, src.imm, src.imm), fresh)
            return True
        return False
    if iid == x86.X86_INS_MOV and src.type == OP_IMM:
        value = src.imm & 0xFFFFFFFF
        st.set(d, Val(CONST, value, value), fresh)
        return True
    if iid == x86.X86_INS_XOR and src.type == OP_REG and src.reg == d:
        st.set(d, Val(CONST, 0, 0), fresh)
        return True
    if iid == x86.X86_INS_MOV and src.type == OP_REG and src.reg:
        val = st.get(src.reg)
        st.set(d, val if val is not None and _fits(dst, val) else None, fresh)
        return True
    cur = st.get(d)
    if iid in (x86.X86_INS_ADD, x86.X86_INS_SUB) and src.type == OP_IMM and cur is not None:
        new = cur.add(src.imm if iid == x86.X86_INS_ADD else -src.imm)
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
