"""Time `redzone-check --no-cache` against `objdump -d` on the same files, in the same run.

    python benchmarks/run.py [--runs N] [--quick] [--json FILE]

Each row is the best of N runs (the machine may be shared), with the ratio to objdump, throughput in
MB of machine code per second (the sum of the executable sections) and the peak RSS of the largest
process. Rows: Debian's libc.a, libgcc.a, libcrypto.a, libsqlite3.a, libz.a, OCaml's libasmrun.a
and stdlib.a, an archive built here with -g from real C code (lz4 and pycryptodome sources from PyPI,
because Debian's archives carry no DWARF), all of them in one run, a one-object pre-commit run (also
with cold imports: no bytecode cache), every static archive under /usr/lib, and a cached re-run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MULTIARCH = Path("/usr/lib/x86_64-linux-gnu")
BENCH_CACHE = Path.home() / ".cache" / "redzone-check-bench"


@dataclass
class Row:
    name: str
    files: int
    code_mb: float
    rc_seconds: float
    objdump_seconds: float | None
    rc_rss_mb: float
    objdump_rss_mb: float | None

    @property
    def ratio(self) -> float | None:
        return self.rc_seconds / self.objdump_seconds if self.objdump_seconds else None


def timed(
    cmd: Sequence[str], env: dict[str, str] | None = None, cwd: Path | None = None
) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of the largest process of one run; output is discarded."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=cwd)
    _pid, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    if code not in (0, 1):  # 1: findings (redzone-check) or an unrecognised file (objdump)
        print(f"  note: {Path(cmd[0]).name} exited {code} (input problems reported)", file=sys.stderr)
    # Linux folds the peak of reaped children (the workers) into the child's ru_maxrss.
    return elapsed, usage.ru_maxrss / 1024


def best(cmd: Sequence[str], runs: int, **kw: object) -> tuple[float, float]:
    results = [timed(cmd, **kw) for _ in range(runs)]  # type: ignore[arg-type]
    return min(r[0] for r in results), max(r[1] for r in results)


def code_bytes(paths: Sequence[str]) -> int:
    from redzone_check.elf import ElfFile, NotApplicable
    from redzone_check.errors import InputError
    from redzone_check.inputs import iter_blobs

    class Quiet:
        def skip(self, *args: object) -> None:
            pass

        def error(self, *args: object) -> None:
            pass

    total = 0
    for blob in iter_blobs(paths, Quiet()):
        with contextlib.suppress(InputError, NotApplicable):
            total += sum(s.size for s in ElfFile(blob.data).sections if s.executable)
    return total


def rc_command(paths: Sequence[str], *extra: str) -> list[str]:
    exe = shutil.which("redzone-check") or sys.exit("redzone-check is not installed (pip install .)")
    return [exe, "--quiet", "--format", "json", *extra, *paths]


def engine_build() -> str:
    """Whether the installed engine is the compiled wheel or the Python sources."""
    script = Path(rc_command([])[0])
    python = script.read_text(errors="replace").splitlines()[0].removeprefix("#!").strip()
    probe = (
        "import redzone_check.stack as s; from redzone_check.native import native_function;"
        " print(s.__file__, native_function() is not None)"
    )
    if not Path(python).is_file():
        return "unknown"
    # Not from the checkout: `python -c` puts the working directory first on sys.path.
    out = subprocess.run([python, "-c", probe], capture_output=True, text=True, cwd="/").stdout.split()
    if len(out) != 2:
        return "unknown"
    where, native = out
    if not where.endswith(".so"):
        return "Python sources (pip install -e .)"
    found = " and the C module (decoding and analysis)" if native == "True" else ", without the C module"
    return "compiled with mypyc" + found


def measure(name: str, paths: Sequence[str], runs: int, objdump: bool = True) -> Row:
    rc_s, rc_rss = best(rc_command(paths, "--no-cache"), runs)
    od_s = od_rss = None
    if objdump:
        od_s, od_rss = best(["objdump", "-d", *paths], runs)
    row = Row(name, len(paths), code_bytes(paths) / 1e6, rc_s, od_s, rc_rss, od_rss)
    print(format_row(row), flush=True)
    return row


def debug_archive() -> Path:
    """lz4 and pycryptodome C sources (the pinned sdists the tests use) built with -g -O2."""
    sys.path.insert(0, str(ROOT / "tests"))
    from sources import LZ4, PYCRYPTODOME, c_sources  # type: ignore[import-not-found]

    out = BENCH_CACHE / "libreal-g.a"
    if out.is_file():
        return out
    build = BENCH_CACHE / "build"
    build.mkdir(parents=True, exist_ok=True)
    objects = []
    for sdist, units in (
        (LZ4, ("lz4.c", "lz4hc.c", "lz4frame.c", "xxhash.c")),
        (PYCRYPTODOME, PYCRYPTODOME.units),
    ):
        directory = c_sources(sdist)
        for unit in units:
            obj = build / f"{sdist.name}-{Path(unit).stem}.o"
            cmd = ["gcc", "-c", "-g", "-O2", *sdist.defines, f"-I{directory}", "-o", str(obj), unit]
            subprocess.run(cmd, cwd=directory, check=True)
            objects.append(str(obj))
    subprocess.run(["ar", "rcs", str(out), *objects], check=True)
    return out


def one_object(archive: Path) -> Path:
    target = BENCH_CACHE / "one" / "lz4frame.o"
    target.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["ar", "x", str(archive), "lz4-lz4frame.o"], cwd=target.parent, check=True)
    (target.parent / "lz4-lz4frame.o").replace(target)
    return target


def _output(cmd: Sequence[str]) -> str:
    return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip()


def format_row(row: Row) -> str:
    ratio = f"{row.ratio:.2f}x" if row.ratio is not None else "-"
    od = f"{row.objdump_seconds:.2f}" if row.objdump_seconds is not None else "-"
    mbps = row.code_mb / row.rc_seconds if row.rc_seconds else 0.0
    return (
        f"| {row.name} | {row.files} | {row.code_mb:.2f} | {row.rc_seconds:.2f} | {od} | {ratio} "
        f"| {mbps:.2f} | {row.rc_rss_mb:.0f} |"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="best of N runs (default 3)")
    parser.add_argument("--quick", action="store_true", help="skip the scan of every archive on the machine")
    parser.add_argument("--json", metavar="FILE", help="also write the rows as JSON")
    args = parser.parse_args(argv)

    ocaml = Path(_output(["ocamlopt", "-where"]))
    gcc_lib = Path(_output(["gcc", "-print-libgcc-file-name"]))
    debug = debug_archive()
    files = {
        "libc.a": MULTIARCH / "libc.a",
        "libgcc.a": gcc_lib,
        "libcrypto.a": MULTIARCH / "libcrypto.a",
        "libsqlite3.a": MULTIARCH / "libsqlite3.a",
        "libz.a": MULTIARCH / "libz.a",
        "libasmrun.a": ocaml / "libasmrun.a",
        "stdlib.a": ocaml / "stdlib.a",
        "lz4+pycryptodome -g": debug,
    }
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        sys.exit(
            f"missing: {', '.join(missing)} (apt-get install libssl-dev libsqlite3-dev zlib1g-dev ocaml-nox)"
        )
    print(
        f"redzone-check vs objdump -d, best of {args.runs}, {os.cpu_count()} CPUs, "
        f"load {os.getloadavg()[0]:.1f}, engine {engine_build()}\n"
    )
    print("| input | files | code MB | redzone-check s | objdump -d s | ratio | MB/s | peak RSS MB |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    rows: list[Row] = []
    # Run from an empty directory: the source root is the working directory.
    os.chdir(tempfile.mkdtemp(prefix="rzbench-"))
    for name, path in files.items():
        rows.append(measure(name, [str(path)], args.runs))
    every = [str(p) for p in files.values()]
    rows.append(measure("the set above, one run", every, args.runs))
    obj = one_object(debug)
    rows.append(measure("pre-commit: one -g object", [str(obj)], args.runs))
    cold = rc_command([str(obj)], "--no-cache")
    env = dict(os.environ, PYTHONPYCACHEPREFIX=tempfile.mkdtemp(prefix="rzpyc-"))
    cold_s = min(
        timed(cold, env=dict(env, PYTHONPYCACHEPREFIX=tempfile.mkdtemp(prefix="rzpyc-")))[0]
        for _ in range(args.runs)
    )
    cold_row = Row(
        "pre-commit, cold imports (no .pyc)", 1, rows[-1].code_mb, cold_s, None, rows[-1].rc_rss_mb, None
    )
    print(format_row(cold_row), flush=True)
    rows.append(cold_row)
    with tempfile.TemporaryDirectory(prefix="rzcache-") as cache_home:
        env = dict(os.environ, XDG_CACHE_HOME=cache_home)
        timed(rc_command(every), env=env)  # fills the cache
        warm = [timed(rc_command(every), env=env) for _ in range(args.runs)]
        cached = Row(
            "the set, cached re-run",
            len(every),
            rows[len(files)].code_mb,
            min(w[0] for w in warm),
            rows[len(files)].objdump_seconds,
            max(w[1] for w in warm),
            None,
        )
    print(format_row(cached), flush=True)
    rows.append(cached)
    if not args.quick:
        archives = sorted(str(p) for p in Path("/usr/lib").rglob("*.a") if p.is_file())
        rows.append(measure("every static archive under /usr/lib", archives, 1))
    peak_self = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\n(benchmark driver itself: {peak_self:.0f} MB)")
    same = prefilter_changes_nothing(files)
    verdict = "byte-identical JSON with and without it on every archive of the set"
    print(f"prefilter: {verdict if same else 'RESULTS DIFFER'}")
    if args.json:
        Path(args.json).write_text(
            json.dumps([asdict(r) | {"ratio": r.ratio} for r in rows], indent=2) + "\n"
        )
    return 0 if same else 1


def prefilter_changes_nothing(files: dict[str, Path]) -> bool:
    """Whether each archive of the set gives the same JSON with `--no-prefilter` (the issue's check
    that speed never changes a result; tests/test_speed_equivalence.py asserts it on three of them)."""
    same = True
    for name, path in files.items():
        found = [
            _scan_json(rc_command([str(path)], "--no-cache", *flags)) for flags in ((), ("--no-prefilter",))
        ]
        if found[0] != found[1]:
            print(f"prefilter: {name} gives different JSON without the prefilter", file=sys.stderr)
            same = False
    return same


def _scan_json(cmd: Sequence[str]) -> str:
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


if __name__ == "__main__":
    raise SystemExit(main())
