"""Third-party C code for the differential tests: fetched from PyPI at test time, cached, never committed.

The sdist is downloaded with pip (the registry's ordinary client), checked against a pinned sha256 and
unpacked under `$REDZONE_CHECK_TEST_CACHE` (default `~/.cache/redzone-check-tests/`). Objects built from
it are cached there too, keyed by the compiler's full `--version` text, the flags and the sdist.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import IN_CI


@dataclass(frozen=True)
class Sdist:
    name: str
    version: str
    sha256: str
    c_dir: str  # directory inside the unpacked sdist that holds the library's C files
    units: tuple[str, ...]  # compile units, relative to c_dir
    defines: tuple[str, ...] = ()  # what the package's setup.py would pass

    @property
    def filename(self) -> str:
        return f"{self.name}-{self.version}.tar.gz"


# python-lz4 bundles the reference lz4 library. Its frame layer (a streaming state machine behind a
# jump table, many small accessors) and xxhash (64-bit hash rounds) compile in well under a second;
# lz4.c and lz4hc.c would triple the time of the whole matrix.
LZ4 = Sdist(
    name="lz4",
    version="4.3.3",
    sha256="01fe674ef2889dbb9899d8a67361e0c4a2c833af5aeb37dd505727cf5d2a131e",
    c_dir="lz4libs",
    units=("lz4frame.c", "xxhash.c"),
)
# pycryptodome's portable C primitives: hash compression functions, block and stream ciphers and
# field arithmetic, mostly leaves with small local arrays, the code the red zone is made for.
PYCRYPTODOME = Sdist(
    name="pycryptodome",
    version="3.20.0",
    sha256="09609209ed7de61c2b560cc5c8c4fbf892f8b15b1faf7e4cbffac97db1fffda7",
    c_dir="src",
    units=tuple(
        f"{u}.c"
        for u in (
            "AES",
            "ARC2",
            "CAST",
            "MD4",
            "MD5",
            "RIPEMD160",
            "SHA1",
            "SHA256",
            "SHA512",
            "Salsa20",
            "blake2b",
            "blake2s",
            "blowfish",
            "chacha20",
            "ed25519",
            "ghash_portable",
            "keccak",
            "poly1305",
            "x25519",
        )
    ),
    defines=("-DHAVE_STDINT_H", "-DHAVE_UINT128", "-DHAVE_POSIX_MEMALIGN"),
)
SDISTS = (LZ4, PYCRYPTODOME)


def cache_root() -> Path:
    root = os.environ.get("REDZONE_CHECK_TEST_CACHE") or str(Path.home() / ".cache" / "redzone-check-tests")
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _unavailable(message: str) -> None:
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


def fetch(sdist: Sdist) -> Path:
    """The verified sdist archive in the cache, downloading it with pip when missing."""
    archive = cache_root() / sdist.filename
    if archive.is_file() and _sha256(archive) == sdist.sha256:
        return archive
    with tempfile.TemporaryDirectory(dir=cache_root()) as scratch:
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--no-binary",
            ":all:",
            "--dest",
            scratch,
            f"{sdist.name}=={sdist.version}",
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        got = Path(scratch) / sdist.filename
        if proc.returncode != 0 or not got.is_file():
            _unavailable(f"cannot download {sdist.filename} from PyPI: {proc.stderr.strip()[-500:]}")
        digest = _sha256(got)
        if digest != sdist.sha256:
            pytest.fail(f"{sdist.filename}: sha256 {digest} is not the pinned {sdist.sha256}")
        got.replace(archive)
    return archive


def c_sources(sdist: Sdist) -> Path:
    """The unpacked directory holding the sdist's C library (unpacked once, then reused)."""
    archive = fetch(sdist)
    top = cache_root() / f"{sdist.name}-{sdist.version}"
    done = top / ".unpacked"
    if not done.is_file():
        with tarfile.open(archive) as tar:
            if hasattr(tarfile, "data_filter"):
                tar.extractall(cache_root(), filter="data")
            else:  # Python < 3.10.12 has no extraction filters; the sha256 pin vouches for the members
                tar.extractall(cache_root())
        done.write_text(sdist.sha256)
    directory = top / sdist.c_dir
    missing = [u for u in sdist.units if not (directory / u).is_file()]
    assert not missing, f"{sdist.filename} lacks {missing}"
    return directory


@dataclass(frozen=True)
class BuildRequest:
    sdist: Sdist
    cc: str
    flags: tuple[str, ...]


def _identity(cc: str) -> str:
    proc = subprocess.run([cc, "--version"], capture_output=True, text=True, check=True)
    return proc.stdout


def jobs() -> int:
    return max(1, len(os.sched_getaffinity(0)))


def build(requests: Sequence[BuildRequest]) -> dict[BuildRequest, Path]:
    """A directory of `<unit>.o` files for each request, compiling in parallel what the cache lacks."""
    identities = {cc: _identity(cc) for cc in {r.cc for r in requests}}
    sources = {sdist: c_sources(sdist) for sdist in {r.sdist for r in requests}}
    root = cache_root() / "objects"
    root.mkdir(parents=True, exist_ok=True)
    where: dict[BuildRequest, Path] = {}
    pending: dict[BuildRequest, Path] = {}
    tasks: list[tuple[list[str], Path]] = []
    for req in requests:
        text = "\0".join(
            (identities[req.cc], req.sdist.sha256, *req.sdist.defines, *req.flags, *req.sdist.units)
        )
        final = root / f"{req.sdist.name}-{req.cc}-{hashlib.sha256(text.encode()).hexdigest()[:16]}"
        where[req] = final
        if (final / ".complete").is_file():
            continue
        scratch = Path(tempfile.mkdtemp(prefix=final.name + ".", dir=root))
        pending[req] = scratch
        for unit in req.sdist.units:
            obj = scratch / (Path(unit).stem + ".o")
            tasks.append(
                ([req.cc, "-c", *req.flags, *req.sdist.defines, "-o", str(obj), unit], sources[req.sdist])
            )
    # The largest units first, so that the tail of the queue is short.
    tasks.sort(key=lambda task: -(task[1] / task[0][-1]).stat().st_size)

    def one(task: tuple[list[str], Path]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(task[0], cwd=task[1], capture_output=True, text=True)

    with ThreadPoolExecutor(jobs()) as pool:
        failed = [p for p in pool.map(one, tasks) if p.returncode != 0]
    assert not failed, "\n".join(f"{' '.join(p.args)}:\n{p.stderr}" for p in failed)
    for req, scratch in pending.items():
        (scratch / ".complete").write_text("")
        try:
            scratch.replace(where[req])
        except OSError:  # another session finished the same build first
            shutil.rmtree(scratch, ignore_errors=True)
    return where
