"""OCaml `external` declarations and top-level `let` definitions found in .ml/.mli sources.

A small lexer (nested comments, strings, quoted strings, character literals) is
enough: an `external` is `external name : type = "stub" ["native stub"] [@@attrs]`,
where the type may span lines and carry attributes of its own.
"""

from __future__ import annotations

import os
import re
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache

SKIP_DIRS = frozenset({"_build", ".git", "node_modules", "_opam", "_esy"})
_MAX_SOURCE_BYTES = 4 * 1024 * 1024

_TOKEN = re.compile(
    r"""(?P<space>\s+)
      | (?P<comment>\(\*)
      | (?P<string>")
      | (?P<quoted>\{(?P<qid>[a-z_]*)\|)
      | (?P<char>'(?:\\(?:[\\'"ntbr ]|\d{3}|x[0-9a-fA-F]{2}|o[0-3][0-7]{2})|[^\\'\n])')
      | (?P<ident>[A-Za-z_][A-Za-z0-9_']*)
      | (?P<attr>\[@@?@?)
      | (?P<other>.)""",
    re.VERBOSE | re.DOTALL,
)
_OPENERS = {"(": ")", "[": "]", "{": "}"}


@dataclass(frozen=True)
class External:
    name: str  # qualified OCaml name, e.g. "Native.my_sum"
    file: str  # relative to the source root
    line: int
    byte_stub: str
    native_stub: str
    noalloc: bool


@dataclass(frozen=True)
class Token:
    kind: str  # "ident", "string" or "punct"
    text: str
    line: int


def tokens(text: str) -> Iterator[Token]:
    """Identifiers, string literals (their contents) and punctuation; comments dropped."""
    pos, line, size = 0, 1, len(text)
    while pos < size:
        match = _TOKEN.match(text, pos)
        assert match is not None  # `other` matches any character
        kind = match.lastgroup
        start_line = line
        if kind == "comment":
            end = _comment_end(text, match.end())
        elif kind == "string":
            end = _string_end(text, match.end())
            yield Token("string", _unescape(text[match.end() : end - 1]), start_line)
        elif kind in ("quoted", "qid"):
            closing = "|" + (match.group("qid") or "") + "}"
            found = text.find(closing, match.end())
            end = size if found < 0 else found + len(closing)
            yield Token("string", text[match.end() : found if found >= 0 else size], start_line)
        else:
            end = match.end()
            if kind == "ident":
                yield Token("ident", match.group(), start_line)
            elif kind in ("attr", "other"):
                yield Token("punct", match.group(), start_line)
        line += text.count("\n", pos, end)
        pos = end


def _comment_end(text: str, pos: int) -> int:
    depth = 1
    while depth and pos < len(text):
        if text.startswith("(*", pos):
            depth, pos = depth + 1, pos + 2
        elif text.startswith("*)", pos):
            depth, pos = depth - 1, pos + 2
        elif text[pos] == '"':  # OCaml lexes strings inside comments
            pos = _string_end(text, pos + 1)
        else:
            pos += 1
    return pos


def _string_end(text: str, pos: int) -> int:
    while pos < len(text):
        if text[pos] == "\\":
            pos += 2
        elif text[pos] == '"':
            return pos + 1
        else:
            pos += 1
    return len(text)


def _unescape(body: str) -> str:
    return body.replace('\\"', '"').replace("\\\\", "\\")


def parse(text: str, module: str, file: str) -> tuple[list[External], dict[str, int]]:
    """The `external`s of one source file, and the line of each top-level-ish `let` by qualified name."""
    toks = list(tokens(text))
    externals: list[External] = []
    lets: dict[str, int] = {}
    scopes: list[str | None] = []  # struct/sig/begin/object nesting, with module names
    i = 0
    while i < len(toks):
        tok = toks[i]
        path = ".".join([module, *(s for s in scopes if s)])
        if tok.kind == "ident" and tok.text in ("struct", "sig", "begin", "object"):
            scopes.append(_module_name(toks, i) if tok.text in ("struct", "sig") else None)
        elif tok.kind == "ident" and tok.text == "end" and scopes:
            scopes.pop()
        elif tok.kind == "ident" and tok.text in ("let", "and") and all(s is not None for s in scopes):
            j = i + 1
            while j < len(toks) and toks[j].text in ("rec", "nonrec"):
                j += 1
            if j < len(toks) and toks[j].kind == "ident" and toks[j].text[0].islower():
                lets.setdefault(f"{path}.{toks[j].text}", toks[j].line)
        elif tok.kind == "ident" and tok.text == "external":
            found, i = _external(toks, i, path, file)
            if found is not None:
                externals.append(found)
            continue
        i += 1
    return externals, lets


def _module_name(toks: list[Token], at: int) -> str:
    """The X of `module X = struct`, `module X : sig`, `module type X = sig`; "" when anonymous."""
    depth = 0
    for j in range(at - 1, max(at - 64, -1), -1):
        text = toks[j].text
        if text in (")", "]"):
            depth += 1
        elif text in ("(", "["):
            depth -= 1
        elif depth == 0 and text == "module" and j + 1 < at:
            name = toks[j + 2].text if toks[j + 1].text == "type" and j + 2 < at else toks[j + 1].text
            return name if name[:1].isupper() else ""
        elif depth == 0 and text in ("let", "in", "end", "struct", "sig", ";"):
            return ""
    return ""


def _external(toks: list[Token], at: int, path: str, file: str) -> tuple[External | None, int]:
    i = at + 1
    if i < len(toks) and toks[i].text == "(":  # an operator: external ( +! ) : ...
        close = next((j for j in range(i, min(i + 8, len(toks))) if toks[j].text == ")"), i)
        name = "( " + "".join(t.text for t in toks[i + 1 : close]) + " )"
        i = close + 1
    elif i < len(toks) and toks[i].kind == "ident":
        name, i = toks[i].text, i + 1
    else:
        return None, at + 1
    depth = 0
    while i < len(toks) and not (depth == 0 and toks[i].text == "="):
        text = toks[i].text
        if text in _OPENERS or text.startswith("[@"):
            depth += 1
        elif text in (")", "]", "}"):
            depth -= 1
        elif toks[i].kind == "ident" and text in ("let", "external", "type", "module", "val"):
            return None, i
        i += 1
    i += 1
    stubs: list[str] = []
    while i < len(toks) and toks[i].kind == "string":
        stubs.append(toks[i].text)
        i += 1
    if not stubs:
        return None, i
    noalloc = "noalloc" in stubs[1:]
    stubs = [s for s in stubs[:2] if s != "noalloc"] or stubs[:1]
    while i < len(toks) and toks[i].text.startswith("[@@"):
        close = next((j for j in range(i, min(i + 64, len(toks))) if toks[j].text == "]"), len(toks) - 1)
        noalloc = noalloc or "".join(t.text for t in toks[i + 1 : close]) in ("noalloc", "ocaml.noalloc")
        i = close + 1
    return External(f"{path}.{name}", file, toks[at].line, stubs[0], stubs[-1], noalloc), i


class ExternalIndex:
    """Every `external` under a source root, by stub name, and `let` lines by qualified name."""

    def __init__(self, externals: list[External], lets: dict[str, tuple[str, int]]) -> None:
        self.externals = externals
        self.lets = lets
        self._by_stub: dict[str, list[External]] = defaultdict(list)
        for ext in externals:
            self._by_stub[ext.native_stub].append(ext)
            if ext.byte_stub != ext.native_stub:
                self._by_stub[ext.byte_stub].append(ext)

    @classmethod
    def scan(cls, source_root: str) -> ExternalIndex:
        root = os.path.abspath(source_root)
        implementations: list[External] = []
        interfaces: list[External] = []
        lets: dict[str, tuple[str, int]] = {}
        for directory, dirs, files in os.walk(root):
            dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and not d.startswith("."))
            for filename in sorted(files):
                if not filename.endswith((".ml", ".mli")):
                    continue
                full = os.path.join(directory, filename)
                try:
                    if os.path.getsize(full) > _MAX_SOURCE_BYTES:
                        continue
                    with open(full, encoding="utf-8", errors="replace") as handle:
                        text = handle.read()
                except OSError:
                    continue
                relative = os.path.relpath(full, root).replace(os.sep, "/")
                stem = filename.rsplit(".", 1)[0]
                module = stem[:1].upper() + stem[1:]
                library = _wrapping_library(directory)
                if library and library != module:
                    module = f"{library}.{module}"
                found, file_lets = parse(text, module, relative)
                (interfaces if filename.endswith(".mli") else implementations).extend(found)
                for name, line in file_lets.items():
                    lets.setdefault(name, (relative, line))
        known = {e.name for e in implementations}
        return cls(implementations + [e for e in interfaces if e.name not in known], lets)

    def stub_names(self) -> frozenset[str]:
        return frozenset(self._by_stub)

    def by_stub(self, stub: str) -> tuple[External, ...]:
        return tuple(self._by_stub.get(stub, ()))

    def definition(self, qualified: str) -> tuple[str, int] | None:
        """File and line of `let name` for `Lib.Module.name`, trying shorter module paths too."""
        parts = qualified.split(".")
        for start in range(len(parts) - 1):
            found = self.lets.get(".".join(parts[start:]))
            if found is not None:
                return found
        return None


_LIBRARY = re.compile(r"\(\s*library\b")
_LIB_NAME = re.compile(r"\(\s*name\s+([A-Za-z_][A-Za-z0-9_']*)\s*\)")
_UNWRAPPED = re.compile(r"\(\s*wrapped\s+false\s*\)")


@lru_cache(maxsize=1024)
def _wrapping_library(directory: str) -> str | None:
    """The dune library that wraps the modules of `directory` (`Netif` for `netif`), if any.

    dune wraps a library's modules by default, so `packet.ml` in `(library (name netif))`
    is the OCaml module `Netif.Packet`; callers are demangled that way too.
    """
    try:
        with open(os.path.join(directory, "dune"), encoding="utf-8", errors="replace") as handle:
            text = handle.read(_MAX_SOURCE_BYTES)
    except OSError:
        return None
    stanzas = _LIBRARY.findall(text)
    if len(stanzas) != 1 or _UNWRAPPED.search(text):
        return None
    start = _LIBRARY.search(text)
    name = _LIB_NAME.search(text, start.start()) if start else None
    if name is None:
        return None
    return name.group(1)[:1].upper() + name.group(1)[1:]
