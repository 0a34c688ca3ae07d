"""Settings: the CLI's values merged over the configuration file.

The configuration is `[tool.redzone-check]` in pyproject.toml or the top level of `.redzone-check.toml`
(C and OCaml trees rarely have a pyproject.toml), found by searching upward from the working directory,
or named by `--config`. `resolve()` is the single place where precedence is decided: CLI > config file >
defaults. Paths in the file are relative to the file's directory.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from redzone_check.errors import FatalError
from redzone_check.options import PLATFORMS, ScanOptions, default_jobs

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

STANDALONE = ".redzone-check.toml"
PYPROJECT = "pyproject.toml"
FAIL_ON = ("error", "warning", "note", "never")
FORMATS = ("text", "json", "sarif", "github", "markdown")


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


def find_config(cwd: Path) -> Path | None:
    """The nearest `.redzone-check.toml`, or pyproject.toml with a [tool.redzone-check] table."""
    for directory in (cwd, *cwd.parents):
        standalone = directory / STANDALONE
        if standalone.is_file():
            return standalone
        pyproject = directory / PYPROJECT
        if pyproject.is_file() and "redzone-check" in _read_toml(pyproject).get("tool", {}):
            return pyproject
    return None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except OSError as exc:
        raise FatalError(f"cannot read configuration {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise FatalError(f"{path}: invalid TOML: {exc}") from exc


def load_config(path: Path) -> dict[str, Any]:
    """The redzone-check table of a configuration file, validated and normalised."""
    doc = _read_toml(path)
    if path.name == PYPROJECT:
        table = doc.get("tool", {}).get("redzone-check", {})
        if not isinstance(table, dict):
            raise FatalError(f"{path}: [tool.redzone-check] must be a table")
        doc = table
    return _validate(doc, path)


def _error(path: Path, key: str, expected: str, value: object) -> FatalError:
    return FatalError(f"{path}: {key}: expected {expected}, got {value!r}")


def _choice(choices: tuple[str, ...] | list[str]) -> Callable[[Path, str, object], object]:
    def check(path: Path, key: str, value: object) -> object:
        if value not in choices:
            raise _error(path, key, "one of " + ", ".join(choices), value)
        return value

    return check


def _boolean(path: Path, key: str, value: object) -> object:
    if not isinstance(value, bool):
        raise _error(path, key, "true or false", value)
    return value


def _positive(path: Path, key: str, value: object) -> object:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise _error(path, key, "a positive integer", value)
    return value


def _relative_path(path: Path, key: str, value: object) -> object:
    if not isinstance(value, str) or not value:
        raise _error(path, key, "a path", value)
    return str(path.parent / value)


def _globs(path: Path, key: str, value: object) -> object:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise _error(path, key, "a list of globs", value)
    return tuple(value)


def _path_maps(path: Path, key: str, value: object) -> object:
    pairs = list(value.items()) if isinstance(value, dict) else value
    if not isinstance(pairs, list):
        raise _error(path, key, 'a table {"OLD" = "NEW"} or a list of "OLD=NEW"', value)
    maps: list[tuple[str, str]] = []
    for item in pairs:
        pair = item.partition("=")[::2] if isinstance(item, str) and "=" in item else item
        if not (isinstance(pair, tuple | list) and len(pair) == 2 and all(isinstance(p, str) for p in pair)):
            raise _error(path, key, '"OLD=NEW"', item)
        if not pair[0]:
            raise _error(path, key, "a non-empty OLD", item)
        maps.append((pair[0], pair[1]))
    return tuple(maps)


def _allow(path: Path, key: str, value: object) -> object:
    if not isinstance(value, list):
        raise _error(path, key, "a list of {function, reason, path?} tables", value)
    entries: list[AllowEntry] = []
    for number, item in enumerate(value):
        where = f"{key}[{number}]"
        if not isinstance(item, dict):
            raise _error(path, where, "a table {function, reason, path?}", item)
        unknown = sorted(set(item) - {"function", "reason", "path"})
        if unknown:
            raise FatalError(f"{path}: unknown key {where}.{unknown[0]} (known: function, reason, path)")
        for required in ("function", "reason"):
            if not isinstance(item.get(required), str) or not item[required].strip():
                raise _error(path, f"{where}.{required}", "a non-empty string", item.get(required))
        if "path" in item and (not isinstance(item["path"], str) or not item["path"]):
            raise _error(path, f"{where}.path", "a glob", item["path"])
        entries.append(AllowEntry(item["function"], item["reason"].strip(), item.get("path")))
    return tuple(entries)


_KEYS: dict[str, Callable[[Path, str, object], object]] = {
    "platform": _choice(sorted(PLATFORMS)),
    "fail-on": _choice(FAIL_ON),
    "require-no-red-zone-flag": _boolean,
    "exclude": _globs,
    "path-map": _path_maps,
    "source-root": _relative_path,
    "baseline": _relative_path,
    "format": _choice(FORMATS),
    "jobs": _positive,
    "allow": _allow,
}


def _validate(doc: Mapping[str, Any], path: Path) -> dict[str, Any]:
    for key in doc:
        if key not in _KEYS:
            raise FatalError(f"{path}: unknown key {key!r} (known: {', '.join(_KEYS)})")
    return {key.replace("-", "_"): _KEYS[key](path, key, value) for key, value in doc.items()}


def _cli_path_maps(values: Sequence[str | tuple[str, str]] | None) -> tuple[tuple[str, str], ...]:
    maps: list[tuple[str, str]] = []
    for value in values or ():
        if isinstance(value, str):
            old, _, new = value.partition("=")
            maps.append((old, new))
        else:
            maps.append((value[0], value[1]))
    return tuple(maps)


def resolve(cli: Mapping[str, Any], cwd: Path) -> Settings:
    """Merge CLI values (None, False or empty = not given) over the configuration file and defaults.

    Lists add up: `--exclude` globs join the file's, and `--path-map` rules are tried before the file's.
    """
    config_path = Path(cli["config"]) if cli.get("config") else find_config(cwd)
    if config_path is not None and not config_path.is_file():
        raise FatalError(f"configuration file {config_path} does not exist")
    conf = load_config(config_path) if config_path is not None else {}

    def pick(key: str, default: Any) -> Any:
        value = cli.get(key)
        if value is None or value is False or value == []:
            return conf.get(key, default)
        return value

    scan = ScanOptions(
        source_root=str(pick("source_root", str(cwd))),
        path_maps=_cli_path_maps(cli.get("path_map")) + conf.get("path_map", ()),
        platform=pick("platform", "bare-metal"),
        require_no_red_zone_flag=bool(pick("require_no_red_zone_flag", False)),
        jobs=int(pick("jobs", default_jobs())),
        use_cache=not bool(cli.get("no_cache")),
        excludes=conf.get("exclude", ()) + tuple(cli.get("exclude") or ()),
        prefilter=not bool(cli.get("no_prefilter")),
        progress=bool(cli.get("progress")),
    )
    return Settings(
        scan=scan,
        format=pick("format", "text"),
        output=cli.get("output"),
        json_file=cli.get("json"),
        sarif_file=cli.get("sarif"),
        markdown_file=cli.get("markdown"),
        fail_on=pick("fail_on", "error"),
        baseline=pick("baseline", None),
        write_baseline=cli.get("write_baseline"),
        allow=conf.get("allow", ()),
        quiet=bool(cli.get("quiet")),
        config_file=str(config_path) if config_path else None,
    )
