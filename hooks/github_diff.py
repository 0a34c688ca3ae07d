"""A pull request's patches -> the lines a review may comment on, and reviewdog's filter modes."""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath

FILTER_MODES = ("added", "diff_context", "file", "nofilter")

_HUNK = re.compile(r"^@@ -\d+(?:,\d+)? \+(\d+)(?:,(\d+))? @@")


@dataclass(frozen=True)
class FileDiff:
    """One changed file. `context` holds every new-side line shown in a hunk: GitHub accepts a
    RIGHT-side comment on exactly those lines and answers 422 for any other."""

    path: str
    status: str
    added: frozenset[int]
    context: frozenset[int]


def parse_patch(patch: str | None) -> tuple[frozenset[int], frozenset[int]]:
    """(added lines, lines in the hunks) on the new side of a unified diff."""
    added: set[int] = set()
    shown: set[int] = set()
    line = 0
    for text in (patch or "").splitlines():
        hunk = _HUNK.match(text)
        if hunk:
            line = int(hunk.group(1))
            continue
        if line == 0 or text.startswith("\\"):  # before the first hunk, or "\ No newline at end of file"
            continue
        if text.startswith("+"):
            added.add(line)
            shown.add(line)
            line += 1
        elif text.startswith("-"):
            continue
        else:
            shown.add(line)
            line += 1
    return frozenset(added), frozenset(shown)


@dataclass(frozen=True)
class PullDiff:
    files: Mapping[str, FileDiff]

    @classmethod
    def from_files(cls, files: Iterable[tuple[str, str, str | None]]) -> PullDiff:
        """From (filename, status, patch) triples, as the pulls/files endpoint lists them."""
        result: dict[str, FileDiff] = {}
        for path, status, patch in files:
            if status == "removed":
                continue
            added, shown = parse_patch(patch)
            result[path] = FileDiff(path, status, added, shown)
        return cls(result)

    def changed(self, path: str | None) -> bool:
        return path is not None and path in self.files

    def commentable(self, path: str | None, line: int | None) -> bool:
        return path in self.files and line in self.files[path].context if path and line else False

    def selects(self, path: str | None, line: int | None, mode: str) -> bool:
        """Does a position pass the filter mode (reviewdog's meanings)?"""
        if mode == "nofilter":
            return True
        if path is None or path not in self.files:
            return False
        if mode == "file":
            return True
        if line is None:
            return False
        diff = self.files[path]
        return line in (diff.added if mode == "added" else diff.context)


def repo_path(path: str | None, workspace: str) -> str | None:
    """A path as the engine reported it -> repository-relative POSIX path, or None outside the repository.

    The engine reports paths relative to --source-root (the workspace) when it can; absolute paths
    and `./`, `a/../b` spellings still name files in the repository and must match the PR's names."""
    if not path:
        return None
    root = posixpath.normpath(workspace.replace("\\", "/"))
    norm = posixpath.normpath(path.replace("\\", "/"))
    if posixpath.isabs(norm):
        if norm != root and not norm.startswith(root.rstrip("/") + "/"):
            return None
        norm = posixpath.relpath(norm, root)
    if norm == "." or norm.startswith("../"):
        return None
    return str(PurePosixPath(norm))
