"""A one-line progress bar on stderr for long scans.

It appears only after `delay` seconds, so a pre-commit run on one object prints nothing, and it
redraws at most ten times a second. The caller decides whether it is wanted at all (a terminal,
not --quiet); the line is erased when the scan ends, so reports that follow start clean.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

WIDTH = 28


class Progress:
    def __init__(
        self,
        enabled: bool,
        stream: TextIO | None = None,
        delay: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.enabled = enabled
        self.stream = stream if stream is not None else sys.stderr
        self.delay = delay
        self.clock = clock
        self.started = clock()
        self._drawn_at: float | None = None
        self._shown = False

    def update(self, done: int, total: int, objects: int) -> None:
        """`done` of `total` bytes of objects scanned, `objects` of them finished."""
        if not self.enabled:
            return
        now = self.clock()
        if now - self.started < self.delay:
            return
        if self._drawn_at is not None and now - self._drawn_at < 0.1 and done < total:
            return
        self._drawn_at = now
        self.stream.write("\r" + render(done, total, objects, now - self.started) + "\x1b[K")
        self.stream.flush()
        self._shown = True

    def close(self) -> None:
        if self._shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self._shown = False


def render(done: int, total: int, objects: int, elapsed: float) -> str:
    fraction = min(1.0, done / total) if total > 0 else 0.0
    filled = int(fraction * WIDTH)
    bar = "#" * filled + "-" * (WIDTH - filled)
    return (
        f"redzone-check [{bar}] {fraction * 100:3.0f}%  {objects} objects, "
        f"{done / 1e6:.1f}/{total / 1e6:.1f} MB, {elapsed:.0f}s"
    )
