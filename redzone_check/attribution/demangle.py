"""Readable function names from raw symbols: C++ (Itanium), Rust (legacy and v0), OCaml."""

from __future__ import annotations

import re

import rust_demangler

# ocamlopt's OCaml-level glue emitted into the startup object; named like the (C) runtime.
_OCAML_GLUE = re.compile(r"caml_(curry\d+(_\d+)*(_app)?|apply\d+|tuplify\d+|send\d+|program)$")
_RUST_LEGACY = re.compile(r"^_?_ZN.*17h[0-9a-f]{16}E(\.[\w.]+)?$")
_RUST_HASH = re.compile(r"::h[0-9a-f]{16}$")
# A module path segment: capitalised, single underscores only (`__` separates segments).
_UNIT = re.compile(r"[A-Z](?:[A-Za-z0-9']|_(?!_))*(?:__[A-Z](?:[A-Za-z0-9']|_(?!_))*)*")
_HEX = r"\$([2-7][0-9a-fA-F])"
_STAMP = re.compile(r"(?:_\d+)+(?:_code)?$")
_OPERATOR_CHARS = frozenset("!$%&*+-./:<=>?@^|~#")
_ANONYMOUS = re.compile(r"^(fun|anon_fn)(?=_\d|\[|$)")


def demangle(symbol: str) -> tuple[str, str]:
    """(readable name, language guess among "c++", "rust", "ocaml", "c").

    OCaml symbols become `Module.function` with the compiler's `_123` stamp dropped,
    operators are written `( +! )`, and dune's `Lib__Module` wrapping becomes `Lib.Module`.
    Anonymous functions keep their stamp (`Foo.fun_1234`), because it is all that tells
    them apart; module-level symbols keep their role (`Foo.entry`, `Foo.code_begin`).
    Names that fail to demangle are returned unchanged.
    """
    if _RUST_LEGACY.match(symbol) or symbol.startswith(("_R", "__R")):
        name = _rust(symbol)
        if name is not None:
            return name, "rust"
    if symbol.startswith(("_Z", "__Z")):
        return _cxx(symbol), "c++"
    if symbol.startswith("caml_"):
        return symbol, "ocaml" if _OCAML_GLUE.match(symbol) else "c"
    if symbol.startswith("caml") and len(symbol) > 4:
        return _ocaml(symbol[4:]) or symbol, "ocaml"
    return symbol, "c"


def _rust(symbol: str) -> str | None:
    try:
        name = str(rust_demangler.demangle(symbol.removeprefix("_") if symbol.startswith("__") else symbol))
    except Exception:  # the library raises its own types, and plain ones on malformed input
        return None
    return _RUST_HASH.sub("", name)


def _cxx(symbol: str) -> str:
    # Imported here: cxxfilt loads libstdc++ through ctypes, a tenth of the start-up of a
    # pre-commit run, and most runs never meet a C++ name.
    import cxxfilt

    try:
        return str(cxxfilt.demangle(symbol))
    except (cxxfilt.InvalidName, UnicodeDecodeError, ValueError):
        return symbol


def _escaped(hex_digits: str) -> str | None:
    """ocamlopt writes each character outside [A-Za-z0-9_] as `$xx`: printable punctuation only."""
    char = chr(int(hex_digits, 16))
    return char if char.isprintable() and not char.isalnum() and char not in "_ " else None


def _unescape(text: str) -> str:
    return re.sub(_HEX, lambda m: _escaped(m[1]) or m[0], text)


def _function(rest: str) -> str:
    if _ANONYMOUS.match(rest):
        return _unescape(rest)
    stripped = _STAMP.sub("", rest)
    name = _unescape(stripped or rest)
    if name and all(c in _OPERATOR_CHARS for c in name):
        return f"( {name} )"
    return name


def _ocaml(body: str) -> str | None:
    """`Foo__bar_12` (4.x), `Foo.bar_12` or `Foo$bar_12` (5.x) -> `Foo.bar`."""
    unit = _UNIT.match(body)
    if unit is None:
        return None
    modules = unit[0].split("__")
    rest = body[unit.end() :]
    if not rest:
        # A capitalised function, e.g. the functor in `camlStdlib__Sys__Make_184`.
        if len(modules) > 1 and _STAMP.search(modules[-1]):
            modules[-1] = _function(modules[-1])
        return ".".join(modules)
    if rest.startswith("__"):
        rest = rest[2:]
    elif rest[0] == "." or (rest[0] == "$" and not _is_operator_escape(rest)):
        rest = rest[1:]
    elif rest[0] != "$":
        return None
    # OCaml 5 writes nested modules with the same separator as the function.
    parts = re.split(r"\.|\$(?![2-7][0-9a-fA-F])", rest)
    while len(parts) > 1 and _UNIT.fullmatch(parts[0]):
        modules.append(parts.pop(0))
    return ".".join([*modules, _function(".".join(parts))])


def _is_operator_escape(rest: str) -> bool:
    m = re.match(_HEX, rest)
    return m is not None and _escaped(m[1]) is not None
