"""Inputs: the paths a user names -> ELF blobs (whole files and archive members), recognised by content.

Files are mapped read-only and members are zero-copy slices of the mapping, so memory stays flat in
archive size. Problems go to a `Sink`, one call per problem, and the walk continues with the next input.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from redzone_check.archive import (
    ArchiveError,
    MappedFile,
    Member,
    NotRegularFile,
    archive_kind,
    index_members,
    iter_members,
)
from redzone_check.ldscript import LdScriptError, ScriptInput, read_script
from redzone_check.model import SkipKind, binary_location

ELF_MAGIC = b"\x7fELF"
BITCODE_MAGICS = (b"BC\xc0\xde", b"\xde\xc0\x17\x0b")  # raw LLVM bitcode and its wrapper
BITCODE_REASON = "LLVM bitcode (LTO): no machine code to analyse"
VCS_DIRS = frozenset({".git", ".hg", ".svn", ".bzr", "_darcs", "CVS", ".jj", ".pijul"})
MAX_NESTING = 8  # archives in thin archives, ld scripts naming ld scripts
_DESCRIPTIONS = (
    (b"\x89PNG", "a PNG image"),
    (b"#!", "a script"),
    (b"\x1f\x8b", "gzip data"),
    (b"PK\x03\x04", "a zip archive"),
    (b"MZ", "a PE/COFF file"),
    (b"\xcf\xfa\xed\xfe", "a Mach-O object"),
    (b"%PDF", "a PDF document"),
)


Identity = tuple[int, int, int, int]  # st_dev, st_ino, st_size, st_mtime_ns


@dataclass(frozen=True)
class Where:
    """Where a blob's bytes are: `length` bytes at `offset` of the file `path` maps.

    `identity` is the file's as the walk mapped it. A scan's workers read each object from here
    rather than walking the inputs again, and a file whose identity has moved since the walk
    (replaced, rewritten, truncated) is not read.
    """

    path: str  # the file mapped: the archive, the file itself, or a thin archive's member file
    identity: Identity
    offset: int
    length: int

    def within(self, offset: int, length: int) -> Where:
        """The `length` bytes at `offset` of the bytes here (a member of an archive that is here)."""
        return Where(self.path, self.identity, self.offset + offset, length)


@dataclass(frozen=True)
class Blob:
    """Something that starts with the ELF magic: a whole file, or a member of an archive.

    `data` is a zero-copy view of a read-only file mapping. Finish with a blob before asking the
    iterator for the next one, or copy what must outlive that step (`bytes(blob.data)`): the iterator
    closes each mapping when it moves on, and a mapping that is still viewed is only unmapped when the
    last view is dropped, so hoarded views keep whole files mapped.
    """

    path: str  # as the user named it, as found by the walk, or as an ld script named it
    member: str | None  # None outside archives; `inner.a(x.o)` for a member of a nested archive
    data: bytes | memoryview
    where: Where

    @property
    def display(self) -> str:
        return binary_location(self.path, self.member)


class Sink(Protocol):
    def skip(self, path: str, member: str | None, reason: str, kind: SkipKind) -> None: ...

    def error(self, path: str, member: str | None, message: str) -> None: ...


def not_elf_reason(head: bytes) -> str:
    for magic, what in _DESCRIPTIONS:
        if head.startswith(magic):
            return f"not an ELF file ({what})"
    if head and all(32 <= b < 127 or b in b"\t\r\n" for b in head):
        return "not an ELF file (text)"
    return "not an ELF file"


Chain = tuple[str, ...]  # member names, outermost first: ("normal.a", "one.o") is shown normal.a(one.o)


def _shown(chain: Chain) -> str | None:
    if not chain:
        return None
    return "(".join(chain) + ")" * (len(chain) - 1)


def iter_blobs(paths: Sequence[str], sink: Sink) -> Iterator[Blob]:
    """The ELF files and archive members under `paths`, in order; each file is read once.

    Explicitly named files that are not ELF are reported to `sink.skip`; inside a directory walk,
    only archives, ld scripts, ELF files and LLVM bitcode are considered.
    """
    return _Inputs(sink).paths(paths)


class _Inputs:
    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self.files_seen: set[tuple[int, int]] = set()
        self.dirs_seen: set[tuple[int, int]] = set()
        # Archives that thin-archive entries point into, mapped and indexed once while an input is read.
        self.nested: dict[str, tuple[MappedFile, str | None, dict[int, Member], ArchiveError | None]] = {}

    def paths(self, paths: Sequence[str]) -> Iterator[Blob]:
        for path in paths:
            try:
                info = os.stat(path)
            except OSError as exc:
                self.sink.error(path, None, f"cannot read: {exc.strerror or exc}")
                continue
            if stat.S_ISDIR(info.st_mode):
                self.dirs_seen.add((info.st_dev, info.st_ino))
                yield from self._walk(path)
            else:
                yield from self._file(path, explicit=True, depth=0)

    def _walk(self, directory: str) -> Iterator[Blob]:
        try:
            with os.scandir(directory) as it:
                names = sorted(entry.name for entry in it)
        except OSError as exc:
            self.sink.error(directory, None, f"cannot list directory: {exc.strerror or exc}")
            return
        for name in names:
            path = name if directory == os.curdir else os.path.join(directory, name)
            try:
                info = os.stat(path)
            except OSError:
                continue  # a dangling symlink is not an input
            if stat.S_ISDIR(info.st_mode):
                key = (info.st_dev, info.st_ino)
                if name not in VCS_DIRS and key not in self.dirs_seen:  # symlinked loops end here
                    self.dirs_seen.add(key)
                    yield from self._walk(path)
            elif stat.S_ISREG(info.st_mode):
                yield from self._file(path, explicit=False, depth=0)

    def _file(self, path: str, explicit: bool, depth: int) -> Iterator[Blob]:
        try:
            mapping = MappedFile(path)
        except OSError as exc:
            self.sink.error(path, None, f"cannot read: {exc.strerror or exc}")
            return
        except NotRegularFile as exc:
            self.sink.error(path, None, f"cannot read: not a regular file ({exc})")
            return
        try:
            if mapping.key in self.files_seen:
                return
            self.files_seen.add(mapping.key)
            data = mapping.view
            head = bytes(data[:8])
            kind = archive_kind(head)
            if not data:
                if explicit:
                    self.sink.skip(path, None, "empty file", "empty")
            elif head.startswith(ELF_MAGIC):
                yield Blob(path, None, data, Where(path, mapping.identity, 0, len(data)))
            elif kind is not None:
                at = Where(path, mapping.identity, 0, len(data))
                yield from self._archive(path, (), data, kind == "thin", os.path.dirname(path), depth, at)
            elif head.startswith(BITCODE_MAGICS):
                self.sink.skip(path, None, BITCODE_REASON, "not-analysable")
            else:
                yield from self._maybe_script(path, data, explicit, depth)
        finally:
            mapping.close()
            for nested, *_ in self.nested.values():
                nested.close()
            self.nested.clear()

    def _maybe_script(self, path: str, data: memoryview, explicit: bool, depth: int) -> Iterator[Blob]:
        try:
            inputs = read_script(data)
        except LdScriptError as exc:
            self.sink.error(path, None, f"malformed GNU ld script: {exc}")
            return
        if inputs is not None:
            yield from self._script(path, inputs, depth)
        elif explicit:
            self.sink.skip(path, None, not_elf_reason(bytes(data[:512])), "not-elf")

    def _script(self, path: str, inputs: list[ScriptInput], depth: int) -> Iterator[Blob]:
        if depth >= MAX_NESTING:
            self.sink.error(path, None, f"ld scripts nested more than {MAX_NESTING} deep")
            return
        if not inputs:
            self.sink.skip(path, None, "GNU ld script that names no input files", "not-elf")
        for entry in inputs:
            if entry.library:
                self.sink.skip(
                    path,
                    None,
                    f"ld script entry -l{entry.name} is found through the linker's search path, "
                    "which is not followed: name that library's file instead",
                    "not-analysable",
                )
                continue
            target = "/" + entry.name.lstrip("/") if entry.sysroot else entry.name
            target = os.path.join(os.path.dirname(path), target)  # absolute names stay as they are
            if not os.path.lexists(target):
                # A link would fail on it too, so none of its code can end up in a binary.
                self.sink.skip(path, None, f"ld script names {target}, which does not exist", "not-elf")
                continue
            yield from self._file(target, explicit=True, depth=depth + 1)

    def _archive(
        self, path: str, outer: Chain, data: memoryview, thin: bool, base: str, depth: int, at: Where
    ) -> Iterator[Blob]:
        if depth >= MAX_NESTING:
            self.sink.error(path, _shown(outer), f"archives nested more than {MAX_NESTING} deep")
            return
        try:
            for member in iter_members(data, thin):
                chain = (*outer, member.name)
                if thin:
                    yield from self._thin_member(path, chain, member, base, depth)
                else:
                    inside = at.within(member.data_offset, len(member.data))
                    yield from self._member(path, chain, member.data, base, depth, inside)
        except ArchiveError as exc:
            self.sink.error(path, _shown((*outer, exc.member) if exc.member else outer), str(exc))

    def _thin_member(self, path: str, chain: Chain, member: Member, base: str, depth: int) -> Iterator[Blob]:
        name = _shown(chain)
        if depth >= MAX_NESTING:
            self.sink.error(path, name, f"archives nested more than {MAX_NESTING} deep")
            return
        if member.origin is not None:
            yield from self._nested_member(path, chain, member, base, depth)
            return
        target = os.path.join(base, member.name)
        try:
            mapping = MappedFile(target)
        except OSError as exc:
            self.sink.error(path, name, f"thin archive member file {target}: {exc.strerror or exc}")
            return
        except NotRegularFile as exc:
            self.sink.error(path, name, f"thin archive member file {target} is not a regular file ({exc})")
            return
        try:
            at = Where(target, mapping.identity, 0, len(mapping.view))
            yield from self._member(path, chain, mapping.view, os.path.dirname(target), depth, at)
        finally:
            mapping.close()

    def _nested_member(
        self, path: str, chain: Chain, member: Member, base: str, depth: int
    ) -> Iterator[Blob]:
        # `/123:456`: the member at header offset 456 of the archive that long name 123 names.
        target = os.path.join(base, member.name)
        try:
            if target not in self.nested:
                mapping = MappedFile(target)
                kind = archive_kind(mapping.view)
                index, problem = index_members(mapping.view, kind == "thin") if kind else ({}, None)
                self.nested[target] = (mapping, kind, index, problem)
        except (OSError, NotRegularFile) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else f"not a regular file ({exc})"
            self.sink.error(path, _shown(chain), f"thin archive points into {target}: {reason or exc}")
            return
        mapped, kind, index, problem = self.nested[target]
        inner = index.get(member.origin or 0)
        if inner is None:
            why = problem or (f"no member header at offset {member.origin:#x}" if kind else "not an archive")
            self.sink.error(path, _shown(chain), f"thin archive points into {target}: {why}")
        elif kind == "thin":
            yield from self._thin_member(
                path, (*chain, inner.name), inner, os.path.dirname(target), depth + 1
            )
        else:
            at = Where(target, mapped.identity, inner.data_offset, len(inner.data))
            yield from self._member(
                path, (*chain, inner.name), inner.data, os.path.dirname(target), depth + 1, at
            )

    def _member(
        self, path: str, chain: Chain, data: memoryview, base: str, depth: int, at: Where
    ) -> Iterator[Blob]:
        """The blobs in `data`, whose bytes are at `at`."""
        name = _shown(chain)
        head = bytes(data[:8])
        kind = archive_kind(head)
        if not data:
            self.sink.skip(path, name, "empty member", "empty")
        elif head.startswith(ELF_MAGIC):
            yield Blob(path, name, data, at)
        elif head.startswith(BITCODE_MAGICS):
            self.sink.skip(path, name, BITCODE_REASON, "not-analysable")
        elif kind is not None:
            yield from self._archive(path, chain, data, kind == "thin", base, depth + 1, at)
        else:
            self.sink.skip(path, name, not_elf_reason(bytes(data[:512])), "not-elf")
