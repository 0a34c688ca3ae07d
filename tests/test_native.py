"""The compiled lite decoder (`_litedecode.c`) gives exactly what capstone's `disasm_lite` gives.

An editable install runs the Python path, so the module is compiled here from its source with the
C compiler the wheel build would use. The oracles are capstone's own Python binding and the
prefilter's Python definition: for every function of real archives (libc.a, libgcc.a, OCaml's
libasmrun.a), the compiled decoding must equal `disasm_lite`'s list, and the compiled prefilter
must keep exactly the functions `may_use_red_zone` keeps.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import capstone
import pytest
from conftest import require_tool
from test_digest_templates import real_archive

from redzone_check import filters, native
from redzone_check.archive import iter_members
from redzone_check.calls import _disassembler
from redzone_check.decode import lite_decoder
from redzone_check.elf import ElfFile, NotApplicable
from redzone_check.functions import list_functions

SOURCE = Path(__file__).resolve().parent.parent / "redzone_check" / "_litedecode.c"


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> ModuleType:
    require_tool("gcc")
    from setuptools import Distribution, Extension

    where = tmp_path_factory.mktemp("litedecode")
    dist = Distribution({"ext_modules": [Extension("redzone_check._litedecode", [str(SOURCE)])]})
    build: Any = dist.get_command_obj("build_ext")
    build.build_lib = str(where / "lib")
    build.build_temp = str(where / "tmp")
    build.ensure_finalized()
    build.run()
    (path,) = (where / "lib" / "redzone_check").glob("_litedecode*.so")
    spec = importlib.util.spec_from_file_location("redzone_check._litedecode", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def use(compiled: ModuleType, monkeypatch: pytest.MonkeyPatch) -> Iterator[native.NativeDecode]:
    """The compiled decoder, as `native_decode()` finds it in a wheel."""
    monkeypatch.setitem(sys.modules, "redzone_check._litedecode", compiled)
    monkeypatch.delenv("REDZONE_CHECK_NATIVE", raising=False)
    native.native_decode.cache_clear()
    found = native.native_decode()
    assert found is not None, "the compiled cs_insn differs from capstone's"
    yield found
    native.native_decode.cache_clear()


def _functions(archive: Path) -> Iterator[tuple[bytes, int]]:
    data = memoryview(archive.read_bytes())
    for member in iter_members(data):
        try:
            elf = ElfFile(member.data)
        except NotApplicable:
            continue
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
        assert use(md.csh.value, code, base, None) == lite, hex(base)
        assert native.disasm_lite(plain, code, base) == list(plain.disasm_lite(code, base))
        expected = lite if filters.may_use_red_zone(lite) else None
        assert filters.decode_if_may_use(code, base) == expected, hex(base)
        kept += expected is not None
        rejected += expected is None
    assert kept > 10 and rejected > 10  # both verdicts were exercised


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
    assert filters.decode_if_may_use(code, 0x40) == (lite if filters.may_use_red_zone(lite) else None)


def test_an_error_in_the_prefilter_test_is_raised(use: native.NativeDecode) -> None:
    def broken(mnemonic: str, op_str: str) -> bool:
        raise ValueError(f"asked about {mnemonic} {op_str}")

    with pytest.raises(ValueError, match=r"asked about mov rax, qword ptr \[rsp - 8\]"):
        use(_disassembler().csh.value, b"\x48\x8b\x44\x24\xf8", 0, broken)


def test_a_different_struct_layout_is_not_used(compiled: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    class Shifted:
        decode = compiled.decode
        configure = compiled.configure

        @staticmethod
        def layout() -> dict[str, int]:
            return {**compiled.layout(), "op_str": compiled.layout()["op_str"] + 8}

    monkeypatch.setitem(sys.modules, "redzone_check._litedecode", Shifted)
    native.native_decode.cache_clear()
    try:
        assert native.native_decode() is None
        code = b"\x48\x89\x44\x24\xf8\xc3"
        assert filters.decode(code, 0) == list(lite_decoder().disasm_lite(code, 0))
    finally:
        native.native_decode.cache_clear()


def test_the_environment_turns_it_off(compiled: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "redzone_check._litedecode", compiled)
    monkeypatch.setenv("REDZONE_CHECK_NATIVE", "0")
    native.native_decode.cache_clear()
    try:
        assert native.native_decode() is None
    finally:
        native.native_decode.cache_clear()


def test_capstone_is_the_version_the_layout_was_declared_for() -> None:
    # _litedecode.c declares capstone 5's cs_insn; pyproject.toml pins capstone below 6.
    assert capstone.cs_version()[0] == 5
