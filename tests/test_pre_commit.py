"""The pre-commit hooks, run by the real pre-commit on objects compiled at test time.

pre-commit installs the hooks from a git repository, so a module fixture commits a copy of this
working tree (tracked and new files) into a scratch repository. PRE_COMMIT_HOME is shared by the
module, so the hook environment is built once (`pip install` of that copy).
"""

from __future__ import annotations

import importlib
import json
import os
import re
import shutil
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import cast

import pytest
from conftest import LEAF_COPY_AND_PICK, require_tool, run

ROOT = Path(__file__).resolve().parent.parent

# A leaf function that keeps its array below %rsp: gcc -O2 stores it with `movaps %xmm0,-0x28(%rsp)`.
LEAF_C = LEAF_COPY_AND_PICK
# The first 16 bytes of a PNG: a binary file pre-commit passes to the hook, which must not fail on it.
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"
GIT_ENV = {
    "GIT_AUTHOR_NAME": "test",
    "GIT_AUTHOR_EMAIL": "test@example.com",
    "GIT_COMMITTER_NAME": "test",
    "GIT_COMMITTER_EMAIL": "test@example.com",
}
BELOW_RSP = re.compile(r"^\s*([0-9a-f]+):\s.*-0x[0-9a-f]+\(%rsp", re.MULTILINE)


def red_zone_line(obj: Path) -> int | None:
    """Source line of the first instruction below %rsp, by objdump and addr2line (the oracle)."""
    match = BELOW_RSP.search(run(["objdump", "-d", "--no-show-raw-insn", obj]).stdout)
    if match is None:
        return None
    where = run(["addr2line", "-e", obj, f"0x{match.group(1)}"]).stdout.strip()
    return int(where.rsplit(":", 1)[1].split()[0])


def build_leaf(repo: Path, obj: str, flags: Sequence[str] = ()) -> int | None:
    """Compile leaf.c in `repo` into `obj` with gcc -g -O2; returns the red-zone line, if any."""
    require_tool("gcc")
    require_tool("objdump")
    (repo / obj).parent.mkdir(parents=True, exist_ok=True)
    run(["gcc", "-g", "-O2", *flags, "-c", "leaf.c", "-o", obj], cwd=repo)
    return red_zone_line(repo / obj)


def git_repo(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    run(["git", "init", "-q", "-b", "main", path])
    return path


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    home = tmp_path_factory.mktemp("pre-commit-home")
    return {**os.environ, **GIT_ENV, "PRE_COMMIT_HOME": str(home), "PIP_DISABLE_PIP_VERSION_CHECK": "1"}


@pytest.fixture(scope="module")
def hooks_repo(tmp_path_factory: pytest.TempPathFactory, env: dict[str, str]) -> tuple[Path, str]:
    """A committed copy of this working tree: what pre-commit clones and pip-installs."""
    require_tool("git")
    repo = git_repo(tmp_path_factory.mktemp("hooks-repo"))
    listed = run(["git", "-C", ROOT, "ls-files", "-z", "--cached", "--others", "--exclude-standard"])
    for name in filter(None, listed.stdout.split("\0")):
        source = ROOT / name
        if source.is_file():
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, repo / name)
    run(["git", "add", "-A"], cwd=repo)
    run(["git", "commit", "-q", "-m", "hooks under test"], cwd=repo, env=env)
    return repo, run(["git", "rev-parse", "HEAD"], cwd=repo).stdout.strip()


def pre_commit(args: Sequence[str], cwd: Path, env: dict[str, str]) -> tuple[int, str]:
    proc = run([sys.executable, "-m", "pre_commit", *args], cwd=cwd, check=False, env=env)
    return proc.returncode, proc.stdout + proc.stderr


def leaf_project(path: Path, flags: Sequence[str], env: dict[str, str]) -> tuple[Path, int | None]:
    """A repository holding leaf.c and its committed object leaf.o (plus a PNG)."""
    repo = git_repo(path)
    (repo / "leaf.c").write_text(LEAF_C)
    line = build_leaf(repo, "leaf.o", flags)
    (repo / "logo.png").write_bytes(PNG)
    run(["git", "add", "."], cwd=repo)
    return repo, line


@pytest.mark.slow
def test_staged_red_zone_object_fails_naming_function_line_and_flag(
    tmp_path: Path, hooks_repo: tuple[Path, str], env: dict[str, str]
) -> None:
    repo, line = leaf_project(tmp_path / "project", (), env)
    assert line is not None, "gcc -O2 no longer puts the array below %rsp; the fixture needs a new leaf"

    status, out = pre_commit(["try-repo", str(hooks_repo[0]), "redzone-check", "--all-files"], repo, env)

    assert status != 0, out
    assert re.search(rf"^leaf\.c:{line}:", out, re.MULTILINE), out
    assert "copy_and_pick" in out
    assert "-mno-red-zone" in out


@pytest.mark.slow
def test_object_rebuilt_with_mno_red_zone_passes_next_to_a_png(
    tmp_path: Path, hooks_repo: tuple[Path, str], env: dict[str, str]
) -> None:
    repo, line = leaf_project(tmp_path / "project", ("-mno-red-zone",), env)
    assert line is None

    status, out = pre_commit(["try-repo", str(hooks_repo[0]), "redzone-check", "--all-files"], repo, env)

    assert status == 0, out
    assert "copy_and_pick" not in out


def build_dir_project(path: Path, hooks_repo: tuple[Path, str], args: Sequence[str] | None) -> Path:
    """leaf.c committed, its object built into build/, which .gitignore ignores."""
    repo = git_repo(path)
    (repo / "leaf.c").write_text(LEAF_C)
    (repo / ".gitignore").write_text("build/\n")
    hook: dict[str, object] = {"id": "redzone-check-build"}
    if args is not None:
        hook["args"] = list(args)
    config = {"repos": [{"repo": str(hooks_repo[0]), "rev": hooks_repo[1], "hooks": [hook]}]}
    (repo / ".pre-commit-config.yaml").write_text(json.dumps(config, indent=2))  # JSON is YAML
    run(["git", "add", "."], cwd=repo)
    return repo


@pytest.mark.slow
@pytest.mark.parametrize(("flags", "fails"), [((), True), (("-mno-red-zone",), False)])
def test_build_directory_hook_checks_ignored_objects(
    tmp_path: Path, hooks_repo: tuple[Path, str], env: dict[str, str], flags: tuple[str, ...], fails: bool
) -> None:
    repo = build_dir_project(tmp_path / "project", hooks_repo, ["build"])
    line = build_leaf(repo, "build/leaf.o", flags)
    assert run(["git", "status", "--porcelain", "--ignored", "build"], cwd=repo).stdout.startswith("!!")

    status, out = pre_commit(["run", "redzone-check-build", "--all-files"], repo, env)

    if fails:
        assert status != 0, out
        assert re.search(rf"^leaf\.c:{line}:", out, re.MULTILINE), out
        assert "copy_and_pick" in out
        assert "-mno-red-zone" in out
    else:
        assert status == 0, out
        assert line is None


@pytest.mark.slow
def test_build_directory_hook_without_args_says_how_to_name_the_directory(
    tmp_path: Path, hooks_repo: tuple[Path, str], env: dict[str, str]
) -> None:
    repo = build_dir_project(tmp_path / "project", hooks_repo, None)

    status, out = pre_commit(["run", "redzone-check-build", "--all-files"], repo, env)

    assert status != 0, out
    assert "args: [_build/default]" in out


def hook_main() -> Callable[[Sequence[str]], int]:
    # Imported by name: mypy cannot follow setuptools' hooks/ -> redzone_check.hooks mapping.
    module = importlib.import_module("redzone_check.hooks.pre_commit")
    return cast(Callable[[Sequence[str]], int], module.main)


def test_entry_point_without_paths_explains_the_build_hook_args(capsys: pytest.CaptureFixture[str]) -> None:
    assert hook_main()([]) == 2
    assert "args: [_build/default]" in capsys.readouterr().err


def test_entry_point_hands_files_and_options_to_the_cli(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main = hook_main()
    (tmp_path / "leaf.c").write_text(LEAF_C)
    build_leaf(tmp_path, "leaf.o")
    (tmp_path / "logo.png").write_bytes(PNG)

    assert main(["--no-cache", str(tmp_path / "logo.png")]) == 0
    assert main(["--no-cache", str(tmp_path / "leaf.o"), str(tmp_path / "logo.png")]) == 1
    assert "copy_and_pick" in capsys.readouterr().out
    assert main(["--no-cache", "--fail-on", "never", str(tmp_path / "leaf.o")]) == 0


def test_hook_manifest_is_valid() -> None:
    proc = run(
        [sys.executable, "-m", "pre_commit", "validate-manifest", ROOT / ".pre-commit-hooks.yaml"],
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_plain_hook_script_is_executable() -> None:
    assert os.access(ROOT / "hooks" / "pre-commit", os.X_OK)


def test_every_hook_id_is_documented_in_readme() -> None:
    ids = re.findall(r"^- id: (\S+)$", (ROOT / ".pre-commit-hooks.yaml").read_text(), re.MULTILINE)
    assert ids, "no hook ids found in .pre-commit-hooks.yaml"
    readme = ROOT / "README.md"
    text = readme.read_text() if readme.exists() else ""
    missing = [i for i in ids if not re.search(rf"\bid:\s*{re.escape(i)}\s*$", text, re.MULTILINE)]
    assert not missing, f"hook ids missing from README.md: {missing}"
