"""GNU ld scripts that stand in for a library (Debian's libm.a and libc.so): the files they name.

Only the input commands matter here: `INPUT(...)` and `GROUP(...)`, with `AS_NEEDED(...)` inside them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

HEADER = "/* GNU ld script"
MAX_SIZE = 64 * 1024  # such scripts are a few lines; anything larger is something else
_INPUT_COMMANDS = frozenset({"INPUT", "GROUP"})
# Commands seen in library stand-ins; a file without the header must use only these to count as a script.
_KNOWN_COMMANDS = _INPUT_COMMANDS | {
    "OUTPUT_FORMAT",
    "OUTPUT_ARCH",
    "SEARCH_DIR",
    "TARGET",
    "ENTRY",
    "OUTPUT",
}
# Cheap first look, so that a directory walk does not tokenize every source file it meets.
_COMMENT = r"/\*[^*]*\*+(?:[^/*][^*]*\*+)*/"
_START = re.compile(
    rf"\s*(?:{_COMMENT}\s*)*(?:/\* GNU ld script|(?:{'|'.join(sorted(_KNOWN_COMMANDS))})\s*\()"
)
_TOKEN = re.compile(
    rf'\s+|{_COMMENT}|(?P<punct>[(),;{{}}])|"(?P<quoted>[^"]*)"|(?P<word>(?:[^\s(),;{{}}"/]|/(?!\*))+)'
)


class LdScriptError(Exception):
    """A file that announces itself as an ld script but cannot be read as one."""


@dataclass(frozen=True)
class ScriptInput:
    name: str  # as written, without the sysroot `=` prefix
    library: bool = False  # `-lfoo`: found through the linker's search path
    as_needed: bool = False
    sysroot: bool = False  # `=/usr/lib/...`: relative to the sysroot, which is `/` here


def _tokens(text: str) -> list[str]:
    out: list[str] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            what = (
                "unterminated comment"
                if text.startswith("/*", pos)
                else f"unexpected text {text[pos : pos + 20]!r}"
            )
            raise LdScriptError(f"{what} at offset {pos}")
        if match.lastgroup is not None:
            out.append(match.group(match.lastgroup))
        pos = match.end()
    return out


def _group_end(tokens: list[str], start: int) -> int:
    """Index just past the parenthesised (or braced) group that opens at `start`."""
    depth = 0
    for index in range(start, len(tokens)):
        if tokens[index] in ("(", "{"):
            depth += 1
        elif tokens[index] in (")", "}"):
            depth -= 1
            if depth == 0:
                return index + 1
    raise LdScriptError("unbalanced parentheses")


def _inputs(tokens: list[str], as_needed: bool) -> list[ScriptInput]:
    out: list[ScriptInput] = []
    index = 0
    while index < len(tokens):
        token = tokens[index]
        if token == "AS_NEEDED" and tokens[index + 1 : index + 2] == ["("]:
            end = _group_end(tokens, index + 1)
            out += _inputs(tokens[index + 2 : end - 1], True)
            index = end
            continue
        if token in ("(", ")", "{", "}"):
            raise LdScriptError(f"unexpected {token!r} in a file list")
        if token != ",":
            if token.startswith("-l") and len(token) > 2:
                out.append(ScriptInput(token[2:], library=True, as_needed=as_needed))
            else:
                sysroot = token.startswith("=")
                out.append(ScriptInput(token[1:] if sysroot else token, as_needed=as_needed, sysroot=sysroot))
        index += 1
    return out


def parse(text: str) -> list[ScriptInput]:
    """The files an ld script's INPUT and GROUP commands name, in order. Raises LdScriptError."""
    return _parse(text)[1]


def _parse(text: str) -> tuple[set[str], list[ScriptInput]]:
    tokens = _tokens(text)
    commands: set[str] = set()
    out: list[ScriptInput] = []
    index = 0
    while index < len(tokens):
        command = tokens[index]
        if command == ";":
            index += 1
            continue
        if tokens[index + 1 : index + 2] not in (["("], ["{"]):
            raise LdScriptError(f"expected '(' after {command!r}")
        end = _group_end(tokens, index + 1)
        commands.add(command)
        if command in _INPUT_COMMANDS:
            out += _inputs(tokens[index + 2 : end - 1], False)
        index = end
    return commands, out


def read_script(data: bytes | memoryview) -> list[ScriptInput] | None:
    """The inputs when `data` is an ld script standing in for a library, else None.

    Raises LdScriptError when the file starts with the GNU header but is malformed.
    """
    if len(data) > MAX_SIZE or not _START.match(bytes(data[:4096]).decode("latin-1")):
        return None
    try:
        text = bytes(data).decode("utf-8")
    except UnicodeDecodeError:
        return None
    if text.lstrip().startswith(HEADER):
        return parse(text)
    try:
        commands, inputs = _parse(text)
    except LdScriptError:
        return None
    return inputs if commands & _INPUT_COMMANDS and commands <= _KNOWN_COMMANDS else None
