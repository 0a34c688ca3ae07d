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
from bisect import bisect_left
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from redzone_check.decode import decoder, lite_decoder
from redzone_check.digest import OP_MEM, Digest, Op, digest
from redzone_check.filters import (
    Facts,
    Lite,
    closure,
    decode,
    fact_fields,
    facts,
    matters,
    may_access_below,
    may_use_red_zone,
)
from redzone_check.lite import branch_target
from redzone_check.native import NativeFlow, native_flow, native_function
from redzone_check.stackstate import NOT_ACCESSES, State, Val, is_fence, join, judge, transfer, writes

_WIDEN_AFTER: Final[int] = 6
_KINDS: Final = ("read", "write", "address")  # the C analysis' kinds of access, by number


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


def analyse_function(code: bytes, base: int, relocatable: bool, prefilter: bool = True) -> Analysis | None:
    """`analyse()` of one function's bytes, decoding them; None when the prefilter rejects it
    (`filters.may_use_red_zone`). With the compiled module, every step runs in C (`_function.c`),
    asking Python only for the prefilter's test and the facts of each new text."""
    compiled = native_function()
    if compiled is not None:
        found = compiled(
            lite_decoder().csh.value,
            decoder().csh.value,
            code,
            base,
            relocatable,
            matters if prefilter else None,
            fact_fields,
        )
        if found is None:
            return None
        accesses, unknown = found
        return Analysis(
            [
                Access(address, text, _KINDS[kind], offset, size, benign != 0)
                for address, text, kind, offset, size, benign in accesses
            ],
            unknown,
        )
    lite = decode(code, base)
    if prefilter and not may_use_red_zone(lite):
        return None
    return analyse(code, base, relocatable, lite, prefilter)


def analyse(
    code: bytes | memoryview,
    base: int,
    relocatable: bool = False,
    lite: Lite | None = None,
    prefilter: bool = True,
) -> Analysis:
    """Decode `code` (one function, placed at `base`) and find accesses below the current %rsp.

    In a relocatable object a branch to another function is a rel32 of zero
    waiting for its relocation; it is a tail call, not a jump to the next instruction.
    `lite` is `decode(code, base)` when the caller already has it. With `prefilter`, a function
    that cannot reach below %rsp (`filters.may_access_below`) is not analysed.
    """
    raw = bytes(code)
    lite = lite if lite is not None else decode(raw, base)
    known = [facts(mnemonic, op_str) for _addr, _size, mnemonic, op_str in lite]
    if prefilter and not may_access_below(known):
        return Analysis([], 0)
    return _Analyser(raw, base, relocatable, lite, known).run()


class _Block:
    __slots__ = ("end", "indirect", "start", "steps", "succs")

    def __init__(self, start: int, end: int) -> None:
        self.start = start  # index into the lite list
        self.end = end  # one past the last instruction
        self.succs: list[int] = []  # block indices
        self.indirect = False  # ends in an indirect jump
        # (address, digest, judged) of the instructions that matter to the stack state; judged
        # when it accesses memory, which is decided once here rather than on every visit
        self.steps: list[tuple[int, Digest, bool]] | None = None


class _Analyser:
    """Dataflow over basic blocks, decoding in detail only instructions that matter."""

    def __init__(self, code: bytes, base: int, relocatable: bool, lite: Lite, facts: list[Facts]) -> None:
        self.code = code
        self.base = base
        self.relocatable = relocatable
        self.lite = lite
        self.facts = facts
        self.tracked = closure(facts, index_registers=True)
        self.blocks = self._blocks()
        self.state_in: list[State | None] = [None] * len(self.blocks)
        # What the last visit of each block judged: that visit saw the block's final state.
        self.judged: list[tuple[list[Access], int] | None] = [None] * len(self.blocks)
        self.visits = [0] * len(self.blocks)
        self.indirect: State | None = None
        self._rpo: list[int] | None = None

    def _relevant(self, i: int) -> bool:
        known = self.facts[i]
        return known.always or known.names & self.tracked != 0

    def _detail(self, i: int) -> Digest | None:
        addr, size, mnemonic, op_str = self.lite[i]
        off = addr - self.base
        return digest(self.code[off : off + size], addr, mnemonic, op_str)

    def _index(self, address: int) -> int | None:
        """The instruction at `address`. A search of the lite list (its addresses increase) rather
        than a map of every address, which cost more than the few branches and findings that ask."""
        i = bisect_left(self.lite, (address, -1, "", ""))  # sorts before any instruction at `address`
        return i if i < len(self.lite) and self.lite[i][0] == address else None

    def _blocks(self) -> list[_Block]:
        lite = self.lite
        leaders = {0} if lite else set()
        # instruction index -> (kind, target, index of the target instruction)
        ends: dict[int, tuple[str, int | None, int | None]] = {}
        for i, known in enumerate(self.facts):
            kind = known.kind
            if kind is None or kind == "call":
                continue
            addr, size, _mnemonic, op_str = lite[i]
            target = branch_target(op_str) if kind != "ret" else None
            if target is not None and self.relocatable and self._unrelocated(addr, size):
                target = -1  # a branch to another function, resolved by a relocation
            to = self._index(target) if target is not None else None
            ends[i] = (kind, target, to)
            if i + 1 < len(lite):
                leaders.add(i + 1)
            if to is not None:
                leaders.add(to)
        starts = sorted(leaders)
        index_of = {start: b for b, start in enumerate(starts)}
        blocks = []
        for b, start in enumerate(starts):
            end = starts[b + 1] if b + 1 < len(starts) else len(lite)
            block = _Block(start, end)
            last = end - 1
            kind, target, to = ends.get(last, (None, None, None))
            falls = kind in (None, "jcc") and end < len(lite)
            if falls:
                block.succs.append(b + 1)
            if kind in ("jmp", "jcc") and to is not None:
                block.succs.append(index_of[to])
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
        compiled = native_flow()
        if compiled is not None:
            return self._run_compiled(compiled)
        # Padding or jump-table code must not blur the states the entry already gave.
        frozen = self._flow(0, State(Val(0, 0, 0)), set())
        for todo, state in enumerate(self.state_in):
            if state is not None:
                continue
            # Jump-table targets get the state at the indirect jump; code nothing
            # reaches gets a fresh %rsp base, so only %rsp-relative verdicts hold.
            seed = self.indirect.copy() if self.indirect else State(Val(-2 - todo, 0, 0))
            frozen |= self._flow(todo, seed, frozen)
        return self._verdicts()

    def _run_compiled(self, compiled: NativeFlow) -> Analysis:
        """`run()` by `_stackflow.c`: the same steps, states and verdicts, computed in C."""
        tracked = self.tracked
        relevant = bytes([known.always or known.names & tracked != 0 for known in self.facts])
        blocks = [(block.start, block.end, block.succs, block.indirect) for block in self.blocks]
        found, unknown = compiled(decoder().csh.value, self.code, self.base, self.lite, blocks, relevant)
        accesses = [
            Access(address, self._text_at(address), _KINDS[kind], offset, size, benign != 0)
            for address, kind, offset, size, benign in found
        ]
        return Analysis(accesses, unknown)

    def _flow(self, start: int, seed: State, frozen: set[int]) -> set[int]:
        """Run the blocks reachable from `start` (but not `frozen`) to a fixed point; those blocks."""
        # Blocks in reverse postorder: a block is visited after its predecessors, so loops
        # settle in a few passes instead of chasing every change depth-first.
        order = self._order()
        work = [(order[start], start)]
        queued = {start}
        reached = {start}
        self._merge_into(start, seed)
        while work:
            _, b = heapq.heappop(work)
            queued.discard(b)
            state = self.state_in[b]
            assert state is not None
            out = state.copy()
            block = self.blocks[b]
            found: list[Access] = []
            self.judged[b] = (found, self._run_block(block, out, found))
            if block.indirect:
                self.indirect = out.copy() if self.indirect is None else join(self.indirect, out, -1, True)
            for succ in block.succs:
                if succ not in frozen and self._merge_into(succ, out) and succ not in queued:
                    heapq.heappush(work, (order[succ], succ))
                    queued.add(succ)
                    reached.add(succ)
        return reached

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

    def _steps(self, block: _Block) -> list[tuple[int, Digest, bool]]:
        if block.steps is None:
            block.steps = []
            for i in range(block.start, block.end):
                if not self._relevant(i):
                    continue
                insn = self._detail(i)
                if insn is not None:
                    judged = insn.id not in NOT_ACCESSES and any(op.type == OP_MEM for op in insn.ops)
                    block.steps.append((self.lite[i][0], insn, judged))
        return block.steps

    def _run_block(self, block: _Block, st: State, found: list[Access]) -> int:
        unknown = 0
        for addr, insn, judged in self._steps(block):
            if judged:
                unknown += _judge_all(insn, addr, st, found, self._text_at)
            transfer(insn, st, fresh=addr + 1)
        return unknown

    def _text_at(self, address: int) -> str:
        i = self._index(address)
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
        merged = join(old, incoming, b, self.visits[b] > _WIDEN_AFTER)
        if merged == old:
            return False
        self.state_in[b] = merged
        return True

    def _verdicts(self) -> Analysis:
        accesses: list[Access] = []
        addresses: set[int] = set()
        unknown = 0
        for judged in self.judged:
            if judged is None:
                continue
            found, count = judged
            unknown += count
            for access in found:
                if access.kind == "address":
                    if access.address in addresses:
                        continue
                    addresses.add(access.address)
                accesses.append(access)
        accesses.sort(key=lambda a: a.address)
        return Analysis(accesses, unknown)


def _judge_all(
    insn: Digest, address: int, st: State, found: list[Access], text_at: Callable[[int], str]
) -> int:
    unknown = 0
    for index, op in enumerate(insn.ops):
        if op.type != OP_MEM:
            continue
        verdict = judge(op, st)
        if isinstance(verdict, str):
            unknown += 1
        elif verdict is not None:
            kind = "write" if writes(insn, index) else "read"
            found.append(Access(address, text_at(address), kind, verdict, op.size, is_fence(insn)))
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
        if offset < 0:  # repeats of one lea are dropped by `_verdicts`
            found.append(Access(at, text_at(at), "address", offset, 0, False))
