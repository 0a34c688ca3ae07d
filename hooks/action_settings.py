"""The Action's settings, read from the environment that action.yml's `env:` block sets.

Composite actions get no INPUT_* variables, so action.yml passes every input as REDZONE_*.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from redzone_check.errors import FatalError
from redzone_check.options import PLATFORMS

from .github_diff import FILTER_MODES

FAIL_ON = ("error", "warning", "note", "never")


def _bool(name: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("true", "yes", "1", "on"):
        return True
    if lowered in ("false", "no", "0", "off", ""):
        return False
    raise FatalError(f"input {name} must be true or false, not {value!r}")


def _choice(name: str, value: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise FatalError(f"input {name} must be one of {', '.join(choices)}, not {value!r}")
    return value


@dataclass(frozen=True)
class ActionSettings:
    workspace: str
    paths: tuple[str, ...]
    token: str = field(repr=False)
    filter_mode: str = "added"
    fail_on: str = "error"
    review: bool = True
    sarif_file: str = "redzone-check.sarif"
    config: str | None = None
    platform: str | None = None
    allow_empty: bool = False
    pull_request_event: str | None = None  # under workflow_run: the event file the untrusted run saved
    event_name: str = ""
    event_path: str | None = None
    repository: str | None = None
    api_url: str = "https://api.github.com"
    output_file: str | None = None
    summary_file: str | None = None
    temp_dir: str = "/tmp"

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ActionSettings:
        def get(name: str, default: str = "") -> str:
            return env.get(name, default).strip()

        workspace = get("GITHUB_WORKSPACE") or os.getcwd()
        platform = get("REDZONE_PLATFORM") or None
        if platform is not None:
            _choice("platform", platform, tuple(PLATFORMS))
        sarif = get("REDZONE_SARIF_FILE") or "redzone-check.sarif"
        return cls(
            workspace=workspace,
            paths=tuple(shlex.split(env.get("REDZONE_PATHS", ""))),
            token=env.get("REDZONE_GITHUB_TOKEN", ""),
            filter_mode=_choice("filter-mode", get("REDZONE_FILTER_MODE") or "added", FILTER_MODES),
            fail_on=_choice("fail-on", get("REDZONE_FAIL_ON") or "error", FAIL_ON),
            review=_bool("review", get("REDZONE_REVIEW", "true")),
            sarif_file=str(Path(workspace, sarif)),
            config=get("REDZONE_CONFIG") or None,
            platform=platform,
            allow_empty=_bool("allow-empty", get("REDZONE_ALLOW_EMPTY", "false")),
            pull_request_event=get("REDZONE_PULL_REQUEST_EVENT") or None,
            event_name=get("GITHUB_EVENT_NAME"),
            event_path=get("GITHUB_EVENT_PATH") or None,
            repository=get("GITHUB_REPOSITORY") or None,
            api_url=(get("GITHUB_API_URL") or "https://api.github.com").rstrip("/"),
            output_file=get("GITHUB_OUTPUT") or None,
            summary_file=get("GITHUB_STEP_SUMMARY") or None,
            temp_dir=get("RUNNER_TEMP") or "/tmp",
        )
