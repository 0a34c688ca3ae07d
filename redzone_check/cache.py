"""A content-addressed cache of per-object analyses, so a re-run on unchanged archives is near-free.

An entry is keyed by sha256 of the object's bytes and a salt naming everything else the analysis
depends on: the engine's own source, capstone's version and the options that change verdicts. It
holds only the path-independent part (detections, counts, call edges); attribution reads the
object itself on every run, because it depends on the working tree. Entries are pickles framed with
their own sha256, written atomically; a damaged entry is ignored and rewritten. Pickles are only
read from a directory that this user owns and nobody else can write.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pickle
import stat
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import capstone

from redzone_check import __version__

LAYOUT = "v3"  # v2: entries hold symbols and calls; v3: and calls with call-site lines
DEFAULT_MAX_BYTES = 256 * 1024 * 1024
_MAGIC = b"RZC1"
_DIGEST = 32


def default_directory() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "redzone-check"


def engine_digest() -> str:
    """The engine's identity: a version bump is not needed for an edited checkout to miss the cache."""
    h = hashlib.sha256(f"{__version__}\0{capstone.__version__}\0".encode())
    package = Path(__file__).resolve().parent
    for source in sorted(package.rglob("*.py")):
        h.update(str(source.relative_to(package)).encode())
        with contextlib.suppress(OSError):
            h.update(source.read_bytes())
    return h.hexdigest()


def salt(parts: Iterable[str]) -> bytes:
    return hashlib.sha256("\0".join((engine_digest(), *parts)).encode()).digest()


class ResultCache:
    def __init__(self, directory: Path, salt: bytes, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.root = directory / LAYOUT
        self.salt = salt
        self.max_bytes = max_bytes
        self.written = 0

    @classmethod
    def open(cls, directory: Path, salt: bytes) -> ResultCache | None:
        """The cache in `directory`, or None when it cannot be created or is not safe to read."""
        root = directory / LAYOUT
        try:
            root.mkdir(parents=True, exist_ok=True, mode=0o700)
            info = root.stat()
        except OSError:
            return None
        if info.st_uid != os.getuid() or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            return None  # unpickling what someone else could have written would run their code
        return cls(directory, salt)

    def key(self, data: bytes | memoryview) -> str:
        h = hashlib.sha256(self.salt)
        h.update(data)
        return h.hexdigest()

    def _file(self, key: str) -> Path:
        return self.root / key[:2] / key[2:]

    def get(self, key: str) -> Any | None:
        path = self._file(key)
        try:
            raw = path.read_bytes()
        except OSError:
            return None
        body = raw[len(_MAGIC) + _DIGEST :]
        if (
            raw[: len(_MAGIC)] != _MAGIC
            or hashlib.sha256(body).digest() != raw[len(_MAGIC) : len(_MAGIC) + _DIGEST]
        ):
            return None
        try:
            return pickle.loads(body)
        except Exception:  # a pickle of classes that changed shape; rewritten after the analysis
            return None

    def put(self, key: str, value: Any) -> None:
        body = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        path = self._file(key)
        try:
            path.parent.mkdir(exist_ok=True, mode=0o700)
            fd, temp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(_MAGIC + hashlib.sha256(body).digest() + body)
                os.replace(temp, path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(temp)
                raise
        except OSError:
            return  # a full or read-only disk costs the speed-up, never the scan
        self.written += 1

    def prune(self) -> int:
        """Delete the least recently written entries until the cache fits; returns how many went."""
        entries = []
        total = 0
        for sub in self.root.iterdir() if self.root.is_dir() else ():
            if not sub.is_dir():
                continue
            for entry in os.scandir(sub):
                with contextlib.suppress(OSError):
                    info = entry.stat()
                    entries.append((info.st_mtime, info.st_size, entry.path))
                    total += info.st_size
        removed = 0
        entries.sort()
        for _mtime, size, path in entries:
            if total <= self.max_bytes:
                break
            with contextlib.suppress(OSError):
                os.unlink(path)
                total -= size
                removed += 1
        return removed
