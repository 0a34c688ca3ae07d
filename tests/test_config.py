"""Configuration: discovery, precedence (CLI > file > defaults), validation and unknown keys."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import run_cli

from redzone_check.config import AllowEntry, find_config, resolve
from redzone_check.errors import FatalError

PYPROJECT = """\
[project]
name = "kernel"

[tool.redzone-check]
platform = "minios"
fail-on = "warning"
require-no-red-zone-flag = true
exclude = ["vendor/*"]
path-map = { "/build/src" = "src" }
source-root = "."
baseline = "ci/redzone-baseline.json"
jobs = 3
allow = [
  { function = "caml_*", reason = "the OCaml runtime is rebuilt for Mini-OS", path = "runtime/*" },
]
"""


def cli(**values: Any) -> dict[str, Any]:
    return values


def test_pyproject_is_found_from_a_subdirectory(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(PYPROJECT)
    sub = tmp_path / "src" / "drivers"
    sub.mkdir(parents=True)
    settings = resolve(cli(), sub)
    assert settings.config_file == str(tmp_path / "pyproject.toml")
    assert settings.scan.platform == "minios"
    assert settings.fail_on == "warning"
    assert settings.scan.require_no_red_zone_flag is True
    assert settings.scan.excludes == ("vendor/*",)
    assert settings.scan.path_maps == (("/build/src", "src"),)
    assert settings.scan.jobs == 3
    assert settings.scan.source_root == str(tmp_path)  # relative to the file, not to the cwd
    assert settings.baseline == str(tmp_path / "ci" / "redzone-baseline.json")
    assert settings.allow == (AllowEntry("caml_*", "the OCaml runtime is rebuilt for Mini-OS", "runtime/*"),)


def test_command_line_overrides_the_file(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(PYPROJECT)
    settings = resolve(
        cli(platform="userspace", fail_on="never", jobs=1, baseline="other.json", source_root="/src"),
        tmp_path,
    )
    assert (settings.scan.platform, settings.fail_on, settings.scan.jobs) == ("userspace", "never", 1)
    assert (settings.baseline, settings.scan.source_root) == ("other.json", "/src")


def test_flags_not_given_on_the_command_line_keep_the_file_value(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(PYPROJECT)
    settings = resolve(cli(require_no_red_zone_flag=None, exclude=None, path_map=None), tmp_path)
    assert settings.scan.require_no_red_zone_flag is True
    assert settings.scan.excludes == ("vendor/*",)


def test_lists_from_the_command_line_add_to_the_file(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(PYPROJECT)
    settings = resolve(cli(exclude=["build/*"], path_map=[("/build/src/x", "x")]), tmp_path)
    assert settings.scan.excludes == ("vendor/*", "build/*")
    assert settings.scan.path_maps == (("/build/src/x", "x"), ("/build/src", "src"))  # CLI rules first


def test_defaults_without_any_file(tmp_path: Path) -> None:
    settings = resolve(cli(), tmp_path)
    assert settings.config_file is None
    assert (settings.scan.platform, settings.fail_on, settings.format) == ("bare-metal", "error", "text")
    assert settings.scan.source_root == str(tmp_path)
    assert settings.allow == () and settings.baseline is None


def test_standalone_file_uses_top_level_keys_and_wins_over_pyproject(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(PYPROJECT)
    (tmp_path / ".redzone-check.toml").write_text('platform = "uefi"\npath-map = ["/b=a"]\n')
    settings = resolve(cli(), tmp_path)
    assert settings.config_file == str(tmp_path / ".redzone-check.toml")
    assert settings.scan.platform == "uefi"
    assert settings.scan.path_maps == (("/b", "a"),)


def test_pyproject_without_our_table_is_passed_over(tmp_path: Path) -> None:
    (tmp_path / ".redzone-check.toml").write_text('platform = "solo5"\n')
    inner = tmp_path / "ocaml-pkg"
    inner.mkdir()
    (inner / "pyproject.toml").write_text('[project]\nname = "bindings"\n')
    assert find_config(inner) == tmp_path / ".redzone-check.toml"


def test_explicit_config_file(tmp_path: Path) -> None:
    (tmp_path / ".redzone-check.toml").write_text('platform = "solo5"\n')
    chosen = tmp_path / "ci.toml"
    chosen.write_text('platform = "linux-kernel"\n')
    assert resolve(cli(config=str(chosen)), tmp_path).scan.platform == "linux-kernel"
    with pytest.raises(FatalError, match=r"missing\.toml does not exist"):
        resolve(cli(config=str(tmp_path / "missing.toml")), tmp_path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('platfrom = "minios"\n', "unknown key 'platfrom'"),
        ('platform = "windows"\n', "platform: expected one of bare-metal, linux-kernel"),
        ('fail-on = "always"\n', "fail-on: expected one of error, warning, note, never"),
        ("jobs = 0\n", "jobs: expected a positive integer"),
        ('require-no-red-zone-flag = "yes"\n', "require-no-red-zone-flag: expected true or false"),
        ('exclude = "vendor"\n', "exclude: expected a list of globs"),
        ('path-map = ["nothing"]\n', 'path-map: expected "OLD=NEW"'),
        ('allow = [{ function = "f" }]\n', "allow\\[0\\].reason: expected a non-empty string"),
        ('allow = [{ function = "f", reason = "r", why = "x" }]\n', "unknown key allow\\[0\\].why"),
        ("platform = \n", "invalid TOML"),
    ],
)
def test_bad_values_name_the_file_and_the_key(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / ".redzone-check.toml").write_text(text)
    with pytest.raises(FatalError, match=message) as info:
        resolve(cli(), tmp_path)
    assert str(tmp_path / ".redzone-check.toml") in str(info.value)


def test_unknown_key_in_pyproject_table_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[tool.redzone-check]\nfail_on = "error"\n')
    with pytest.raises(FatalError, match=r"pyproject\.toml: unknown key 'fail_on'"):
        resolve(cli(), tmp_path)


def test_cli_reports_config_errors_with_exit_status_2(tmp_path: Path) -> None:
    (tmp_path / ".redzone-check.toml").write_text('colour = "always"\n')
    (tmp_path / "empty.o").write_bytes(b"")
    status, out, err = run_cli(["--no-cache", "empty.o"], cwd=tmp_path)
    assert status == 2
    assert "unknown key 'colour'" in err and ".redzone-check.toml" in err
    assert "Traceback" not in err + out


@pytest.mark.slow
def test_config_platform_applies_to_a_real_scan_and_cli_overrides_it(tmp_path: Path, compile_c: Any) -> None:
    compile_c(
        "int leaf(int *p) { volatile int a[4]; a[0] = p[0]; return a[0]; }\n", name="leaf", directory=tmp_path
    )
    (tmp_path / ".redzone-check.toml").write_text('platform = "userspace"\n')
    status, _, err = run_cli(["--no-cache", "leaf.o"], cwd=tmp_path)
    assert status == 0, err  # in user space RZ001 is a note, below the default --fail-on error
    status, _, err = run_cli(["--no-cache", "--platform", "minios", "leaf.o"], cwd=tmp_path)
    assert status == 1, err


def test_every_config_key_is_documented() -> None:
    from redzone_check.config import _KEYS

    doc = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    assert [key for key in _KEYS if f"| `{key}` |" not in doc] == []
