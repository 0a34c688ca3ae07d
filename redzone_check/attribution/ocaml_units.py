"""Recognise ocamlopt-generated code by its symbols, with or without DWARF.

ocamlopt brackets every compilation unit with global marker symbols
(`caml<Unit>__code_begin`, `__code_end`, `__data_begin`, `__frametable`,
`__entry`, `__gc_roots`). They are global, so they survive
`strip --strip-unneeded` and appear in the dynamic symbol table of shared objects.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_MARKER = re.compile(r"^caml(.+?)__(code_begin|code_end|data_begin|data_end|frametable|entry|gc_roots)$")

# Units whose markers bracket hand-written runtime assembly (amd64.S), not ocamlopt output.
_RUNTIME_UNITS = frozenset({"_system", "_hot"})

# The startup unit holds generated glue with fixed names rather than `caml_startup__` prefixes.
_STARTUP_UNIT = "_startup"
_STARTUP_GLUE = re.compile(r"^caml_(curry\d+(_\d+)*(_app)?|tuplify\d+|apply\d+|send\d+|program|code_begin)$")


def ocaml_unit_names(symbol_names: Iterable[str]) -> set[str]:
    """Unit names (`Cipher__Cipher_block`, `_startup`) whose markers appear among the symbols."""
    units = set()
    for name in symbol_names:
        match = _MARKER.match(name)
        if match and match.group(1) not in _RUNTIME_UNITS:
            units.add(match.group(1))
    return units


def is_ocaml_symbol(symbol: str, units: set[str]) -> bool:
    """Whether `symbol` names code ocamlopt generated for one of `units`.

    OCaml 4 separates unit and function with `__`; OCaml 5 uses `.` (5.0, 5.1) or `$` (5.2+).
    """
    if not symbol.startswith("caml"):
        return False
    if _STARTUP_UNIT in units and _STARTUP_GLUE.match(symbol):
        return True
    rest = symbol[4:]
    return any(rest.startswith(unit) and rest[len(unit) :].startswith(("__", ".", "$")) for unit in units)
