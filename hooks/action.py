"""The GitHub Action: event -> scan (the CLI) -> review, or annotations + job summary + SARIF.

`python -m redzone_check.hooks.action`, with settings in the environment (see action.yml).
"""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from github import Auth, Github
from github.GithubException import GithubException
from requests import RequestException

from redzone_check import __version__
from redzone_check.errors import FatalError
from redzone_check.model import ScanResult
from redzone_check.reports import ReportContext, reporter

from .action_settings import ActionSettings
from .github_event import read_event
from .github_retry import ReviewUnavailable, Sleep
from .github_review import post_review
from .result_json import load_result

Scanner = Callable[[Sequence[str], str], int]
ClientFactory = Callable[[ActionSettings], Github]
SUMMARY_LIMIT = 1024 * 1024 - 4096  # GitHub rejects step summaries over 1 MiB
_GLOB = frozenset("*?[")


def cli_scanner(argv: Sequence[str], cwd: str) -> int:
    """The CLI in a child process, so that the token and the summary file never reach the engine."""
    env = {k: v for k, v in os.environ.items() if k not in ("REDZONE_GITHUB_TOKEN", "GITHUB_STEP_SUMMARY")}
    code = "from redzone_check.cli import run; run()"
    return subprocess.run([sys.executable, "-c", code, *argv], cwd=cwd, env=env, check=False).returncode


def github_client(settings: ActionSettings) -> Github:
    # Retries are ours (github_retry), so that backoff is explicit and testable.
    return Github(auth=Auth.Token(settings.token), base_url=settings.api_url, retry=None, per_page=100)


def expand_paths(patterns: Sequence[str], workspace: str) -> list[str]:
    if not patterns:
        return [workspace]
    paths: list[str] = []
    for pattern in patterns:
        if _GLOB & set(pattern):
            matches = sorted(glob.glob(pattern, root_dir=workspace, recursive=True))
            if not matches:
                print(f"::warning::redzone-check: no file matches {pattern}")
            paths += matches
        else:
            paths.append(pattern)
    return paths


def scan_argv(settings: ActionSettings, paths: Sequence[str], work: Path) -> list[str]:
    argv = ["--format", "text", "--json", str(work / "result.json"), "--sarif", settings.sarif_file]
    argv += ["--markdown", str(work / "summary.md"), "--source-root", settings.workspace]
    argv += ["--fail-on", settings.fail_on]
    if settings.platform:
        argv += ["--platform", settings.platform]
    if settings.config:
        argv += ["--config", settings.config]
    return [*argv, "--", *paths]


def set_outputs(path: str | None, outputs: Mapping[str, str]) -> None:
    if not path:
        return
    with open(path, "a", encoding="utf-8") as out:
        for name, value in outputs.items():
            delimiter = f"redzone_{uuid.uuid4().hex}"
            out.write(f"{name}<<{delimiter}\n{value}\n{delimiter}\n")


def append_summary(path: str | None, text: str) -> None:
    if path and text:
        with open(path, "a", encoding="utf-8") as out:
            out.write(text[:SUMMARY_LIMIT] + ("\n" if not text.endswith("\n") else ""))


def annotate(result: ScanResult) -> None:
    sys.stdout.write(reporter("github")(result, ReportContext(version=__version__)))
    sys.stdout.flush()


def review(settings: ActionSettings, result: ScanResult, client: ClientFactory, sleep: Sleep) -> str | None:
    """Post the review; returns why it was not posted (the findings then go to annotations)."""
    pull = read_event(
        settings.event_name, settings.event_path, settings.repository, settings.pull_request_event
    )
    if pull is None:
        return f"no review for a {settings.event_name or 'unknown'} event"
    if not settings.review:
        return "review: false"
    if not settings.token:
        return "no github-token"
    try:
        outcome = post_review(
            client(settings), pull, result.findings, settings.filter_mode, settings.workspace, sleep
        )
    except ReviewUnavailable as exc:
        fork = " (a pull request from a fork gets a read-only token)" if pull.from_fork else ""
        return f"the token cannot write to the pull request{fork}: {exc}"
    except (GithubException, RequestException) as exc:
        return f"GitHub failed after retries: {type(exc).__name__} {getattr(exc, 'status', '')}".rstrip()
    print(
        f"redzone-check: review on #{pull.number}: {outcome.inline} inline and {outcome.file_level} "
        f"file-level comment(s), {outcome.body} in the review body, {outcome.fixed} marked fixed "
        f"({outcome.belonging} finding(s) belong to the pull request, filter-mode {settings.filter_mode})"
    )
    return None


def run(settings: ActionSettings, scanner: Scanner, client: ClientFactory, sleep: Sleep) -> int:
    paths = expand_paths(settings.paths, settings.workspace)
    if not paths:
        if settings.allow_empty:
            set_outputs(settings.output_file, {"findings": "0", "sarif-file": ""})
            return 0
        raise FatalError("no file matches the paths input: is the build step missing?")
    with tempfile.TemporaryDirectory(prefix="redzone-", dir=settings.temp_dir) as tmp:
        work = Path(tmp)
        status = scanner(scan_argv(settings, paths, work), settings.workspace)
        result_file = work / "result.json"
        if not result_file.exists():
            raise FatalError(f"the scan wrote no result (exit status {status}); see the log above")
        result = load_result(json.loads(result_file.read_text(encoding="utf-8")), settings.workspace)
        summary = work / "summary.md"
        append_summary(settings.summary_file, summary.read_text(encoding="utf-8") if summary.exists() else "")
    set_outputs(
        settings.output_file, {"findings": str(len(result.active)), "sarif-file": settings.sarif_file}
    )
    if result.summary.objects == 0 and not settings.allow_empty:
        print(
            f"::error::redzone-check scanned no object in {' '.join(paths)}: is the build step missing? "
            "Set allow-empty: true if that is expected."
        )
        return 2
    why_not = review(settings, result, client, sleep)
    if why_not is not None:
        print(f"redzone-check: {why_not}; findings go to annotations, the job summary and SARIF")
        annotate(result)
        if result.active:
            append_summary(settings.summary_file, f"\n> The review was not posted: {why_not}.\n")
    return status


def main(
    argv: Sequence[str] | None = None,
    env: Mapping[str, str] | None = None,
    scanner: Scanner = cli_scanner,
    client: ClientFactory = github_client,
    sleep: Sleep = time.sleep,
) -> int:
    del argv  # every setting comes from the environment, as action.yml passes it
    try:
        return run(ActionSettings.from_env(os.environ if env is None else env), scanner, client, sleep)
    except FatalError as exc:
        print(f"::error::redzone-check: {exc}")
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
