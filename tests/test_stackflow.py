"""The compiled stack analysis (`_stackflow.c`, `_function.c`) finds exactly what the Python one finds.

stack.py, stackstate.py and filters.py define the analysis; a wheel runs their C transcription,
asking Python for the meaning of each text (the prefilter's test, the facts). The oracle is
the Python analysis itself, on every function of real archives (libc.a, libgcc.a, OCaml's
libasmrun.a, with the prefilter and without), and on edge cases: numbers beyond 32 bits, a digest
cache that fills and empties, malformed arguments. tests/test_stack_asm.py runs its exact cases
with both analyses.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest
from conftest import build_decoder
from test_digest_templates import distinct_instructions, real_archive, real_objects

from redzone_check import native, stack
from redzone_check.decode import decoder, lite_decoder
from redzone_check.filters import _NUMBER, decode, fact_fields, matters
from redzone_check.functions import list_functions

Result = tuple[list[tuple[int, str, str, int, int, bool]], int] | None


def _analyse(flow: Any, function: Any, code: bytes, base: int, relocatable: bool, prefilter: bool) -> Result:
    """stack.analyse_function with the given compiled analyses; None for the Python ones."""
    originals = stack.native_flow, stack.native_function
    stack.native_flow = lambda: flow  # type: ignore[assignment]
    stack.native_function = lambda: function  # type: ignore[assignment]
    try:
        found = stack.analyse_function(code, base, relocatable, prefilter)
    finally:
        stack.native_flow, stack.native_function = originals  # type: ignore[assignment]
    if found is None:
        return None
    accesses = [(a.address, a.text, a.kind, a.rsp_offset, a.size, a.benign) for a in found.accesses]
    return accesses, found.unknown


def _functions(archive: str) -> Iterator[tuple[bytes, int, bool]]:
    for elf in real_objects(real_archive(archive)):
        for fn in list_functions(elf):
            section = elf.section_data(elf.sections[fn.section_index])
            yield bytes(section[fn.offset : fn.offset + fn.size]), fn.offset, elf.type == 1


def _compare(archive: str, prefilter: bool) -> tuple[int, int, int]:
    """Python, the dataflow in C (`_stackflow.c`), and every step in C (`_function.c`), on every
    function of `archive`: the same verdicts, and the same functions rejected."""
    flow, function = native.native_flow(), native.native_function()
    assert flow is not None and function is not None
    functions = accesses = unknown = 0
    for code, base, relocatable in _functions(archive):
        expected = _analyse(None, None, code, base, relocatable, prefilter)
        assert _analyse(flow, None, code, base, relocatable, prefilter) == expected, hex(base)
        assert _analyse(flow, function, code, base, relocatable, prefilter) == expected, hex(base)
        if expected is not None:
            functions += 1
            accesses += len(expected[0])
            unknown += expected[1]
    return functions, accesses, unknown


@pytest.mark.parametrize(
    ("archive", "prefilter"),
    [
        ("libc.a", True),
        ("libgcc.a", True),
        ("libasmrun.a", True),
        ("libgcc.a", False),
        ("libasmrun.a", False),
    ],
)
def test_compiled_analysis_equals_python_on_real_archives(
    archive: str, prefilter: bool, use_compiled: ModuleType
) -> None:
    functions, accesses, unknown = _compare(archive, prefilter)
    # Every archive has functions with findings, and libc.a undecided accesses too: all were compared.
    assert functions > 50 and accesses > 0
    assert unknown > 0 or archive != "libc.a"


def test_digest_and_facts_tables_that_empty_change_nothing(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    small = build_decoder(tmp_path_factory.mktemp("small_flow"), [("DIGESTS", "8"), ("KNOWN", "8")])
    monkeypatch.setitem(sys.modules, "redzone_check._decoder", small)
    native.reset()
    try:
        _compare("libgcc.a", True)
    finally:
        native.reset()


def test_offsets_beyond_32_bits(use_compiled: ModuleType, assemble: Any) -> None:
    """An index with the constant -2^31, scaled by 8, reaches 2^34 below %rsp."""
    from redzone_check.elf import ElfFile

    source = """
    .text
    .globl f
    .type f, @function
f:
    mov $-0x80000000,%rcx
    mov (%rsp,%rcx,8),%rax
    ret
    .size f, .-f
"""
    elf = ElfFile(assemble(source).read_bytes())
    (fn,) = list_functions(elf)
    code = bytes(elf.section_data(elf.sections[fn.section_index])[fn.offset : fn.offset + fn.size])
    compiled = _analyse(native.native_flow(), native.native_function(), code, fn.offset, True, True)
    assert compiled is not None and compiled == _analyse(None, None, code, fn.offset, True, True)
    (access,) = compiled[0]
    assert access[3] == -(1 << 34)


@pytest.mark.parametrize(
    ("blocks", "relevant", "error"),
    [
        ([(0, 2, [], False)], b"\x01", ValueError),  # one byte short
        ([(0, 3, [], False)], b"\x01\x01", ValueError),  # past the last instruction
        ([(0, 2, [5], False)], b"\x01\x01", ValueError),  # a successor that is no block
        ([(0, 2, [-1], False)], b"\x01\x01", ValueError),
        ([(0, 2)], b"\x01\x01", TypeError),
        ([[0, 2, [], False]], b"\x01\x01", TypeError),
    ],
)
def test_malformed_arguments_raise(
    use_compiled: ModuleType, blocks: list[Any], relevant: bytes, error: type[Exception]
) -> None:
    code = b"\x48\x89\x44\x24\xf8\xc3"  # mov %rax,-0x8(%rsp) / ret
    lite = decode(code, 0)
    with pytest.raises(error):
        use_compiled.analyse(decoder().csh.value, code, 0, lite, blocks, relevant)
    found = use_compiled.analyse(decoder().csh.value, code, 0, lite, [(0, 2, [], False)], b"\x01\x01")
    assert found == ([(0, 1, -8, 8, 0)], 0)


def test_analyse_needs_its_constants(use_compiled: ModuleType) -> None:
    with pytest.raises(ValueError, match="wrong number of instruction ids"):
        use_compiled.flow_setup(b"", (), (), (), (), 7, 6, 0, 1, 2, 3, 2)
    with pytest.raises(RuntimeError, match="flow_setup"):
        use_compiled.analyse(
            decoder().csh.value, b"\xc3", 0, [(0, 1, "ret", "")], [(0, 1, [], False)], b"\x01"
        )


@pytest.mark.parametrize(
    "answer",
    [
        (9, 0, False, (), 0, 0, False),  # no such kind
        (0, 0, False, ((3, 1),), 0, 0, False),  # a source of two registers
        (0, 1 << 20, False, (), 0, 0, False),  # a register beyond the sixteen
        (0, 0, False),
        None,
    ],
)
def test_malformed_facts_raise(use_compiled: ModuleType, answer: Any) -> None:
    # The module keeps the facts of each text it was given; this text is never answered well.
    code = b"\x48\x89\x84\x24\xef\xee\xff\xff\xc3"  # mov %rax,-0x1111(%rsp) / ret
    handles = lite_decoder().csh.value, decoder().csh.value
    with pytest.raises((ValueError, TypeError)):
        use_compiled.analyse_function(*handles, code, 0, True, None, lambda mnemonic, op_str: answer)


def test_errors_of_the_prefilter_and_facts_propagate(use_compiled: ModuleType) -> None:
    code = b"\x48\x89\x84\x24\xde\xdd\xff\xff\xc3"  # mov %rax,-0x2222(%rsp) / ret
    handles = lite_decoder().csh.value, decoder().csh.value

    def broken(mnemonic: str, op_str: str) -> bool:
        raise LookupError(f"{mnemonic} {op_str}")

    with pytest.raises(LookupError, match="movq %rax, -0x2222"):
        use_compiled.analyse_function(*handles, code, 0, True, broken, fact_fields)
    with pytest.raises(LookupError, match=r"movq %rax, -0\(%rsp\)"):  # facts are asked of the shape
        use_compiled.analyse_function(*handles, code, 0, True, None, broken)
    found = use_compiled.analyse_function(*handles, code, 0, True, matters, fact_fields)
    assert found == ([(0, "movq %rax, -0x2222(%rsp)", 1, -0x2222, 8, 0)], 0)
    assert use_compiled.analyse_function(*handles, b"", 0, True, matters, fact_fields) is None
    assert use_compiled.analyse_function(*handles, b"", 0, True, None, fact_fields) == ([], 0)


@pytest.mark.parametrize("archive", ["libc.a", "libgcc.a", "libasmrun.a"])
def test_compiled_shapes_are_the_python_ones(archive: str, use_compiled: ModuleType) -> None:
    """The C table keeps facts by shape: its shape of a text must be filters._NUMBER's."""
    texts = {op_str for _raw, _address, _mnemonic, op_str in distinct_instructions(real_archive(archive))}
    for text in texts:
        assert use_compiled.shape(text) == _NUMBER.sub("0", text), text
    assert len(texts) > 500


@pytest.mark.parametrize(
    "text",
    ["", "0", "0x", "0x1f", "0xAB", "0xz", "-0x18(%rsp)", "$1, %eax", "%r8, %xmm15", "%st(1)",
     "a1", "_1", "%fs:0x28", "0x10(%rax,%rbx,8)", "12345678901234567890", "*0x8(%rip)"],
)  # fmt: skip
def test_shapes_of_edge_cases(text: str, use_compiled: ModuleType) -> None:
    assert use_compiled.shape(text) == _NUMBER.sub("0", text)
