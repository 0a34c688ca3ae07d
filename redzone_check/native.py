"""The compiled module `_decoder` (`_decoder.c`, `_stackflow.c`, `_function.c`), when the wheel has it
and it matches capstone: capstone's decodings without their Python overhead, and the stack analysis.

It reads capstone's structures as declared in the headers it was compiled with, so it is used
only when their sizes and field offsets equal those of capstone's own ctypes declarations, which
the Python path reads; otherwise, and in a pure-Python install, the Python path runs, with the
same results. REDZONE_CHECK_NATIVE=0 turns it off (tests compare both paths).
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Callable
from functools import cache
from typing import Any

import capstone
from capstone import x86

# decode(handle, code, base) -> list of (address, size, mnemonic, op_str)
NativeDecode = Callable[[int, bytes, int], "list[tuple[int, int, str, str]]"]
# detail(handle, raw, address) -> (id, prefix[0], operands, written register ids or None, head)
# an operand: type, reg, size, imm, base, index, disp, access, scale
Operand = tuple[int, int, int, int, int, int, int, int, int]
Detail = tuple[int, int, tuple[Operand, ...], tuple[int, ...] | None, int]
NativeDetail = Callable[[int, bytes, int], Detail | None]
# analyse(handle, code, base, lite, blocks, relevant) -> (found, unknown), each found access being
# (address, kind, rsp offset, size, benign) with kind 0 read, 1 write, 2 address; each block
# (start, end, succs, indirect)
Found = tuple[int, int, int, int, int]
NativeFlow = Callable[
    [int, bytes, int, "list[tuple[int, int, str, str]]", "list[tuple[int, int, list[int], bool]]", bytes],
    "tuple[list[Found], int]",
]
# analyse_function(lite handle, detail handle, code, base, relocatable, matters, fact_fields) -> None
# when the prefilter rejects the function, else (found, unknown), each found access being
# (address, text, kind, rsp offset, size, benign)
FoundAt = tuple[int, str, int, int, int, int]
NativeFunction = Callable[[int, int, bytes, int, bool, Any, Any], "tuple[list[FoundAt], int] | None"]

# The ctypes classes of capstone's structures, by the names `_decoder.layout()` uses.
_CTYPES: dict[str, Any] = {
    "_cs_insn": capstone._cs_insn,
    "_cs_detail": capstone._cs_detail,
    "CsX86": x86.CsX86,
    "X86Op": x86.X86Op,
    "X86OpMem": x86.X86OpMem,
    "CsX86Encoding": x86.CsX86Encoding,
}


@cache
def _module() -> Any:
    if os.environ.get("REDZONE_CHECK_NATIVE", "1") == "0":
        return None
    try:
        from redzone_check import _decoder  # type: ignore[attr-defined]
    except ImportError:
        return None
    if not matches(_decoder.layout()):
        return None
    library: Any = capstone._cs
    _decoder.configure(*(_address(library[name]) for name in ("cs_disasm", "cs_free", "cs_regs_access")))
    return _decoder


def _address(function: Any) -> int:
    address = ctypes.cast(function, ctypes.c_void_p).value
    assert address is not None
    return address


def matches(layout: dict[str, int]) -> bool:
    """Whether every size and offset the compiled module reads equals capstone's ctypes one."""
    for key, value in layout.items():
        name, _, field = key.partition(".")
        cls = _CTYPES.get(name)
        if cls is None or (field and not hasattr(cls, field)):
            return False
        expected = getattr(cls, field).offset if field else ctypes.sizeof(cls)
        if value != expected:
            return False
    return True


def native_decode() -> NativeDecode | None:
    module = _module()
    return None if module is None else module.decode


def native_detail() -> NativeDetail | None:
    module = _module()
    return None if module is None else module.detail


@cache
def native_flow() -> NativeFlow | None:
    """The stack analysis in C (`_stackflow.c`), given the constants of `stackstate.py`."""
    module = _module()
    if module is None:
        return None
    from redzone_check.stackstate import flow_constants  # stackstate imports this module

    module.flow_setup(*flow_constants())
    return module.analyse  # type: ignore[no-any-return]


def native_function() -> NativeFunction | None:
    """The analysis of one function from its bytes in C (`_function.c`)."""
    module = _module()
    if module is None or native_flow() is None:
        return None
    return module.analyse_function  # type: ignore[no-any-return]


def reset() -> None:
    """Look for the compiled module again (tests switch between the two paths)."""
    _module.cache_clear()
    native_flow.cache_clear()


def select(
    md: capstone.Cs, code: bytes, base: int, mnemonics: tuple[str, ...], operands: tuple[str, ...]
) -> list[tuple[int, int, str, str]]:
    """The instructions of `md.disasm_lite(code, base)` whose mnemonic starts with one of `mnemonics`
    or whose operand text starts with one of `operands`: by the compiled decoder when there is one,
    which makes no Python object for the others."""
    module = _module()
    found = None if module is None else module.select(md.csh.value, code, base, mnemonics, operands)
    if found is not None:
        return found  # type: ignore[no-any-return]
    lite = md.disasm_lite(code, base)
    return [insn for insn in lite if insn[2].startswith(mnemonics) or insn[3].startswith(operands)]


def disasm_lite(md: capstone.Cs, code: bytes, base: int) -> list[tuple[int, int, str, str]]:
    """`list(md.disasm_lite(code, base))`, by the compiled decoder when there is one."""
    native = native_decode()
    found = None if native is None else native(md.csh.value, code, base)
    # An empty decoding goes to disasm_lite, which tells an empty input from a capstone error.
    return found if found else list(md.disasm_lite(code, base))
