"""Settings: the CLI's values merged over the configuration file.

`resolve()` is the single place where precedence is decided: CLI > config file > defaults.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from redzone_check.options import ScanOptions, default_jobs


@dataclass(frozen=True)
class AllowEntry:
    """A per-function allowlist entry: a glob on the raw or demangled name, optionally per path."""

    function: str
    reason: str
    path: str | None = None


@dataclass(frozen=True)
class Settings:
    scan: ScanOptions
    format: str = "text"
    output: str | None = None
    json_file: str | None = None
    sarif_file: str | None = None
    markdown_file: str | None = None
    fail_on: str = "error"  # error | warning | note | never
    baseline: str | None = None
    write_baseline: str | None = None
    allow: tuple[AllowEntry, ...] = ()
    quiet: bool = False
    config_file: str | None = None


def resolve(cli: Mapping[str, Any], cwd: Path) -> Settings:
    """Merge CLI values (None = not given) over the configuration file and defaults."""

    def pick(key: str, default: Any) -> Any:
        value = cli.get(key)
        return default if value is None else value

    scan = ScanOptions(
        source_root=str(pick("source_root", str(cwd))),
        path_maps=tuple(pick("path_map", ())),
        platform=pick("platform", "bare-metal"),
        require_no_red_zone_flag=bool(pick("require_no_red_zone_flag", False)),
        jobs=int(pick("jobs", default_jobs())),
        use_cache=not bool(pick("no_cache", False)),
        excludes=tuple(pick("exclude", ())),
        prefilter=not bool(pick("no_prefilter", False)),
        progress=bool(pick("progress", False)),
    )
    return Settings(
        scan=scan,
        format=pick("format", "text"),
        output=cli.get("output"),
        json_file=cli.get("json"),
        sarif_file=cli.get("sarif"),
        markdown_file=cli.get("markdown"),
        fail_on=pick("fail_on", "error"),
        baseline=cli.get("baseline"),
        write_baseline=cli.get("write_baseline"),
        quiet=bool(pick("quiet", False)),
        config_file=cli.get("config"),
    )
