"""Which findings belong to a pull request, and where each comment goes. Pure: no network.

A finding belongs when its source line, its object or archive, its build-file line or an OCaml line
that reaches it is selected by the filter mode. Its main comment sits on the source line when GitHub
accepts a comment there (a line in a hunk), else on the file (`subject_type: file`), else in the review body.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from redzone_check.model import LEVEL_RANK, Finding

from .github_comments import build_body, finding_body
from .github_diff import PullDiff, repo_path

MAX_COMMENTS = 30


@dataclass(frozen=True)
class Comment:
    key: tuple[str, str]  # (fingerprint, role), as in the hidden marker
    path: str
    line: int | None  # None: a file-level comment
    body: str


@dataclass(frozen=True)
class Plan:
    comments: tuple[Comment, ...]
    body: tuple[Finding, ...]  # belong to the PR but have no commentable place
    overflow: tuple[Finding, ...]  # over the comment limit: listed in the review body instead
    belonging: int


def _anchors(finding: Finding, workspace: str) -> list[tuple[str, str | None, int | None]]:
    """(role, repository path, line) of every place a comment about the finding may go."""
    anchors: list[tuple[str, str | None, int | None]] = []
    if finding.source:
        anchors.append(("source", repo_path(finding.source.file, workspace), finding.source.line))
    anchors.append(("object", repo_path(finding.path, workspace), None))
    if finding.build_location:
        where = finding.build_location
        anchors.append(("build", repo_path(where.file, workspace), where.line))
    for reach in finding.reached_from:
        path = repo_path(reach.file, workspace)
        anchors.append((f"reach:{path}", path, reach.line))
    return anchors


def belongs(finding: Finding, diff: PullDiff, mode: str, workspace: str) -> bool:
    if mode == "nofilter":
        return True
    for role, path, line in _anchors(finding, workspace):
        if role == "object" and diff.changed(path):
            return True
        if role != "object" and diff.selects(path, line, mode):
            return True
    return False


def _comments_for(finding: Finding, diff: PullDiff, workspace: str) -> tuple[Comment | None, list[Comment]]:
    """The main comment (None: review body) and the extra ones on build-file and OCaml lines."""
    fp = finding.fingerprint
    main: Comment | None = None
    extra: list[Comment] = []
    for role, path, line in _anchors(finding, workspace):
        if path is None:
            continue
        if role == "source" and diff.commentable(path, line):
            main = Comment((fp, "source"), path, line, finding_body(finding, "source"))
        elif role in ("source", "object") and main is None and diff.changed(path):
            main = Comment((fp, role), path, None, finding_body(finding, role))
        elif role == "build" and diff.commentable(path, line):
            extra.append(Comment((fp, "build"), path, line, build_body(finding)))
        elif role.startswith("reach:") and diff.commentable(path, line):
            extra.append(Comment((fp, role), path, line, finding_body(finding, role)))
    return main, extra


def plan_review(
    findings: Iterable[Finding],
    diff: PullDiff,
    mode: str,
    workspace: str,
    done: Sequence[tuple[str, str]] = (),
    limit: int = MAX_COMMENTS,
) -> Plan:
    """`done` holds the (fingerprint, role) keys already posted, which are never posted again."""
    seen = set(done)
    comments: list[Comment] = []
    body: list[Finding] = []
    overflow: list[Finding] = []
    belonging = 0
    ordered = sorted(findings, key=lambda f: (-LEVEL_RANK[f.level], f.path, f.section_offset))
    for finding in ordered:
        if finding.suppressed is not None or not belongs(finding, diff, mode, workspace):
            continue
        belonging += 1
        main, extra = _comments_for(finding, diff, workspace)
        new = [c for c in ([main] if main else []) + extra if c.key not in seen]
        if main is None and (finding.fingerprint, "body") not in seen:
            body.append(finding)
            seen.add((finding.fingerprint, "body"))
        if not new:
            continue
        if len(comments) + len(new) > limit:
            if (finding.fingerprint, "body") not in seen:
                overflow.append(finding)
                seen.add((finding.fingerprint, "body"))
            continue
        comments.extend(new)
        seen.update(c.key for c in new)
    return Plan(tuple(comments), tuple(body), tuple(overflow), belonging)
