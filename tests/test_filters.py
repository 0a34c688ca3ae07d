"""The lite filters on real lite text: which registers may carry a stack address, and which
functions the analysis can skip. The texts come from capstone's own lite decoding of assembled
bytes, so the AT&T spelling is capstone's."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import require_tool, run
from test_digest_templates import distinct_instructions, real_archive

from redzone_check.decode import BIT, GPRS
from redzone_check.digest import detailed
from redzone_check.filters import _NUMBER, _facts, closure, decode, facts, may_access_below, may_use_red_zone
from redzone_check.lite import opcode, operands, reads_only


def registers(mask: int) -> list[str]:
    """The names of the registers in `mask`, in `GPRS` order."""
    return [name for i, name in enumerate(GPRS) if mask >> i & 1]


def lite_of(asm: str, tmp_path: Path) -> list[tuple[int, int, str, str]]:
    require_tool("as")
    require_tool("objcopy")
    src, obj, raw = tmp_path / "f.s", tmp_path / "f.o", tmp_path / "f.bin"
    src.write_text(".text\n" + asm + "\n")
    run(["as", "--64", "-o", obj, src])
    run(["objcopy", "-O", "binary", "--only-section=.text", obj, raw])
    return decode(raw.read_bytes(), 0)


def tracked(asm: str, tmp_path: Path, index_registers: bool = True) -> list[str]:
    known = [facts(m, o) for _a, _s, m, o in lite_of(asm, tmp_path)]
    return registers(closure(known, index_registers))


def test_operands_split_registers_by_where_they_appear() -> None:
    ops = operands("%rax, -0x8(%rbp,%r12d,4)")
    assert registers(ops.outside) == ["rax"]
    assert registers(ops.inside) == ["rbp", "r12"]
    assert (ops.base, ops.dest, ops.has_memory) == ("rbp", None, True)
    ops = operands("%esp, %ebx")
    assert registers(ops.outside) == ["rbx", "rsp"]
    assert (ops.base, ops.dest) == (None, "rbx")


def test_closure_follows_copies_leas_and_exchanges_from_rsp(tmp_path: Path) -> None:
    asm = """
        lea 0x10(%rsp), %rdi
        mov %rdi, %rax
        xchg %rax, %r9
        mov %rbx, %rcx
        enter $16, $0
    """
    assert tracked(asm, tmp_path) == ["rax", "rdi", "rbp", "rsp", "r9"]


def test_closure_adds_index_registers_beside_tracked_ones_only_when_asked(tmp_path: Path) -> None:
    asm = """
        mov %rsp, %rsi
        mov (%rsi,%rcx,8), %rdx
        mov (%rbx,%r8), %r10
    """
    assert tracked(asm, tmp_path) == ["rcx", "rsi", "rsp"]
    assert tracked(asm, tmp_path, index_registers=False) == ["rsi", "rsp"]


def test_filters_skip_what_cannot_reach_below_rsp(tmp_path: Path) -> None:
    quiet = lite_of(
        "push %rbx\nsub $0x20, %rsp\nmov %rax, 0x8(%rsp)\nadd $0x20, %rsp\npop %rbx\nret", tmp_path
    )
    assert not may_use_red_zone(quiet)
    below = lite_of("mov %rax, -0x8(%rsp)\nret", tmp_path)
    assert may_use_red_zone(below)
    assert may_access_below([facts(m, o) for _a, _s, m, o in below])
    # %rsp copied, but the copy is never dereferenced: nothing to judge.
    copied = [facts(m, o) for _a, _s, m, o in lite_of("mov %rsp, %rax\nmov (%rbx), %rcx\nret", tmp_path)]
    assert not may_access_below(copied)
    deref = [facts(m, o) for _a, _s, m, o in lite_of("mov %rsp, %rax\nmov -8(%rax), %rcx\nret", tmp_path)]
    assert may_access_below(deref)
    assert BIT["rsp"] == 1 << 7


def test_texts_without_registers_share_the_facts_of_their_mnemonic(tmp_path: Path) -> None:
    lite = lite_of("jmp 1f\n1: call 2f\n2: push $0x10\nenter $0x20, $0\nnop\nret", tmp_path)
    for _a, _s, mnemonic, op_str in lite:
        assert "%" not in op_str
        shared = facts(mnemonic, op_str)
        # One entry per mnemonic, whatever the target or immediate, and the same facts as the text's own.
        assert shared is facts(mnemonic, "")
        assert _facts(mnemonic, op_str).fields() == shared.fields()
    assert facts("enter", "$0x20, $0").carries == ((0, BIT["rbp"]),)


def test_implicit_writes_and_read_only_compares(tmp_path: Path) -> None:
    lite = lite_of(
        "imul %rcx\nimul %rcx, %rax\nxbegin 1f\n1: rep xcryptecb\nxsha256\n"
        "cmp %rsp, %rax\ntest %rdi, %rdi\nbt %rax, %rbx\ncmpq $0, -8(%rsp)\ncmpxchg %rcx, (%rdx)\nret",
        tmp_path,
    )
    known = {f"{m} {o}".strip(): facts(m, o) for _a, _s, m, o in lite}
    always = [text.split(" 0x")[0] for text, fact in known.items() if fact.always]
    assert always == ["imulq %rcx", "xbegin", "xcryptecb", "xsha256", "cmpxchgq %rcx, (%rdx)"]
    # A compare changes no register: it carries nothing, and only its address's registers matter.
    for text in ("cmpq %rsp, %rax", "testq %rdi, %rdi", "btq %rax, %rbx"):
        assert (known[text].names, known[text].carries) == (0, ()), text
    assert registers(known["cmpq $0, -8(%rsp)"].names) == ["rsp"]
    assert known["cmpq $0, -8(%rsp)"].below
    assert tracked("mov %rsp, %rax\ncmp %rax, %rbx\nret", tmp_path) == ["rax", "rsp"]


@pytest.mark.parametrize("archive", ["libc.a", "libgcc.a", "libasmrun.a"])
def test_a_text_has_the_facts_of_its_shape(archive: str) -> None:
    """`facts` reads a text's facts off its shape (its numbers made 0): they must be the text's own."""
    shapes = set()
    for _raw, _address, mnemonic, op_str in distinct_instructions(real_archive(archive)):
        shape = _NUMBER.sub("0", op_str)
        shapes.add((mnemonic, shape))
        assert _facts(mnemonic, op_str).fields() == facts(mnemonic, op_str).fields(), f"{mnemonic} {op_str}"
    assert any("-0(%r" in shape for _m, shape in shapes)  # signs stay
    assert any("%r8" in shape or "%xmm1" in shape for _m, shape in shapes)  # register digits stay


@pytest.mark.parametrize("archive", ["libc.a", "libgcc.a", "libasmrun.a"])
def test_facts_name_every_register_capstone_says_an_instruction_writes(archive: str) -> None:
    # The analysis steps an instruction only when `always` or when it names a tracked register,
    # so a register written without being named (or named by a compare) would keep a stale value.
    checked = 0
    missed = []
    for raw, address, mnemonic, op_str in distinct_instructions(real_archive(archive)):
        checked += 1
        known = facts(mnemonic, op_str)
        insn = detailed(raw, address)
        if insn is None or known.always or known.kind == "ret":  # nothing follows a return
            continue
        if reads_only(opcode(mnemonic)):
            # cmp, test and bt write flags only (Intel SDM); capstone 5 lists %eax as written by
            # `test $imm, %eax` (opcode A9), which the analysis then no longer believes.
            continue
        written = 0
        for reg in insn.written:
            written |= BIT.get(reg, 0)
        if written & ~known.names and len(missed) < 5:
            missed.append((mnemonic, op_str, insn.written))
    assert checked > 1000
    assert not missed
