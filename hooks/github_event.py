"""The workflow event (`GITHUB_EVENT_PATH`) -> the pull request to review, if there is one."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from redzone_check.errors import FatalError

PULL_REQUEST_EVENTS = frozenset({"pull_request", "pull_request_target", "pull_request_review"})


@dataclass(frozen=True)
class PullRef:
    repository: str  # owner/name of the base repository, where the review goes
    number: int
    head_sha: str | None
    head_repository: str | None  # differs from `repository` for a fork
    # Under workflow_run the pull request comes from a file the untrusted run saved: the review is
    # posted only if the pull request's head is the commit that the trusted event says was built.
    required_head: str | None = None

    @property
    def from_fork(self) -> bool:
        return self.head_repository is not None and self.head_repository != self.repository


def read_event(
    event_name: str, event_path: str | None, repository: str | None, saved_event: str | None = None
) -> PullRef | None:
    """The pull request of a pull_request-like event, or of a workflow_run given the pull_request
    event its triggering run saved; None for push, merge_group, workflow_dispatch..."""
    if event_name == "workflow_run" and saved_event:
        trusted = _load(event_path, event_name)
        run = trusted.get("workflow_run")
        built = run.get("head_sha") if isinstance(run, dict) else None
        if not isinstance(built, str) or not repository:
            raise FatalError("the workflow_run event names no head_sha, or GITHUB_REPOSITORY is not set")
        pull = read_event("pull_request", saved_event, repository)
        assert pull is not None
        return PullRef(repository, pull.number, built, pull.head_repository, required_head=built)
    if event_name not in PULL_REQUEST_EVENTS:
        return None
    event = _load(event_path, event_name)
    pull = event.get("pull_request")
    if not isinstance(pull, dict) or not isinstance(pull.get("number"), int):
        raise FatalError(f"the {event_name} event in {event_path} has no pull_request.number")
    base_repo = _full_name(pull.get("base")) or _full_name(event) or repository
    if not base_repo:
        raise FatalError("cannot tell the repository: neither the event nor GITHUB_REPOSITORY names it")
    head: dict[str, Any] = pull["head"] if isinstance(pull.get("head"), dict) else {}
    sha = head.get("sha") if isinstance(head.get("sha"), str) else None
    return PullRef(base_repo, pull["number"], sha, _full_name(head))


def _full_name(holder: Any) -> str | None:
    if not isinstance(holder, dict):
        return None
    repo = holder.get("repo") if "repo" in holder else holder.get("repository")
    if isinstance(repo, dict) and isinstance(repo.get("full_name"), str):
        return str(repo["full_name"])
    return None


def _load(event_path: str | None, event_name: str) -> dict[str, Any]:
    if not event_path:
        raise FatalError(f"GITHUB_EVENT_PATH is not set for a {event_name} event")
    try:
        event = json.loads(Path(event_path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise FatalError(f"cannot read the event file {event_path}: {exc}") from exc
    if not isinstance(event, dict):
        raise FatalError(f"the event file {event_path} does not hold a JSON object")
    return event
