"""Post one review on a pull request with PyGithub (the client is a parameter, so tests inject one)."""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from github import Github

from redzone_check.model import Finding

from .github_comments import Marker, body_line, fixed_body, markers
from .github_diff import PullDiff
from .github_event import PullRef
from .github_retry import ReviewUnavailable, Sleep, with_retries
from .review_plan import MAX_COMMENTS, Plan, plan_review

MAX_BODY_LINES = 200  # GitHub rejects review bodies over 65536 characters


@dataclass(frozen=True)
class Outcome:
    inline: int  # new comments on lines
    file_level: int
    body: int  # findings listed in the review body
    fixed: int  # earlier comments updated to say fixed
    review_posted: bool
    belonging: int


def review_body(plan: Plan, total: int) -> str:
    lines = [f"### redzone-check: {plan.belonging} finding(s) in this pull request ({total} in the scan)", ""]
    if plan.comments:
        lines.append(f"{len(plan.comments)} new comment(s) on the offending lines and files.")
    listed = [*plan.body, *plan.overflow]
    if plan.body:
        lines += ["", "Not on a line or file of this diff:"]
        lines += [body_line(f) for f in plan.body[:MAX_BODY_LINES]]
    if plan.overflow:
        lines += ["", f"Over the limit of {MAX_COMMENTS} comments per review:"]
        lines += [body_line(f) for f in plan.overflow[: max(0, MAX_BODY_LINES - len(plan.body))]]
    if len(listed) > MAX_BODY_LINES:
        lines.append(f"- … and {len(listed) - MAX_BODY_LINES} more")
    lines += ["", "The job summary and the SARIF file list every finding."]
    return "\n".join(lines)


_BODY_MARKER_LINE = re.compile(r"^(- )(<!-- redzone-check:fingerprint=[0-9a-f]+ role=body) -->(.*)$", re.M)


def mark_fixed_in_body(body: str, gone: set[str]) -> str:
    def fix(match: re.Match[str]) -> str:
        fp = markers(match.group(0))[0].fingerprint
        if fp not in gone:
            return match.group(0)
        return f"{match.group(1)}{match.group(2)} state=fixed --> **fixed:** ~~{match.group(3).strip()}~~"

    return _BODY_MARKER_LINE.sub(fix, body)


def post_review(
    gh: Github,
    pull: PullRef,
    findings: Sequence[Finding],
    mode: str,
    workspace: str,
    sleep: Sleep = time.sleep,
) -> Outcome:
    """Raises ReviewUnavailable on a read-only token; GithubException when retries are exhausted."""

    def call(fn: Any) -> Any:
        return with_retries(fn, sleep)

    repo = call(lambda: gh.get_repo(pull.repository))
    pr = call(lambda: repo.get_pull(pull.number))
    if pull.required_head and pr.head.sha != pull.required_head:
        raise ReviewUnavailable(
            f"pull request #{pull.number} has head {pr.head.sha}, not the commit the workflow run built "
            f"({pull.required_head}): the saved event is stale or forged"
        )
    files = call(lambda: [(f.filename, f.status, f.patch) for f in pr.get_files()])
    diff = PullDiff.from_files(files)
    old_comments = call(lambda: list(pr.get_review_comments()))
    old_reviews = call(lambda: [r for r in pr.get_reviews() if markers(r.body)])

    current = {f.fingerprint for f in findings if f.suppressed is None}
    done: list[tuple[str, str]] = []
    stale: list[tuple[Any, Marker]] = []
    for comment in old_comments:
        for marker in markers(comment.body):
            if marker.fingerprint not in current and not marker.fixed:
                stale.append((comment, marker))
            elif not marker.fixed:
                done.append(marker.key)
    for review in old_reviews:
        done += [m.key for m in markers(review.body) if not m.fixed]

    plan = plan_review(findings, diff, mode, workspace, done)
    head = pull.head_sha or pr.head.sha
    inline = [c for c in plan.comments if c.line is not None]
    file_level = [c for c in plan.comments if c.line is None]
    posted = bool(inline or plan.body or plan.overflow)
    if posted:
        commit = call(lambda: repo.get_commit(head))
        body = review_body(plan, len(current))
        comments = [{"path": c.path, "line": c.line, "side": "RIGHT", "body": c.body} for c in inline]
        call(lambda: pr.create_review(commit=commit, body=body, event="COMMENT", comments=comments))
    for c in file_level:
        call(lambda c=c: pr.create_review_comment(c.body, head, c.path, subject_type="file"))
    for comment, marker in stale:
        call(lambda comment=comment, marker=marker: comment.edit(fixed_body(marker, head)))
    gone = {m.fingerprint for r in old_reviews for m in markers(r.body) if m.fingerprint not in current}
    for review in old_reviews:
        new_body = mark_fixed_in_body(review.body, gone)
        if new_body != review.body:
            call(lambda review=review, new_body=new_body: review.edit(new_body))
    return Outcome(
        len(inline), len(file_level), len(plan.body) + len(plan.overflow), len(stale), posted, plan.belonging
    )
