"""`redzone-check [options] PATH...`: wires the engine, the policy and the reporters."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from redzone_check import __version__
from redzone_check.errors import FatalError
from redzone_check.options import PLATFORMS

FORMATS = ("text", "json", "sarif", "github", "markdown")


def _path_map(value: str) -> tuple[str, str]:
    old, sep, new = value.partition("=")
    if not sep or not old:
        raise argparse.ArgumentTypeError(f"expected OLD=NEW, got {value!r}")
    return old, new


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="redzone-check",
        description="Find x86-64 code that uses the System V red zone in objects, archives and binaries.",
    )
    p.add_argument("paths", nargs="*", metavar="PATH", help="objects, archives, binaries or directories")
    out = p.add_argument_group("output")
    out.add_argument("--format", choices=FORMATS, help="what goes to stdout (default: text)")
    out.add_argument("--output", metavar="FILE", help="write the --format output to FILE instead of stdout")
    out.add_argument("--json", metavar="FILE", help="also write the JSON report to FILE")
    out.add_argument("--sarif", metavar="FILE", help="also write SARIF 2.1.0 to FILE")
    out.add_argument("--markdown", metavar="FILE", help="also write the Markdown summary to FILE")
    out.add_argument("-q", "--quiet", action="store_true", default=None, help="no progress, no summary line")
    paths = p.add_argument_group("paths")
    paths.add_argument("--source-root", metavar="DIR", help="report paths relative to DIR (default: cwd)")
    paths.add_argument(
        "--path-map",
        metavar="OLD=NEW",
        action="append",
        type=_path_map,
        help="rewrite build paths (repeatable)",
    )
    paths.add_argument("--exclude", metavar="GLOB", action="append", help="skip binaries matching GLOB")
    policy = p.add_argument_group("policy")
    policy.add_argument(
        "--platform", choices=sorted(PLATFORMS), help="where the code runs (default: bare-metal)"
    )
    policy.add_argument("--fail-on", choices=("error", "warning", "note", "never"), help="default: error")
    policy.add_argument(
        "--require-no-red-zone-flag",
        action="store_true",
        default=None,
        help="RZ003: warn about compile units built without -mno-red-zone",
    )
    policy.add_argument("--config", metavar="FILE", help="configuration file (default: search upward)")
    policy.add_argument("--baseline", metavar="FILE", help="suppress the findings recorded in FILE")
    policy.add_argument("--write-baseline", metavar="FILE", help="record the current findings in FILE")
    run = p.add_argument_group("performance")
    run.add_argument("-j", "--jobs", type=int, metavar="N", help="parallel workers (default: usable cores)")
    run.add_argument("--no-cache", action="store_true", default=None, help="do not use the result cache")
    run.add_argument("--no-prefilter", action="store_true", default=None, help=argparse.SUPPRESS)
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return _run(args, parser)
    except FatalError as exc:
        print(f"redzone-check: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


_GC_THRESHOLD = 100_000


def _tune_collector() -> None:
    # A scan makes millions of short-lived tuples and no cycles worth reclaiming early; at the
    # default thresholds the collector keeps walking the long-lived decode caches, a fifth of
    # the run. What the imports made is frozen out of its reach (once: main() may be called
    # again in one process, by tests); workers inherit all this by fork.
    if gc.get_threshold()[0] < _GC_THRESHOLD:
        gc.freeze()
        gc.set_threshold(_GC_THRESHOLD, 50, 100)


def _run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from redzone_check import config
    from redzone_check import suppress as suppress_
    from redzone_check.reports import ReportContext, reporter
    from redzone_check.scan import scan

    if not args.paths:
        parser.error("no PATH given")
    if os.environ.get("REDZONE_CHECK_NO_CACHE") == "1":
        args.no_cache = True
    settings = config.resolve(vars(args), Path.cwd())
    _tune_collector()
    # The progress line is for people watching a terminal, never for logs or pipes.
    options = dataclasses.replace(settings.scan, progress=sys.stderr.isatty() and not settings.quiet)
    result = scan(args.paths, options)
    result = suppress_.apply(result, settings)
    for problem in result.errors:
        where = f"{problem.path}({problem.member})" if problem.member else problem.path
        print(f"redzone-check: error: {_clean(where)}: {_clean(problem.message)}", file=sys.stderr)

    ctx = ReportContext(__version__)
    summary_file = os.environ.get("GITHUB_STEP_SUMMARY")
    if settings.format == "markdown":
        # The job summary: GitHub caps it at 1 MiB.
        ctx = ReportContext(__version__, max_bytes=1_000_000)
    text = reporter(settings.format)(result, ctx)
    if settings.format == "text" and settings.quiet:
        text = "".join(
            line for line in text.splitlines(keepends=True) if not line.startswith("redzone-check: ")
        )
    if settings.output:
        _write(settings.output, text)
    elif settings.format == "markdown" and summary_file:
        _append(summary_file, text)
    elif text:
        _print(text)
    for fmt, target in (
        ("json", settings.json_file),
        ("sarif", settings.sarif_file),
        ("markdown", settings.markdown_file),
    ):
        if target:
            _write(target, reporter(fmt)(result, ctx))
    if summary_file and settings.format == "github":
        _append(summary_file, reporter("markdown")(result, ReportContext(__version__, max_bytes=1_000_000)))
    if settings.write_baseline:
        suppress_.write_baseline(settings.write_baseline, result)
    status = suppress_.exit_status(result, settings.fail_on)
    if status == 0 and result.summary.not_analysable and settings.fail_on != "never":
        # LTO objects carry no machine code: a run that could not look must not pass as clean.
        status = 1
    return status


def _print(text: str) -> None:
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader has gone (`redzone-check lib.a | head`). The other reports are still written
        # and the status still counts; stdout now points at /dev/null, so that no later flush
        # of it fails again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def _write(path: str, text: str) -> None:
    try:
        Path(path).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise FatalError(f"cannot write {path}: {exc.strerror}") from exc


def _append(path: str, text: str) -> None:
    try:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(text)
    except OSError as exc:
        raise FatalError(f"cannot write {path}: {exc.strerror}") from exc


def _clean(text: str) -> str:
    from redzone_check.reports.escape import printable

    return printable(text)


def run() -> NoReturn:
    """The console script: `main`, then leave without tearing the interpreter down."""
    exit_now(main())


def exit_now(status: int) -> NoReturn:
    # Tearing the interpreter down frees the decode caches one object at a time, about a tenth
    # of a scan of libc.a. By now every report is written and closed and the workers are
    # joined, so only Python's own stream buffers need flushing.
    for stream in (sys.stdout, sys.stderr):
        # The reader of a pipe may have gone, or the stream been closed: nothing left to say.
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(status)


if __name__ == "__main__":
    run()
