"""Exact verdicts of the stack analysis, from hand-written assembly assembled with GNU as.

Each case is one function `f` in its own object; the table says whether it uses
memory below the current %rsp and, when it does, which instructions and how. Every test runs
twice: with the Python analysis, and with the compiled one (`_stackflow.c`) a wheel uses.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from redzone_check.detect import Detection, detect
from redzone_check.elf import ElfFile


@pytest.fixture(autouse=True, params=["python", "compiled"])
def engine(request: pytest.FixtureRequest) -> Iterator[str]:
    if request.param == "compiled":
        request.getfixturevalue("use_compiled")
    yield request.param


def _detect(obj: Path, prefilter: bool = True) -> Detection:
    return detect(ElfFile(obj.read_bytes()), prefilter)


def _func(body: str, name: str = "f", extra: str = "") -> str:
    return f"""
    .text
    .globl {name}
    .type {name}, @function
{name}:
{body}
    .size {name}, .-{name}
{extra}
"""


# (id, body, expected [(access, rsp_offset, rule)], benign-only)
YES = [
    ("leaf_store_without_sub", "mov %rdi,-0x28(%rsp)\n ret", [("write", -0x28, "RZ001")]),
    (
        "gcc_O0_leaf_rbp_frame_without_sub",
        "push %rbp\n mov %rsp,%rbp\n mov %edi,-0x14(%rbp)\n mov -0x14(%rbp),%eax\n pop %rbp\n ret",
        [("write", -0x14 + 0, "RZ001"), ("read", -0x14, "RZ001")],
    ),
    (
        "partial_frame_indexed",
        "sub $0x60,%rsp\n mov -0x78(%rsp,%rdx,1),%eax\n add $0x60,%rsp\n ret",
        [("read", -0x78, "RZ001")],
    ),
    (
        "gcc_O0_partial_frame_rbp",
        "push %rbp\n mov %rsp,%rbp\n sub $0x68,%rsp\n mov %rdi,-0xd8(%rbp)\n leave\n ret",
        [("write", -0xD8 + 0x68, "RZ001")],
    ),
    (
        "spill_after_pushes",
        "push %rbx\n push %r12\n push %r13\n mov %rdi,-0x10(%rsp)\n pop %r13\n pop %r12\n pop %rbx\n ret",
        [("write", -0x10, "RZ001")],
    ),
    ("x87_control_word", "fnstcw -0xa(%rsp)\n ret", [("write", -0xA, "RZ001")]),
    ("x87_store", "fstpl -0x58(%rsp)\n ret", [("write", -0x58, "RZ001")]),
    ("sse_temporary", "movaps %xmm0,-0x18(%rsp)\n ret", [("write", -0x18, "RZ001")]),
    (
        "speculative_load_hardening_read_after_call",
        "sub $8,%rsp\n call g\n mov -0x8(%rsp),%rax\n add $8,%rsp\n ret",
        [("read", -0x8, "RZ001")],
    ),
    (
        "derived_register_lea_then_store",
        "lea -0x10(%rsp),%rcx\n mov %rax,(%rcx)\n ret",
        [("address", -0x10, "RZ001"), ("write", -0x10, "RZ001")],
    ),
    (
        "beyond_red_zone_is_rz002",
        "mov %rdi,-0x100(%rsp)\n ret",
        [("write", -0x100, "RZ002")],
    ),
    (
        "branch_then_epilogue_on_each_path",
        "test %edi,%edi\n je 1f\n mov %rdi,-0x8(%rsp)\n ret\n"
        "1: push %rbx\n mov 0x0(%rsp),%rax\n pop %rbx\n ret",
        [("write", -0x8, "RZ001")],
    ),
    (
        "unreachable_code_is_still_analysed",
        "ret\n mov %rdi,-0x20(%rsp)\n ret",
        [("write", -0x20, "RZ001")],
    ),
    # Only the known negative index puts it below %rsp: the prefilter must not skip it.
    ("negative_constant_index", "mov $-2,%rcx\n mov %rax,0x8(%rsp,%rcx,8)\n ret", [("write", -0x8, "RZ001")]),
    (
        "lea_then_dereference",
        "lea -0x20(%rsp),%rdx\n mov %rdi,(%rdx)\n ret",
        [("address", -0x20, "RZ001"), ("write", -0x20, "RZ001")],
    ),
    (
        "rbp_frame_after_branch_merge",
        "push %rbp\n mov %rsp,%rbp\n test %edi,%edi\n jne 1f\n nop\n1: mov %esi,-0x4(%rbp)\n pop %rbp\n ret",
        [("write", -0x4, "RZ001")],
    ),
    (
        # enter's frame is 0x10 bytes, and %rbp-0x20 lies 0x10 below it.
        "enter_frame_too_small",
        "enter $0x10,$0\n mov %rdi,-0x20(%rbp)\n leave\n ret",
        [("write", -0x10, "RZ001")],
    ),
    (
        # Once the allocated amount is overwritten, an index by it is no longer a probe of the allocation.
        "alloca_amount_overwritten",
        "sub %rax,%rsp\n imul $8,%rax,%rax\n mov %rdi,-0x8(%rsp,%rax,1)\n ret",
        [("write", -0x8, "RZ001")],
    ),
]

NO = [
    ("ocaml5_stack_check_lea_only_compared", "lea -0x148(%rsp),%r10\n cmp (%r14),%r10\n jb 1f\n ret\n1: ret"),
    ("stack_clash_probe_after_alloca", "sub %rax,%rsp\n orq $0x0,-0x8(%rsp,%rax,1)\n ret"),
    ("allocated_frame", "sub $0x20,%rsp\n mov %rax,(%rsp)\n add $0x20,%rsp\n ret"),
    ("fence_at_rsp", "lock orl $0x0,(%rsp)\n ret"),
    ("above_rsp", "mov 0x8(%rsp),%rax\n ret"),
    ("rip_relative", "mov -0x8(%rip),%rax\n ret"),
    ("unrelated_register", "mov -0x8(%rax),%rax\n ret"),
    (
        "rbp_frame_with_enough_sub",
        "push %rbp\n mov %rsp,%rbp\n sub $0x20,%rsp\n mov %edi,-0x14(%rbp)\n leave\n ret",
    ),
    ("enter_frame", "enter $0x20,$0\n mov %edi,-0x14(%rbp)\n leave\n ret"),
    (
        "aligned_frame",
        "push %rbp\n mov %rsp,%rbp\n and $-16,%rsp\n sub $0x40,%rsp\n mov %rdi,-0x8(%rbp)\n leave\n ret",
    ),
    ("caller_rbp_is_not_a_stack_register", "mov -0x8(%rbp),%rax\n ret"),
    ("tail_call_after_epilogue", "push %rbx\n pop %rbx\n jmp g"),
    # `jmp g` is a rel32 of zero until linked: a tail call, not a jump to the next instruction,
    # so %rax is not known to hold %rsp there.
    ("code_after_a_tail_call_is_not_its_target", "mov %rsp,%rax\n jmp g\n mov %rdi,-0x8(%rax)\n ret"),
    # A stack address passed on but never dereferenced here: the function is not even analysed.
    ("stack_address_only_passed_on", "sub $0x18,%rsp\n lea 0x8(%rsp),%rdi\n call g\n add $0x18,%rsp\n ret"),
    ("clobbered_before_use", "lea -0x8(%rsp),%rdi\n call g\n mov -0x8(%rdi),%rax\n ret"),
]


@pytest.mark.parametrize(("case", "body", "expected"), YES, ids=[c[0] for c in YES])
def test_red_zone_use_is_found(
    assemble: Callable[..., Path], case: str, body: str, expected: list[tuple[str, int, str]]
) -> None:
    detection = _detect(assemble(_func(body), name=case))
    assert len(detection.hits) == 1, f"expected one function flagged, got {detection.hits}"
    hit = detection.hits[0]
    assert hit.function.name == "f"
    got = [(i.access, i.rsp_offset, "RZ001") for i in hit.red_zone]
    got += [(i.access, i.rsp_offset, "RZ002") for i in hit.beyond]
    assert got == expected


@pytest.mark.parametrize(("case", "body"), NO, ids=[c[0] for c in NO])
def test_no_red_zone_use(assemble: Callable[..., Path], case: str, body: str) -> None:
    for prefilter in (True, False):
        detection = _detect(assemble(_func(body), name=f"{case}{int(prefilter)}"), prefilter)
        assert detection.hits == (), f"{case}: unexpected {detection.hits}"


def test_locked_or_zero_below_rsp_is_a_benign_fence(assemble: Callable[..., Path]) -> None:
    hit = _detect(assemble(_func("lock orl $0x0,-0x40(%rsp)\n ret"))).hits[0]
    assert [(i.access, i.rsp_offset, i.benign) for i in hit.red_zone] == [("write", -0x40, True)]


def test_alloca_makes_rbp_verdicts_unknown_not_findings(assemble: Callable[..., Path]) -> None:
    # Whether -0x14(%rbp) is below %rsp depends on how much was allocated.
    body = "push %rbp\n mov %rsp,%rbp\n sub %rdi,%rsp\n mov %esi,-0x14(%rbp)\n leave\n ret"
    detection = _detect(assemble(_func(body)))
    assert detection.hits == ()
    assert detection.unknown_functions == 1


def test_alloca_area_below_restored_rsp_is_decided(assemble: Callable[..., Path]) -> None:
    # %rcx points into an alloca area; once %rsp is restored above it, the area is below %rsp.
    body = (
        "push %rbp\n mov %rsp,%rbp\n sub %rdi,%rsp\n mov %rsp,%rcx\n mov %rbp,%rsp\n"
        " mov %rdi,-0x8(%rcx)\n pop %rbp\n ret"
    )
    hit = _detect(assemble(_func(body))).hits[0]
    assert [(i.access, i.rsp_offset) for i in hit.red_zone] == [("write", -0x8)]


def test_rbp_below_aligned_rsp_is_still_decided(assemble: Callable[..., Path]) -> None:
    # After `and $-16,%rsp` the offset of %rsp from entry is an interval, yet an
    # %rbp access 0x60 below the frame is below %rsp whatever the alignment did.
    body = "push %rbp\n mov %rsp,%rbp\n and $-16,%rsp\n sub $0x20,%rsp\n mov %rdi,-0x60(%rbp)\n leave\n ret"
    hit = _detect(assemble(_func(body))).hits[0]
    assert [i.access for i in hit.red_zone] == ["write"]
    assert hit.red_zone[0].rsp_offset < 0


def test_jump_table_targets_get_the_state_at_the_jump(assemble: Callable[..., Path]) -> None:
    body = """
    sub $0x10,%rsp
    lea table(%rip),%rax
    jmp *(%rax,%rdi,8)
case0:
    mov %rdi,-0x8(%rsp)
    add $0x10,%rsp
    ret
case1:
    mov %rdi,0x8(%rsp)
    add $0x10,%rsp
    ret
"""
    extra = "    .section .rodata\ntable: .quad case0, case1\n"
    hit = _detect(assemble(_func(body, extra=extra))).hits[0]
    assert [(i.access, i.rsp_offset) for i in hit.red_zone] == [("write", -0x8)]


def test_aliases_are_one_function(assemble: Callable[..., Path]) -> None:
    src = """
    .text
    .globl __ceill
    .type __ceill, @function
    .weak ceill
    .type ceill, @function
__ceill:
ceill:
    mov %rdi,-0x8(%rsp)
    ret
    .size __ceill, .-__ceill
    .size ceill, .-ceill
"""
    hits = _detect(assemble(src)).hits
    assert len(hits) == 1
    assert hits[0].function.name == "__ceill"
    assert hits[0].function.aliases == ("ceill",)


def test_assembly_without_size_runs_to_the_next_symbol(assemble: Callable[..., Path]) -> None:
    src = """
    .text
    .globl a
a:
    mov 0x8(%rsp),%rax
    ret
    .globl b
b:
    mov %rdi,-0x8(%rsp)
    ret
"""
    hits = _detect(assemble(src)).hits
    assert [(h.function.name, h.red_zone[0].function_offset) for h in hits] == [("b", 0)]


def test_function_sections_and_static_functions(assemble: Callable[..., Path]) -> None:
    src = """
    .section .text.one,"ax",@progbits
    .type one, @function
one:
    mov %rdi,-0x8(%rsp)
    ret
    .size one, .-one
    .section .text.two,"ax",@progbits
    .globl two
    .type two, @function
two:
    ret
    .size two, .-two
"""
    detection = _detect(assemble(src))
    assert [(h.function.name, h.function.section, h.function.is_global) for h in detection.hits] == [
        ("one", ".text.one", False)
    ]
    assert {f.name for f in detection.functions} == {"one", "two"}


def test_padding_before_a_loop_head_does_not_blur_the_frame(assemble: Callable[..., Path]) -> None:
    # clang -O2 -fno-omit-frame-pointer (pycryptodome ghash_portable): the loop body is reached
    # only by a backward jump, and unreachable alignment padding falls into it.
    body = """
    push %rbp
    mov %rsp,%rbp
    push %rbx
    jmp 2f
    nopw 0x0(%rax,%rax,1)
1:  movapd %xmm5,-0x30(%rbp)
    mov -0x30(%rbp),%bl
2:  dec %rdi
    jne 1b
    pop %rbx
    pop %rbp
    ret
"""
    hit = _detect(assemble(_func(body))).hits[0]
    assert [(i.access, i.rsp_offset) for i in hit.red_zone] == [("write", -0x28), ("read", -0x28)]


def test_constant_loop_start_bounds_an_index_register(assemble: Callable[..., Path]) -> None:
    # clang -O1 sha_compress with -mno-red-zone: the index runs 16..63, so the lowest slot is %rsp+0x14.
    body = """
    sub $0x100,%rsp
    mov $0x10,%eax
1:  mov -0x2c(%rsp,%rax,4),%ecx
    add $0x1,%rax
    cmp $0x40,%rax
    jne 1b
    add $0x100,%rsp
    ret
"""
    assert _detect(assemble(_func(body))).hits == ()


def test_index_starting_at_zero_still_reaches_below(assemble: Callable[..., Path]) -> None:
    body = "xor %eax,%eax\n1: mov -0x2c(%rsp,%rax,4),%ecx\n inc %eax\n cmp $0x4,%eax\n jne 1b\n ret"
    hit = _detect(assemble(_func(body))).hits[0]
    assert [(i.access, i.rsp_offset) for i in hit.red_zone] == [("read", -0x2C)]


def test_stack_address_in_the_index_register(assemble: Callable[..., Path]) -> None:
    # gcc -Os ghash_portable: `lea -0x18(%rsp),%r13` ... `mov %dl,-0x1(%rax,%r13,1)`.
    body = "lea -0x18(%rsp),%r13\n mov $0x1,%eax\n mov %dl,-0x1(%rax,%r13,1)\n ret"
    hit = _detect(assemble(_func(body))).hits[0]
    assert [(i.access, i.rsp_offset) for i in hit.red_zone] == [("address", -0x18), ("write", -0x18)]


def test_data_between_symbols_of_an_object_is_not_code(assemble: Callable[..., Path]) -> None:
    # perlasm keeps tables in .text after a function's .size; these bytes decode as
    # `mov %rdi,-0x28(%rsp)` but no symbol makes them code.
    table = "    .p2align 4\n.Ltable:\n" + "    .byte 0x48,0x89,0x7c,0x24,0xd8\n" * 4
    detection = _detect(assemble(_func("ret", extra=f"    .text\n{table}")))
    assert detection.hits == ()
    assert [f.name for f in detection.functions] == ["f"]


# (instruction, access) below %rsp: capstone 5 marks the memory destination of these stores as
# read only; loads and compares really only read.
STORES_AND_LOADS = [
    ("movups %xmm0,-0x20(%rsp)", "write"),
    ("movups -0x20(%rsp),%xmm0", "read"),
    ("movq %xmm0,-0x20(%rsp)", "write"),
    ("movq -0x20(%rsp),%xmm0", "read"),
    ("movhps %xmm0,-0x20(%rsp)", "write"),
    ("movlps %xmm0,-0x20(%rsp)", "write"),
    ("movntdq %xmm0,-0x20(%rsp)", "write"),
    ("vmovdqu %ymm0,-0x40(%rsp)", "write"),
    ("vmovdqu -0x40(%rsp),%ymm0", "read"),
    ("vmovdqu64 %zmm16,-0x40(%rsp)", "write"),
    ("lock cmpxchg %edx,-0x20(%rsp)", "write"),
    ("rorl $3,-0x20(%rsp)", "write"),
    ("movaps %xmm0,-0x20(%rsp)", "write"),
    ("cmpl $0xf,-0x20(%rsp)", "read"),
    ("testb $8,-0x20(%rsp)", "read"),
    ("btq $3,-0x20(%rsp)", "read"),
    ("btsq $3,-0x20(%rsp)", "write"),
]


@pytest.mark.parametrize(("insn", "access"), STORES_AND_LOADS, ids=[s[0] for s in STORES_AND_LOADS])
def test_stores_are_writes_whatever_capstone_marks(
    assemble: Callable[..., Path], insn: str, access: str
) -> None:
    name = "".join(c if c.isalnum() else "_" for c in insn)
    hit = _detect(assemble(_func(f"{insn}\n ret"), name=name)).hits[0]
    assert [i.access for i in hit.red_zone] == [access]


def test_string_moves_read_the_source_and_write_the_destination(assemble: Callable[..., Path]) -> None:
    point = "lea -0x40(%rsp),%rsi\n lea -0x20(%rsp),%rdi\n"  # again after movsb, which moves them
    hit = _detect(assemble(_func(f"{point} movsb\n {point} cmpsb\n ret"))).hits[0]
    accesses = [(i.access, i.rsp_offset) for i in hit.red_zone if i.access != "address"]
    # movsb (%rsi), (%rdi); cmpsb (%rdi), (%rsi): a compare writes neither.
    assert accesses == [("read", -0x40), ("write", -0x20), ("read", -0x20), ("read", -0x40)]
