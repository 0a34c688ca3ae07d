"""Static archive (`ar`) members: GNU/SysV, BSD and thin archives, read from a file mapping without copying.

Every size comes from the file, so every size is checked against what remains of the buffer before it
is used, and each loop step advances by at least one 60-byte header: a lying archive costs neither
memory nor time.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass

ARCH_MAGIC = b"!<arch>\n"
THIN_MAGIC = b"!<thin>\n"
HEADER_SIZE = 60
_FMAG = b"`\n"
# Tables, not members: GNU/SysV symbol tables `/` and `/SYM64/`, the long-name table `//`,
# and the BSD/Darwin symbol tables `__.SYMDEF*`.
_GNU_TABLES = frozenset({"/", "/SYM64/", "//"})
_BSD_TABLES = frozenset({"__.SYMDEF", "__.SYMDEF SORTED", "__.SYMDEF_64", "__.SYMDEF_64 SORTED"})


class ArchiveError(Exception):
    """A structural problem; `member` names the member whose header is at fault, when known."""

    def __init__(self, message: str, member: str | None = None) -> None:
        super().__init__(message)
        self.member = member


@dataclass(frozen=True)
class Member:
    name: str
    header_offset: int
    size: int  # as the header says; in a thin archive, the size of the external file
    data: memoryview  # the member's bytes; empty in a thin archive, whose members live in their own files
    data_offset: int  # where `data` starts in the archive's buffer
    origin: int | None = None  # thin `/123:456`: the member sits at header offset 456 of the archive named


def archive_kind(head: bytes | memoryview) -> str | None:
    """The archive flavour from the first eight bytes: "regular", "thin" or None."""
    magic = bytes(head[:8])
    return "regular" if magic == ARCH_MAGIC else "thin" if magic == THIN_MAGIC else None


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def _number(field: bytes, what: str, where: int, member: str | None) -> int:
    text = field.strip(b" ")
    if not text.isdigit():
        raise ArchiveError(
            f"member header at offset {where:#x} has a non-numeric {what} field {_decode(field)!r}", member
        )
    return int(text)


def _long_name(table: memoryview | None, ref: str, where: int) -> str:
    if table is None:
        raise ArchiveError(
            f"member header at offset {where:#x} refers to long name /{ref} but there is no // table"
        )
    offset = int(ref)
    if offset >= len(table):
        raise ArchiveError(
            f"member header at offset {where:#x} refers to long name /{ref}, "
            f"outside the {len(table)}-byte // table"
        )
    raw = bytes(table[offset:])
    end = raw.find(b"\n")
    raw = raw[:end] if end >= 0 else raw
    return _decode(raw[:-1] if raw.endswith(b"/") else raw)


def iter_members(buf: memoryview, thin: bool = False) -> Iterator[Member]:
    """The members of the archive in `buf` (magic included), symbol and name tables left out.

    Raises ArchiveError at the first structural problem, after yielding the members before it.
    """
    size = len(buf)
    offset = len(ARCH_MAGIC)
    names: memoryview | None = None
    while offset < size:
        remaining = size - offset
        if remaining < HEADER_SIZE:
            if bytes(buf[offset:]).strip(b"\n") == b"":
                return  # trailing padding
            raise ArchiveError(
                f"member header at offset {offset:#x} is truncated: {remaining} of {HEADER_SIZE} bytes remain"
            )
        header = bytes(buf[offset : offset + HEADER_SIZE])
        raw_name = header[:16].rstrip(b" ")
        shown = _decode(raw_name.rstrip(b"/") or raw_name) or None  # for messages: `one.o/` is one.o
        if header[58:60] != _FMAG:
            raise ArchiveError(
                f"member header at offset {offset:#x} does not end in the ar magic `\\n", shown
            )
        length = _number(header[48:58], "size", offset, shown)
        start = offset + HEADER_SIZE
        claimed, available = length, size - start
        name, origin = _decode(raw_name), None
        special = name in _GNU_TABLES
        if name.startswith("#1/"):  # BSD: the name is the first bytes of the data
            name_len = _number(header[3:16], "BSD name length", offset, shown)
            if name_len > length:
                raise ArchiveError(
                    f"member header at offset {offset:#x} has a {name_len}-byte BSD name "
                    f"in a {length}-byte member",
                    shown,
                )
            if name_len > size - start:
                raise ArchiveError(
                    f"member header at offset {offset:#x} claims a {name_len}-byte name "
                    f"but only {size - start} bytes remain",
                    shown,
                )
            name = _decode(bytes(buf[start : start + name_len]).rstrip(b"\0"))
            start, length = start + name_len, length - name_len
            special = name in _BSD_TABLES
        elif name[:1] == "/" and name[1:2].isdigit():
            ref, _, origin_text = name[1:].partition(":")
            if not ref.isdigit() or (origin_text and not (thin and origin_text.isdigit())):
                raise ArchiveError(
                    f"member header at offset {offset:#x} has a malformed long name {name!r}", shown
                )
            name = _long_name(names, ref, offset)
            origin = int(origin_text) if origin_text else None
        elif not special:
            if name.startswith("/"):
                raise ArchiveError(
                    f"member header at offset {offset:#x} has an unknown special name {name!r}", shown
                )
            name = name[:-1] if name.endswith("/") else name
            special = name in _BSD_TABLES
        stored = length if (special or not thin) else 0
        if stored > size - start:
            raise ArchiveError(
                f"member header at offset {offset:#x} claims {claimed} bytes but only {available} remain",
                None if special else name,
            )
        data = buf[start : start + stored]
        if special and name == "//":
            names = data
        elif not special:
            yield Member(name, offset, length, data, start, origin)
        offset = start + stored
        offset += offset & 1


def index_members(buf: memoryview, thin: bool) -> tuple[dict[int, Member], ArchiveError | None]:
    """Members by header offset (how thin archives point into other archives), and what stopped the walk."""
    index: dict[int, Member] = {}
    try:
        for member in iter_members(buf, thin):
            index[member.header_offset] = member
    except ArchiveError as exc:
        return index, exc
    return index, None


def member_at(buf: memoryview, header_offset: int, thin: bool) -> Member:
    """The member whose header starts at `header_offset`."""
    index, problem = index_members(buf, thin)
    if header_offset in index:
        return index[header_offset]
    raise problem or ArchiveError(f"no member header starts at offset {header_offset:#x}")


class NotRegularFile(Exception):
    """A directory, FIFO, socket or device where a file was expected; the message says which."""


class MappedFile:
    """A whole file mapped read-only; `view` is empty for an empty file, which mmap refuses."""

    def __init__(self, path: str) -> None:
        # O_NONBLOCK: opening a FIFO named by mistake must not hang the scan.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise NotRegularFile(_file_type(info.st_mode))
            # What tells a later reader it maps the same file: replaced or rewritten, one of these moves.
            self.identity = (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)
            self._map = mmap.mmap(fd, 0, access=mmap.ACCESS_READ) if info.st_size else None
        finally:
            os.close(fd)
        self.view = memoryview(self._map) if self._map is not None else memoryview(b"")

    @property
    def key(self) -> tuple[int, int]:
        """The file, whatever its contents: device and inode."""
        return self.identity[:2]

    def close(self) -> None:
        self.view.release()
        if self._map is not None:
            # When the consumer still holds a view, the mapping goes when that view does.
            with contextlib.suppress(BufferError):
                self._map.close()


def _file_type(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "directory"), (stat.S_ISFIFO, "named pipe"), (stat.S_ISSOCK, "socket")):
        if test(mode):
            return name
    return "device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "special file"
