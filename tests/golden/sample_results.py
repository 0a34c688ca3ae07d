"""ScanResults made by hand for the golden report tests, so they survive compiler upgrades.

The values mirror real findings: `leaf` is gcc -O2 output for `int leaf(int *p)`, `memcpy_asm` is
hand-written assembly in an archive, `fence` is clang's `lock orl $0,-0x40(%rsp)`.
"""

from __future__ import annotations

import os
from pathlib import Path

from redzone_check.model import (
    BuildInfo,
    BuildLocation,
    Finding,
    InputProblem,
    Instruction,
    Reach,
    ScanResult,
    Skipped,
    Source,
    Summary,
)

GOLDEN = Path(__file__).resolve().parent
SOURCE_ROOT = "/home/dev/kernel"

GCC = BuildInfo(
    producer="GNU C17 12.2.0 -mtune=generic -march=x86-64 -g -O2",
    compiler="GCC 12.2.0",
    flags=("-mtune=generic", "-march=x86-64", "-g", "-O2"),
    missing=("-mno-red-zone",),
)
NOT_RECORDED = BuildInfo(
    producer="GNU AS 2.40",
    compiler="GNU AS 2.40",
    flags=(),
    missing=(),
    recorded=False,
    note="assembled by GNU as: no compiler flags are recorded",
)


def leaf() -> Finding:
    return Finding(
        rule="RZ001",
        level="error",
        message="`leaf` keeps data in the red zone (3 instructions, down to %rsp-40)",
        path="_build/default/stubs/libstubs.a",
        member="leaf.o",
        section=".text.leaf",
        section_offset=0x4,
        function_offset=0x4,
        symbol="leaf",
        aliases=("leaf_alias",),
        function="leaf",
        language="c",
        instructions=(
            Instruction(0x4, 0x4, "mov %rdi,-0x28(%rsp)", "write", -0x28, 8),
            Instruction(0x9, 0x9, "mov -0x28(%rsp),%rax", "read", -0x28, 8),
            Instruction(0x12, 0x12, "movaps %xmm0,-0x18(%rsp)", "write", -0x18, 16),
        ),
        source=Source("stubs/leaf.c", 12),
        build=GCC,
        reached_from=(Reach("Stubs.leaf", "ocaml", "lib/stubs.ml", 3, ("Main.run",), "external"),),
        build_location=BuildLocation("stubs/dune", 4, "dune", "(foreign_stubs (language c) (names leaf))"),
    ).with_fingerprint()


def beyond() -> Finding:
    return Finding(
        rule="RZ002",
        level="error",
        message="`fast_copy|<b>*x*</b>` accesses memory 144 bytes below %rsp, beyond the red zone",
        path="vendor/libfast.a",
        member="copy.o",
        section=".text",
        section_offset=0x140,
        function_offset=0x10,
        symbol="fast_copy|<b>*x*</b>",
        aliases=(),
        function="fast_copy|<b>*x*</b>",
        language="asm",
        instructions=(Instruction(0x10, 0x140, "mov %rax,-0x90(%rsp)", "write", -0x90, 8),),
        source=None,
        build=NOT_RECORDED,
    ).with_fingerprint()


def fence() -> Finding:
    return Finding(
        rule="RZ001",
        level="note",
        message="`sync::fence()` only touches the red zone with a benign fence",
        path="obj/sync.o",
        member=None,
        section=".text",
        section_offset=0x30,
        function_offset=0x0,
        symbol="_ZN4sync5fenceEv",
        aliases=(),
        function="sync::fence()",
        language="c++",
        instructions=(Instruction(0x0, 0x30, "lock orl $0x0,-0x40(%rsp)", "write", -0x40, 4, benign=True),),
        source=None,
        build=None,
        suppressed="fences are harmless here",
    ).with_fingerprint()


def unit_flag() -> Finding:
    return Finding(
        rule="RZ003",
        level="warning",
        message="src/util.c was compiled without -mno-red-zone",
        path="obj/util.o",
        member=None,
        section=".text",
        section_offset=0x0,
        function_offset=0x0,
        symbol="util_init",
        aliases=(),
        function="util_init",
        language="c",
        instructions=(),
        source=Source("src/util.c", 1),
        build=GCC,
    ).with_fingerprint()


def sample_result() -> ScanResult:
    findings = (leaf(), beyond(), fence(), unit_flag())
    return ScanResult(
        findings=findings,
        errors=(InputProblem("vendor/broken.o", None, "truncated ELF: section headers end past the file"),),
        skipped=(
            Skipped("obj/lto.o", None, "LTO object: no machine code (.gnu.lto_ sections)", "not-analysable"),
            Skipped("README.md", None, "not an ELF file", "not-elf"),
        ),
        summary=Summary(
            inputs=5,
            objects=6,
            functions=42,
            functions_unknown=1,
            findings={"error": 2, "warning": 1, "note": 0},
            suppressed=1,
            skipped=2,
            not_analysable=1,
            errors=1,
        ),
        platform="bare-metal",
        source_root=SOURCE_ROOT,
    )


def clean_result() -> ScanResult:
    return ScanResult(
        findings=(),
        errors=(),
        skipped=(),
        summary=Summary(inputs=1, objects=3, functions=17),
        source_root=SOURCE_ROOT,
    )


def check_golden(name: str, actual: str) -> None:
    """Compare with tests/golden/NAME; UPDATE_GOLDEN=1 rewrites the file instead."""
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.write_text(actual, encoding="utf-8")
    expected = path.read_text(encoding="utf-8")
    assert actual == expected, f"{name} differs from the golden file (UPDATE_GOLDEN=1 rewrites it)"
