"""Retries with backoff for GitHub's rate limits and 5xx answers; a read-only token is not retried."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from github.GithubException import GithubException, RateLimitExceededException

T = TypeVar("T")
Sleep = Callable[[float], None]

MAX_DELAY = 60.0


class ReviewUnavailable(Exception):
    """The token may not read or write the pull request (a fork's read-only token, missing permissions)."""


def _is_rate_limit(exc: GithubException) -> bool:
    if isinstance(exc, RateLimitExceededException) or exc.status == 429:
        return True
    headers = exc.headers or {}
    return exc.status == 403 and (headers.get("x-ratelimit-remaining") == "0" or "retry-after" in headers)


def _delay(exc: GithubException, attempt: int, now: float) -> float:
    headers = exc.headers or {}
    if "retry-after" in headers and headers["retry-after"].isdigit():
        return min(float(headers["retry-after"]), MAX_DELAY)
    reset = headers.get("x-ratelimit-reset", "")
    if headers.get("x-ratelimit-remaining") == "0" and reset.isdigit():
        return min(max(float(reset) - now, 1.0), MAX_DELAY)
    return min(2.0**attempt, MAX_DELAY)


def with_retries(call: Callable[[], T], sleep: Sleep = time.sleep, attempts: int = 5) -> T:
    """Run one GitHub call. PaginatedLists are lazy, so `call` must materialise what it fetches."""
    for attempt in range(attempts):
        try:
            return call()
        except GithubException as exc:
            retriable = _is_rate_limit(exc) or exc.status >= 500
            if retriable and attempt + 1 < attempts:
                sleep(_delay(exc, attempt, time.time()))
                continue
            if exc.status in (403, 404) and not retriable:
                raise ReviewUnavailable(f"GitHub answered {exc.status}: {_message(exc)}") from exc
            raise
    raise AssertionError("unreachable")


def _message(exc: GithubException) -> str:
    data = exc.data
    if isinstance(data, dict) and isinstance(data.get("message"), str):
        return str(data["message"])
    return str(data)[:200]
