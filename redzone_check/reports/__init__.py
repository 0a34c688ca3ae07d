"""Output formats: a name -> reporter registry. Reporters only read a ScanResult."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

from redzone_check.model import ScanResult


@dataclass(frozen=True)
class ReportContext:
    version: str
    color: bool = False
    max_bytes: int | None = None  # for size-limited sinks such as GitHub job summaries


Reporter = Callable[[ScanResult, ReportContext], str]

# Each module exposes `render(result, ctx) -> str`; imported lazily to keep start-up fast.
FORMATS: dict[str, str] = {
    "text": "redzone_check.reports.text",
    "json": "redzone_check.reports.json_report",
    "sarif": "redzone_check.reports.sarif",
    "github": "redzone_check.reports.github",
    "markdown": "redzone_check.reports.markdown",
}


def reporter(name: str) -> Reporter:
    module = importlib.import_module(FORMATS[name])
    render: Reporter = module.render
    return render
