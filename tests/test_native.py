"""The compiled decoder (`_decoder.c`) gives exactly what capstone's Python binding gives.

An editable install runs the Python path, so the module is compiled here from its sources
(`conftest.build_decoder`), against the headers of the installed capstone, as the wheel build does.
The oracles are capstone's own Python binding and the prefilter's Python definition, on real
archives (libc.a, libgcc.a, OCaml's libasmrun.a): for every function, the compiled lite decoding
must equal `disasm_lite`'s list and the compiled prefilter must keep exactly the functions
`may_use_red_zone` keeps; for every distinct encoding, the detailed decoding must give the records
read from capstone's ctypes structures. The compiled stack analysis is tests/test_stackflow.py's.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from conftest import build_decoder
from test_digest_templates import distinct_instructions, real_archive, real_objects

from redzone_check import digest, filters, native, stack
from redzone_check.calls import _disassembler
from redzone_check.decode import decoder, lite_decoder
from redzone_check.functions import list_functions


@pytest.fixture(scope="module")
def compiled(compiled_decoder: ModuleType) -> ModuleType:
    return compiled_decoder


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> ModuleType:
    """A build whose tables of mnemonics (16) and operand texts (64, emptied when half full) fill up."""
    return build_decoder(tmp_path_factory.mktemp("small"), [("SLOTS", "16"), ("TEXTS", "64")])


@pytest.fixture
def use(compiled: ModuleType, monkeypatch: pytest.MonkeyPatch) -> Iterator[native.NativeDecode]:
    """The compiled decoder, as `native_decode()` finds it in a wheel."""
    monkeypatch.setitem(sys.modules, "redzone_check._decoder", compiled)
    monkeypatch.delenv("REDZONE_CHECK_NATIVE", raising=False)
    native.reset()
    found = native.native_decode()
    assert found is not None, "the compiled structures differ from capstone's ctypes ones"
    yield found
    native.reset()


def _functions(archive: Path) -> Iterator[tuple[bytes, int]]:
    for elf in real_objects(archive):
        for fn in list_functions(elf):
            section = elf.section_data(elf.sections[fn.section_index])
            yield bytes(section[fn.offset : fn.offset + fn.size]), fn.offset


@pytest.mark.parametrize("archive", ["libc.a", "libgcc.a", "libasmrun.a"])
def test_compiled_decoding_and_prefilter_equal_capstone_on_real_archives(
    archive: str, use: native.NativeDecode
) -> None:
    md = lite_decoder()
    plain = _disassembler()  # calls.py's: Intel syntax and no skipdata, so it stops at bad bytes
    kept = rejected = 0
    for code, base in _functions(real_archive(archive)):
        lite = list(md.disasm_lite(code, base))
        assert use(md.csh.value, code, base) == lite, hex(base)
        assert native.disasm_lite(plain, code, base) == list(plain.disasm_lite(code, base))
        expected = filters.may_use_red_zone(lite)
        assert _kept(code, base) == expected, hex(base)
        kept += expected
        rejected += not expected
    assert kept > 10 and rejected > 10  # both verdicts were exercised


def _kept(code: bytes, base: int) -> bool:
    """Whether the compiled prefilter (`_decoder.rzc_kept`, through `_function.c`) keeps a function."""
    assert native.native_function() is not None
    return stack.analyse_function(code, base, True) is not None


@pytest.mark.parametrize("archive", ["libc.a", "libasmrun.a"])
def test_compiled_selection_equals_capstone_on_real_archives(archive: str, use: native.NativeDecode) -> None:
    md = _disassembler()  # calls.py's
    selected = 0
    for code, base in _functions(real_archive(archive)):
        wanted = [
            i for i in md.disasm_lite(code, base) if i[2].startswith(("call", "j")) or i[3].startswith("rax,")
        ]
        assert native.select(md, code, base, ("call", "j"), ("rax,",)) == wanted, hex(base)
        selected += len(wanted)
    assert selected > 1000
    assert native.select(md, b"", 0, ("call",), ()) == []  # nothing decoded: capstone's own answer
    with pytest.raises(TypeError):
        use.__self__.select(md.csh.value, b"\xc3", 0, (b"call",), ())  # type: ignore[attr-defined]


def test_full_and_emptied_tables_change_nothing(small: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "redzone_check._decoder", small)
    native.reset()
    try:
        decode = native.native_decode()
        assert decode is not None
        md = lite_decoder()
        for code, base in _functions(real_archive("libgcc.a")):
            lite = list(md.disasm_lite(code, base))
            assert decode(md.csh.value, code, base) == lite, hex(base)
            assert _kept(code, base) == filters.may_use_red_zone(lite), hex(base)
    finally:
        native.reset()


@pytest.mark.parametrize(
    "code",
    [
        b"",
        b"\x06\x07\x90",  # push %es / pop %es: invalid in 64-bit mode, then a nop
        b"\x90\x0f",  # a nop, then an instruction cut short
        b"\xc8\x10\x00\x00\xc9\xc3",  # enter $0x10,$0 / leave / ret: kept for enter alone
        b"\x48\x89\x44\x24\xf8\xc3",  # mov %rax,-0x8(%rsp) / ret
        b"\x89\xe0\xc3",  # mov %esp,%eax / ret: kept for a copy of %esp
        b"\x48\x83\xec\x08\x48\x83\xc4\x08\xc3",  # sub $8,%rsp / add $8,%rsp / ret: rejected
    ],
)
def test_edge_cases_equal_capstone(code: bytes, use: native.NativeDecode) -> None:
    for md in (lite_decoder(), _disassembler()):
        assert native.disasm_lite(md, code, 0x40) == list(md.disasm_lite(code, 0x40))
    lite = filters.decode(code, 0x40)
    assert _kept(code, 0x40) == filters.may_use_red_zone(lite)


@pytest.mark.parametrize("archive", ["libc.a", "libgcc.a", "libasmrun.a"])
def test_compiled_detailed_decoding_equals_capstone_on_real_archives(
    archive: str, use: native.NativeDecode
) -> None:
    detail = native.native_detail()
    assert detail is not None
    handle = decoder().csh.value
    checked = 0
    for raw, address, _mnemonic, _op_str in distinct_instructions(real_archive(archive)):
        expected = digest._decode_ctypes(raw, address)
        assert digest._from_native(detail(handle, raw, address), len(raw)) == expected, raw.hex()
        checked += 1
    assert checked > 1000


def test_detailed_decoding_of_what_capstone_cannot_decode(use: native.NativeDecode) -> None:
    detail = native.native_detail()
    assert detail is not None
    for raw in (b"", b"\x06", b"\x0f", b"\x48"):
        assert detail(decoder().csh.value, raw, 0) is None
        assert digest._decode(raw, 0) == digest._decode_ctypes(raw, 0) == (None, len(raw))


@pytest.mark.parametrize(
    ("key", "shift"), [("_cs_insn.op_str", 8), ("CsX86.operands", 4), ("X86OpMem.disp", 8), ("X86Op", 8)]
)
def test_a_different_struct_layout_is_not_used(
    compiled: ModuleType, monkeypatch: pytest.MonkeyPatch, key: str, shift: int
) -> None:
    class Shifted:
        decode = compiled.decode
        detail = compiled.detail
        configure = compiled.configure

        @staticmethod
        def layout() -> dict[str, int]:
            found: dict[str, int] = compiled.layout()
            return {**found, key: found[key] + shift}

    assert native.matches(compiled.layout())
    assert not native.matches(Shifted.layout())
    monkeypatch.setitem(sys.modules, "redzone_check._decoder", Shifted)
    native.reset()
    try:
        assert native.native_decode() is None and native.native_detail() is None
        assert native.native_flow() is None
        code = b"\x48\x89\x44\x24\xf8\xc3"
        assert filters.decode(code, 0) == list(lite_decoder().disasm_lite(code, 0))
    finally:
        native.reset()


def test_a_field_capstone_does_not_declare_is_a_mismatch(compiled: ModuleType) -> None:
    assert not native.matches({**compiled.layout(), "CsX86.no_such_field": 0})
    assert not native.matches({**compiled.layout(), "NoSuchStruct": 8})


def test_the_environment_turns_it_off(compiled: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "redzone_check._decoder", compiled)
    monkeypatch.setenv("REDZONE_CHECK_NATIVE", "0")
    native.reset()
    try:
        assert native.native_decode() is None and native.native_detail() is None
        assert native.native_flow() is None
    finally:
        native.reset()
