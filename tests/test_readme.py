"""README.md's two newcomer commands are what .ci/run does, and its samples are real."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
CI = (ROOT / ".ci" / "run").read_text()


def _blocks(info: str) -> list[str]:
    """Fenced blocks of the Quick start section whose info string is `info`."""
    section = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    blocks: list[str] = []
    current: list[str] | None = None
    kind = ""
    for line in section.splitlines():
        if current is None and line.startswith("```"):
            current, kind = [], line[3:].strip()
        elif current is not None and line == "```":
            if kind == info:
                blocks.append("\n".join(current))
            current = None
        elif current is not None:
            current.append(line)
    return blocks


def _quick_start_commands() -> list[str]:
    return _blocks("sh")


def test_quick_start_has_exactly_two_commands() -> None:
    commands = _quick_start_commands()
    assert len(commands) == 2
    assert commands[0] == 'pip install . && redzone-check "$(gcc -print-libgcc-file-name)"'


def test_readme_test_command_is_what_ci_runs() -> None:
    install, test = _quick_start_commands()[1].split(" && ")
    ci_lines = [line.strip() for line in CI.splitlines()]
    assert install in ci_lines, f"{install!r} is not a line of .ci/run"
    assert test in ci_lines, f"{test!r} is not a line of .ci/run"


def test_ci_installs_the_package_the_readme_way() -> None:
    # .ci/run installs editable with the test extra: the README's first command installs
    # the same package without extras, so both entry points must come from pyproject.toml.
    assert "pip install -e '.[test]'" in CI
    assert 'redzone-check = "redzone_check.cli:run"' in (ROOT / "pyproject.toml").read_text()


def test_libgcc_sample_is_real_output() -> None:
    import subprocess

    from conftest import run_cli

    libgcc = subprocess.run(["gcc", "-print-libgcc-file-name"], capture_output=True, text=True).stdout.strip()
    sample = _blocks("")[0]
    status, out, _ = run_cli([libgcc])
    assert status == 1
    produced = out.splitlines()
    for line in sample.splitlines():
        if line.strip() in ("...", "…"):
            continue
        assert line in produced, f"README sample line not produced by the current code: {line!r}"
