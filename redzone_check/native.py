"""The compiled lite decoder (`_litedecode.c`), when the wheel has it and it matches capstone.

It reads capstone's `cs_insn` through a struct declared in C, so it is used only when that
declaration has the size and field offsets of capstone's own ctypes one; otherwise, and in a
pure-Python install, `filters.decode` uses `Cs.disasm_lite`, with the same result.
REDZONE_CHECK_NATIVE=0 turns it off (tests compare both paths).
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Callable
from functools import cache
from typing import Any

import capstone

# decode(handle, code, base, matters) -> list of (address, size, mnemonic, op_str), or None
NativeDecode = Callable[[int, bytes, int, Any], "list[tuple[int, int, str, str]] | None"]


@cache
def native_decode() -> NativeDecode | None:
    if os.environ.get("REDZONE_CHECK_NATIVE", "1") == "0":
        return None
    try:
        from redzone_check import _litedecode  # type: ignore[attr-defined]
    except ImportError:
        return None
    if not _matches(_litedecode.layout()):
        return None
    library: Any = capstone._cs
    address = ctypes.c_void_p
    _litedecode.configure(
        ctypes.cast(library.cs_disasm, address).value, ctypes.cast(library.cs_free, address).value
    )
    decode: NativeDecode = _litedecode.decode
    return decode


def _matches(layout: dict[str, int]) -> bool:
    insn: Any = capstone._cs_insn
    fields = ("id", "address", "size", "mnemonic", "op_str", "detail")
    return layout.get("sizeof") == ctypes.sizeof(insn) and all(
        layout.get(name) == getattr(insn, name).offset for name in fields
    )


def disasm_lite(md: capstone.Cs, code: bytes, base: int) -> list[tuple[int, int, str, str]]:
    """`list(md.disasm_lite(code, base))`, by the compiled decoder when there is one."""
    native = native_decode()
    found = None if native is None else native(md.csh.value, code, base, None)
    # An empty decoding goes to disasm_lite, which tells an empty input from a capstone error.
    return found if found else list(md.disasm_lite(code, base))
