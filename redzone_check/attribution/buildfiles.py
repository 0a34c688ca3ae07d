"""The build-file line that compiles a C source and sets its flags (dune, make, CMake, meson...).

Shared by the engine (a finding's `build_location` and fix) and the Action (a review
comment on the flags line). Searches are bounded: build files are read from the
source's directory upwards to the source root only.
"""

from __future__ import annotations

import functools
import json
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from redzone_check.model import BuildLocation

_SKIP_DIRS = frozenset({"_build", ".git", "node_modules", "_opam", ".venv"})
_MAX_BYTES = 2 * 1024 * 1024
_C_EXTENSIONS = (".c", ".cc", ".cpp", ".cxx", ".S", ".s")


def locate(source_file: str, source_root: str, missing_flag: str = "-mno-red-zone") -> BuildLocation | None:
    """Where `source_file` (repository-relative) gets its compiler flags, or where `missing_flag` belongs."""
    root = Path(source_root).resolve()
    source = (root / source_file).resolve()
    if not source.is_relative_to(root):
        return None
    found = _dune(source, root)
    directory = source.parent
    while found is None:
        for name, finder in _FINDERS:
            if (directory / name).is_file():
                found = finder(directory / name, source, root)
                if found is not None:
                    break
        if found is not None or directory == root:
            break
        directory = directory.parent
    found = found or _compile_commands(source, root)
    if found is None:
        return None
    file, line, kind, text = found
    return BuildLocation(file.relative_to(root).as_posix(), line, kind, text)


Found = tuple[Path, int, str, str]


def _read(path: Path) -> str:
    try:
        if path.stat().st_size > _MAX_BYTES:
            return ""
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def _one_line(text: str, limit: int = 100) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --- dune -----------------------------------------------------------------------------------------


@dataclass
class _Sexp:
    items: list[_Sexp | str]
    line: int
    start: int
    end: int

    def head(self) -> str:
        return self.items[0] if self.items and isinstance(self.items[0], str) else ""

    def fields(self, name: str) -> Iterator[_Sexp]:
        return (i for i in self.items if isinstance(i, _Sexp) and i.head() == name)

    def atoms(self) -> list[str]:
        return [i for i in self.items[1:] if isinstance(i, str)]


_SEXP_TOKEN = re.compile(r'\s+|;[^\n]*|#\|.*?\|#|\(|\)|"(?:\\.|[^"\\])*"|[^\s()";]+', re.DOTALL)


def _sexps(text: str) -> list[_Sexp]:
    top = _Sexp([], 0, 0, len(text))
    stack = [top]
    for match in _SEXP_TOKEN.finditer(text):
        token = match.group()
        if token == "(":
            node = _Sexp([], text.count("\n", 0, match.start()) + 1, match.start(), len(text))
            stack[-1].items.append(node)
            stack.append(node)
        elif token == ")" and len(stack) > 1:
            stack.pop().end = match.end()
        elif token and not token[0].isspace() and token[0] != ";" and not token.startswith("#|"):
            stack[-1].items.append(token.strip('"'))
    return [i for i in top.items if isinstance(i, _Sexp)]


def _dune(source: Path, root: Path) -> Found | None:
    dune = source.parent / "dune"
    text = _read(dune)
    if not text:
        return None
    language = "cxx" if source.suffix in (".cc", ".cpp", ".cxx") else "c"
    for stanza in _sexps(text):
        for stubs in stanza.fields("foreign_stubs"):
            langs = [a for f in stubs.fields("language") for a in f.atoms()]
            names = [a for f in stubs.fields("names") for a in f.atoms()]
            if language in langs and (source.stem in names or ":standard" in names):
                flags = next(stubs.fields("flags"), None)
                return _dune_found(dune, text, flags) if flags else _dune_env(source, root, dune, text, stubs)
        old = "cxx_names" if language == "cxx" else "c_names"
        if any(source.stem in f.atoms() for f in stanza.fields(old)):
            flags = next(stanza.fields("cxx_flags" if language == "cxx" else "c_flags"), None)
            return _dune_found(dune, text, flags) if flags else _dune_env(source, root, dune, text, stanza)
    return None


def _dune_found(dune: Path, text: str, node: _Sexp) -> Found:
    return dune, node.line, "dune", _one_line(text[node.start : node.end])


def _dune_env(source: Path, root: Path, dune: Path, text: str, stanza: _Sexp) -> Found:
    # Without per-stanza flags, an `(env (_ (c_flags ...)))` here or above sets them.
    directory = source.parent
    while directory.is_relative_to(root):
        for candidate in (directory / "dune", directory / "dune-workspace"):
            for env in _sexps(_read(candidate)):
                if env.head() != "env":
                    continue
                for profile in env.items[1:]:
                    if isinstance(profile, _Sexp):
                        flags = next(profile.fields("c_flags"), None)
                        if flags is not None:
                            return _dune_found(candidate, _read(candidate), flags)
        if directory == root:
            break
        directory = directory.parent
    return dune, stanza.line, "dune", _one_line(text[stanza.start : stanza.end], 60)


# --- make, automake, kbuild, autoconf -------------------------------------------------------------

_MAKE_ASSIGN = r"^\s*(?:override\s+|export\s+)*{target}(?P<var>{var})\s*(?P<op>\+|:|::|\?|!)?="


def _make(path: Path, source: Path, root: Path) -> Found | None:
    lines = _read(path).splitlines()
    stem = re.escape(source.stem)
    patterns = [
        _MAKE_ASSIGN.format(target=rf"[^:#=\s]*\b{stem}\.o\s*:\s*", var=r"[A-Z_]*CFLAGS"),
        _MAKE_ASSIGN.format(target="", var=rf"CFLAGS_{stem}\.o"),
        _MAKE_ASSIGN.format(target="", var=r"(?:AM_|EXTRA_)?CFLAGS|ccflags-y|\w+_CFLAGS"),
    ]
    for pattern in patterns:
        regex = re.compile(pattern)
        hits = [(n, m) for n, text in enumerate(lines, 1) if (m := regex.match(text))]
        if hits:
            # The plain assignment sets the base flags; `+=` lines only add to it.
            best = next(((n, m) for n, m in hits if m.group("op") in (None, ":", "::", "?")), hits[0])
            kind = (
                "kbuild" if "ccflags" in best[1].group("var") or "CFLAGS_" in best[1].group("var") else "make"
            )
            return path, best[0], kind, _one_line(lines[best[0] - 1])
    return None


def _autoconf(path: Path, source: Path, root: Path) -> Found | None:
    regex = re.compile(r"^\s*(?:CFLAGS=|AX_APPEND_COMPILE_FLAGS\(|AC_SUBST\(\[?\w*CFLAGS)")
    for n, text in enumerate(_read(path).splitlines(), 1):
        if regex.match(text):
            return path, n, "autoconf", _one_line(text)
    return None


# --- CMake and meson ------------------------------------------------------------------------------


def _calls(text: str, names: str) -> Iterator[tuple[str, int, str]]:
    """(command, line, argument text) of each call to one of `names` (a regex alternation)."""
    for match in re.finditer(rf"(?im)^[ \t]*({names})\s*\(", text):
        depth, pos = 1, match.end()
        while depth and pos < len(text):
            depth += {"(": 1, ")": -1}.get(text[pos], 0)
            pos += 1
        yield match.group(1).lower(), text.count("\n", 0, match.start()) + 1, text[match.end() : pos - 1]


def _mentions(args: str, source: Path) -> bool:
    return re.search(rf"(^|[\s'\"/(]){re.escape(source.name)}($|[\s'\",)])", args) is not None


def _cmake(path: Path, source: Path, root: Path) -> Found | None:
    text = _read(path)
    calls = list(
        _calls(
            text,
            "set_source_files_properties|target_compile_options|add_compile_options|set|"
            "string|add_library|add_executable",
        )
    )
    targets = {
        args.split()[0]
        for name, _, args in calls
        if name in ("add_library", "add_executable") and args.split() and _mentions(args, source)
    }
    ranked: list[Callable[[str, str], bool]] = [
        lambda n, a: n == "set_source_files_properties" and _mentions(a, source) and "COMPILE_" in a,
        lambda n, a: n == "target_compile_options" and bool(a.split()) and a.split()[0] in targets,
        lambda n, a: n == "add_compile_options",
        lambda n, a: n in ("set", "string") and "CMAKE_C_FLAGS" in a,
        lambda n, a: n in ("add_library", "add_executable") and _mentions(a, source),
    ]
    for wanted in ranked:
        for name, line, args in calls:
            if wanted(name, args):
                return path, line, "cmake", _one_line(f"{name}({args})")
    return None


def _meson(path: Path, source: Path, root: Path) -> Found | None:
    text = _read(path)
    calls = list(
        _calls(
            text,
            r"(?:\w+\s*=\s*)?(?:library|static_library|shared_library|executable|"
            r"both_libraries|add_project_arguments|add_global_arguments)",
        )
    )
    for _, line, args in calls:
        if _mentions(args, source) and "c_args" in args:
            offset = args.index("c_args")
            return path, line + args.count("\n", 0, offset), "meson", _one_line(args[offset:].split("\n")[0])
    for name, line, args in calls:
        if name.endswith(("project_arguments", "global_arguments")) and "'c'" in args:
            return path, line, "meson", _one_line(f"{name}({args})")
    for name, line, args in calls:
        if _mentions(args, source):
            return path, line, "meson", _one_line(f"{name}({args})", 60)
    return None


_FINDERS = (
    ("CMakeLists.txt", _cmake),
    ("meson.build", _meson),
    ("Makefile.am", _make),
    ("Kbuild", _make),
    ("GNUmakefile", _make),
    ("makefile", _make),
    ("Makefile", _make),
    ("configure.ac", _autoconf),
)


# --- compile_commands.json ------------------------------------------------------------------------


def _compile_commands(source: Path, root: Path) -> Found | None:
    candidates = [root / "compile_commands.json"]
    candidates += sorted(root.glob("*/compile_commands.json"))
    for path in candidates:
        text = _read(path)
        for start, entry in _entries(text):
            file = Path(str(entry.get("directory", root))) / str(entry.get("file", ""))
            if os.path.normpath(file) == str(source):
                key = next((k for k in ("command", "arguments") if k in entry), "file")
                at = text.find(f'"{key}"', start)
                line = text.count("\n", 0, at if at >= 0 else start) + 1
                value = entry[key]
                shown = " ".join(value) if isinstance(value, list) else str(value)
                return path, line, "compile_commands", _one_line(f'"{key}": {shown}')
    return None


def _entries(text: str) -> Iterator[tuple[int, dict[str, object]]]:
    decoder = json.JSONDecoder()
    pos = text.find("[") + 1
    while 0 < pos < len(text):
        while pos < len(text) and text[pos] in " \t\r\n,":
            pos += 1
        if pos >= len(text) or text[pos] != "{":
            return
        try:
            entry, end = decoder.raw_decode(text, pos)
        except ValueError:
            return
        if isinstance(entry, dict):
            yield pos, entry
        pos = end


# --- an object without DWARF: find its source by name ---------------------------------------------


def source_for_object(object_name: str, source_root: str) -> str | None:
    """`mystub.o` (or `lib.a`'s member) -> the one `mystub.c` under the root, when exactly one exists."""
    stem = os.path.basename(object_name).split(".")[0]
    matches = [f for f in _sources(os.path.abspath(source_root)) if os.path.basename(f).split(".")[0] == stem]
    return matches[0] if len(matches) == 1 else None


@functools.lru_cache(maxsize=8)
def _sources(root: str) -> tuple[str, ...]:
    found: list[str] = []
    for directory, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d not in _SKIP_DIRS and not d.startswith(".")]
        found.extend(
            os.path.relpath(os.path.join(directory, f), root).replace(os.sep, "/")
            for f in files
            if f.endswith(_C_EXTENSIONS)
        )
        if len(found) > 50_000:
            break
    return tuple(found)
