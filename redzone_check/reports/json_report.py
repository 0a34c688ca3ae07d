"""`--format json`: the stable, schema-validated document."""

from __future__ import annotations

import json

from redzone_check.model import ScanResult
from redzone_check.reports import ReportContext


def render(result: ScanResult, ctx: ReportContext) -> str:
    return json.dumps(result.to_json(ctx.version), indent=2, ensure_ascii=False) + "\n"
