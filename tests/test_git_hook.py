"""hooks/pre-commit, the plain git hook, run by real `git commit` on objects compiled at test time."""

from __future__ import annotations

import os
import re
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest
from conftest import LEAF_COPY_AND_PICK, require_tool, run

ROOT = Path(__file__).resolve().parent.parent

# gcc -g -O2 keeps `local` below %rsp (`movaps %xmm0,-0x28(%rsp)`); with -mno-red-zone it subtracts first.
LEAF_C = LEAF_COPY_AND_PICK
SCRATCH = re.compile(r"redzone-check\.[A-Za-z0-9]{6}/")  # the hook's mktemp tree must not leak into output
BELOW_RSP = re.compile(r"^\s*([0-9a-f]+):\s.*-0x[0-9a-f]+\(%rsp", re.MULTILINE)


@pytest.fixture
def env() -> dict[str, str]:
    """git identity, and PATH leading to the redzone-check next to this interpreter (the venv's)."""
    path = os.pathsep.join((str(Path(sys.executable).parent), os.environ.get("PATH", "")))
    if shutil.which("redzone-check", path=path) is None:
        require_tool("redzone-check")
    names = {"GIT_AUTHOR_NAME": "test", "GIT_COMMITTER_NAME": "test"}
    mails = {"GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_EMAIL": "t@example.com"}
    return {**os.environ, **names, **mails, "PATH": path}


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A repository whose hooks are this project's hooks/ and which holds leaf.c."""
    require_tool("git")
    require_tool("gcc")
    require_tool("objdump")
    run(["git", "init", "-q", tmp_path])
    run(["git", "config", "core.hooksPath", ROOT / "hooks"], cwd=tmp_path)
    (tmp_path / "leaf.c").write_text(LEAF_C)
    return tmp_path


def build(repo: Path, obj: str, flags: Sequence[str] = ()) -> int | None:
    """Compile leaf.c into `obj`; returns the source line of its first access below %rsp, if any."""
    (repo / obj).parent.mkdir(parents=True, exist_ok=True)
    run(["gcc", "-g", "-O2", *flags, "-c", "leaf.c", "-o", obj], cwd=repo)
    match = BELOW_RSP.search(run(["objdump", "-d", "--no-show-raw-insn", repo / obj]).stdout)
    if match is None:
        return None
    where = run(["addr2line", "-e", repo / obj, f"0x{match.group(1)}"]).stdout.strip()
    return int(where.rsplit(":", 1)[1].split()[0])


def commit(repo: Path, env: dict[str, str], *paths: str) -> tuple[int, str]:
    run(["git", "add", "--", *paths], cwd=repo)
    proc = run(["git", "commit", "-q", "-m", "change"], cwd=repo, check=False, env=env)
    return proc.returncode, proc.stdout + proc.stderr


def test_commit_of_red_zone_object_is_stopped_until_rebuilt(repo: Path, env: dict[str, str]) -> None:
    line = build(repo, "leaf.o")
    assert line is not None, "gcc -O2 no longer puts the array below %rsp; the fixture needs a new leaf"

    status, out = commit(repo, env, "leaf.c", "leaf.o")

    assert status != 0, out
    assert re.search(rf"^leaf\.c:{line}:", out, re.MULTILINE), out
    assert "copy_and_pick" in out
    assert "-mno-red-zone" in out
    assert "exit status 1" in out  # findings, not an input error
    assert not SCRATCH.search(out)

    assert build(repo, "leaf.o", ["-mno-red-zone"]) is None
    status, out = commit(repo, env, "leaf.c", "leaf.o")

    assert status == 0, out
    assert run(["git", "ls-files", "leaf.o"], cwd=repo).stdout.strip() == "leaf.o"


@pytest.mark.parametrize(
    ("staged", "work_tree", "passes"), [((), ("-mno-red-zone",), False), (("-mno-red-zone",), (), True)]
)
def test_staged_content_is_checked_not_the_work_tree(
    repo: Path, env: dict[str, str], staged: tuple[str, ...], work_tree: tuple[str, ...], passes: bool
) -> None:
    build(repo, "leaf.o", staged)
    run(["git", "add", "leaf.c", "leaf.o"], cwd=repo)
    build(repo, "leaf.o", work_tree)

    status, out = commit(repo, env)

    assert (status == 0) == passes, out


@pytest.mark.parametrize("name", ["obj dir/leaf copy.o", "odd\nname.o", "-leading-dash.o"])
def test_awkward_file_names_are_checked(repo: Path, env: dict[str, str], name: str) -> None:
    build(repo, name)

    status, out = commit(repo, env, "leaf.c", name)

    assert status != 0, out
    assert "copy_and_pick" in out
    assert "exit status 1" in out
    if "\n" not in name:  # control characters are shown escaped
        assert name in out


def test_object_rebuilt_after_staging_is_reported_under_its_repository_path(
    repo: Path, env: dict[str, str]
) -> None:
    build(repo, "leaf.o")
    run(["git", "add", "leaf.c", "leaf.o"], cwd=repo)
    build(repo, "leaf.o", ["-mno-red-zone"])

    status, out = commit(repo, env)

    assert status != 0, out
    assert "leaf.o" in out
    assert not SCRATCH.search(out)


def test_commits_without_objects_pass_quietly(repo: Path, env: dict[str, str]) -> None:
    status, out = commit(repo, env, "leaf.c")

    assert status == 0, out
    assert out == ""

    (repo / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    status, out = commit(repo, env, "logo.png")

    assert status == 0, out
    assert "commit stopped" not in out


def test_missing_redzone_check_stops_the_commit_with_advice(repo: Path, env: dict[str, str]) -> None:
    build(repo, "leaf.o", ["-mno-red-zone"])

    status, out = commit(repo, {**env, "REDZONE_CHECK": "/nonexistent/redzone-check"}, "leaf.o")

    assert status != 0
    assert "pip install redzone-check" in out


def test_repository_configuration_applies_to_staged_objects(repo: Path, env: dict[str, str]) -> None:
    build(repo, "leaf.o")
    allow = 'allow = [{function = "copy_and_pick", reason = "runs on its own interrupt stack"}]\n'
    (repo / ".redzone-check.toml").write_text(allow)

    status, out = commit(repo, env, "leaf.c", "leaf.o", ".redzone-check.toml")

    assert status == 0, out
