"""Report paths relative to the repository: --path-map rewrites and dune's `_build/<context>/`."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence

# dune builds `src/stub.c` as `_build/default/src/stub.c` (or `_build/<context>/...`).
_DUNE_BUILD = re.compile(r"(^|/)_build/[^/]+/")


def _posix(path: str) -> str:
    return path.replace(os.sep, "/") if os.sep != "/" else path


def _strip_slash(path: str) -> str:
    return path.rstrip("/") or "/"


class PathMapper:
    """Turns DWARF source paths and scanned file paths into the paths reports show."""

    def __init__(self, source_root: str, path_maps: Sequence[tuple[str, str]] = ()) -> None:
        root = os.path.abspath(source_root)
        # A root reached through a symlink may appear either way in DWARF (gcc keeps $PWD).
        self._roots = tuple(dict.fromkeys((root, os.path.realpath(root))))
        self._known: dict[str, str] = {}
        self._maps = sorted(
            ((_strip_slash(old), _strip_slash(new)) for old, new in path_maps if old),
            key=lambda pair: len(pair[0]),
            reverse=True,
        )

    def _rewrite(self, path: str) -> str:
        for old, new in self._maps:
            if path == old:
                return new
            if path.startswith(old + "/") or old == "/":
                return new + "/" + path[len(old) :].lstrip("/")
        return path

    def _relative(self, path: str) -> str:
        # Every member of an archive, and every line of a unit, asks for the same path: resolving
        # symlinks is an lstat per component, a third of a cached re-run.
        known = self._known.get(path)
        if known is None:
            known = self._known[path] = self._resolve(path)
        return known

    def _resolve(self, path: str) -> str:
        absolute = os.path.normpath(os.path.join(self._roots[0], path))
        candidates = [absolute]
        if os.path.exists(absolute):
            candidates.append(os.path.realpath(absolute))
        for candidate in candidates:
            for root in self._roots:
                if candidate == root or candidate.startswith(root.rstrip("/") + "/"):
                    return _posix(os.path.relpath(candidate, root))
        return _posix(absolute)

    def source(self, path: str) -> str:
        """A DWARF source path: rewritten by --path-map, without dune's `_build/<context>/`,
        repository-relative when under the source root, else normalised and absolute."""
        rewritten = self._rewrite(os.path.normpath(_posix(path)))
        stripped = _DUNE_BUILD.sub(r"\1", rewritten, count=1)
        return self._relative(stripped or ".")

    def binary(self, path: str) -> str:
        """A scanned file's path (relative ones are relative to the working directory):
        repository-relative when under the source root, after --path-map rewrites (a hook may
        scan a staged copy in a scratch directory and map it back to the repository)."""
        return self._relative(self._rewrite(os.path.abspath(path)))
