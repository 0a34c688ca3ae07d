"""The Action's flow end to end: a real object compiled at test time, the real CLI, the real PyGithub
client against the fake GitHub server; the scanner and the client factory are injected."""

from __future__ import annotations

import contextlib
import io
import json
import os
from collections.abc import Sequence
from pathlib import Path

import pytest
from conftest import require_tool
from fake_github import Fake, added_file_patch, build_workspace, write_event
from github import Auth, Github
from redzone_check.hooks.action import main
from redzone_check.hooks.action_settings import ActionSettings

from redzone_check.cli import main as cli_main

HEAD = "c" * 40
TOKEN = "ghs_do_not_print_me"


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    require_tool("gcc")
    return build_workspace(tmp_path / "ws")


def in_process_scanner(argv: Sequence[str], cwd: str) -> int:
    old = os.getcwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            return cli_main(list(argv))
    finally:
        os.chdir(old)


def fast_client(settings: ActionSettings) -> Github:
    assert settings.token == TOKEN
    return Github(
        auth=Auth.Token(settings.token),
        base_url=settings.api_url,
        retry=None,
        seconds_between_requests=None,
        seconds_between_writes=None,
    )


def action_env(ws: Path, fake: Fake, event: str = "pull_request", **inputs: str) -> dict[str, str]:
    fake.add_pull(3, HEAD, [("src/stub.c", "added", added_file_patch(ws / "src" / "stub.c"))])
    env = {
        "GITHUB_WORKSPACE": str(ws),
        "GITHUB_EVENT_NAME": event,
        "GITHUB_EVENT_PATH": str(write_event(ws.parent / "event.json", 3, HEAD, fake.repo)),
        "GITHUB_REPOSITORY": fake.repo,
        "GITHUB_API_URL": fake.base_url,
        "GITHUB_OUTPUT": str(ws.parent / "output"),
        "GITHUB_STEP_SUMMARY": str(ws.parent / "summary.md"),
        "RUNNER_TEMP": str(ws.parent),
        "REDZONE_GITHUB_TOKEN": TOKEN,
        "REDZONE_PATHS": "build",
    }
    env.update({f"REDZONE_{k.upper()}": v for k, v in inputs.items()})
    return env


def run_action(env: dict[str, str], sleeps: list[float] | None = None) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = main([], env, in_process_scanner, fast_client, (sleeps if sleeps is not None else []).append)
    assert TOKEN not in out.getvalue()
    return status, out.getvalue()


def outputs(ws: Path) -> dict[str, str]:
    lines = (ws.parent / "output").read_text().splitlines()
    return {lines[i].split("<<")[0]: lines[i + 1] for i in range(0, len(lines), 3)}


def test_pull_request_gets_a_review_on_the_stub_line_and_outputs(workspace: Path, fake: Fake) -> None:
    status, log = run_action(action_env(workspace, fake))
    assert status == 1
    [comment] = fake.comments.values()
    assert comment["path"] == "src/stub.c" and comment["line"] is not None
    assert "checksum" in comment["body"] and "-mno-red-zone" in comment["body"]
    assert "::error" not in log  # the review carries the findings
    out = outputs(workspace)
    assert out["findings"] == "1"
    sarif = json.loads(Path(out["sarif-file"]).read_text())
    assert sarif["runs"][0]["results"][0]["ruleId"] == "RZ001"
    assert "checksum" in (workspace.parent / "summary.md").read_text()


def test_rerun_of_the_action_adds_no_comment(workspace: Path, fake: Fake) -> None:
    env = action_env(workspace, fake)
    run_action(env)
    writes = len(fake.writes("POST"))
    assert run_action(env)[0] == 1
    assert len(fake.writes("POST")) == writes


def test_fork_read_only_token_falls_back_to_annotations_and_fails(workspace: Path, fake: Fake) -> None:
    fake.read_only = True
    status, log = run_action(action_env(workspace, fake))
    assert status == 1
    assert "::error file=src/stub.c," in log
    summary = (workspace.parent / "summary.md").read_text()
    assert "checksum" in summary and "review was not posted" in summary
    assert fake.comments == {}


def test_persistent_server_errors_fall_back_after_retries(workspace: Path, fake: Fake) -> None:
    fake.inject += [(502, {})] * 5
    sleeps: list[float] = []
    status, log = run_action(action_env(workspace, fake), sleeps)
    assert status == 1 and sleeps == [1.0, 2.0, 4.0, 8.0]
    assert "GitHub failed after retries" in log and "::error file=src/stub.c," in log


def test_push_event_gets_annotations_and_no_review(workspace: Path, fake: Fake) -> None:
    status, log = run_action(action_env(workspace, fake, event="push"))
    assert status == 1 and "::error file=src/stub.c," in log
    assert fake.requests == []


def test_clean_build_passes_without_review(tmp_path: Path, fake: Fake) -> None:
    require_tool("gcc")
    ws = build_workspace(tmp_path / "ws", flags=("-mno-red-zone",))
    status, _ = run_action(action_env(ws, fake))
    assert status == 0
    assert outputs(ws)["findings"] == "0" and fake.reviews == {}


def test_scanning_no_object_is_an_error_unless_allowed(workspace: Path, fake: Fake) -> None:
    status, log = run_action(action_env(workspace, fake, paths="src"))
    assert status == 2 and "scanned no object" in log
    assert run_action(action_env(workspace, fake, paths="src", allow_empty="true"))[0] == 0


def test_globs_expand_relative_to_the_workspace(workspace: Path, fake: Fake) -> None:
    status, _ = run_action(action_env(workspace, fake, paths="'build/**/*.o'"))
    assert status == 1 and outputs(workspace)["findings"] == "1"


def test_bad_input_value_is_a_usage_error(workspace: Path, fake: Fake) -> None:
    status, log = run_action(action_env(workspace, fake, filter_mode="everything"))
    assert status == 2 and "filter-mode must be one of" in log


def test_settings_repr_hides_the_token(workspace: Path, fake: Fake) -> None:
    settings = ActionSettings.from_env(action_env(workspace, fake))
    assert settings.token == TOKEN and TOKEN not in repr(settings)


def workflow_run_env(ws: Path, fake: Fake, built_sha: str) -> dict[str, str]:
    env = action_env(ws, fake, event="workflow_run")
    trusted = ws.parent / "workflow_run.json"
    trusted.write_text(json.dumps({"workflow_run": {"head_sha": built_sha, "pull_requests": []}}))
    env["REDZONE_PULL_REQUEST_EVENT"] = env["GITHUB_EVENT_PATH"]  # saved by the untrusted run
    env["GITHUB_EVENT_PATH"] = str(trusted)
    return env


def test_workflow_run_reviews_the_pull_request_the_saved_event_names(workspace: Path, fake: Fake) -> None:
    status, _ = run_action(workflow_run_env(workspace, fake, HEAD))
    assert status == 1
    assert [c["path"] for c in fake.comments.values()] == ["src/stub.c"]


def test_workflow_run_refuses_a_saved_event_for_another_commit(workspace: Path, fake: Fake) -> None:
    status, log = run_action(workflow_run_env(workspace, fake, "e" * 40))
    assert status == 1 and "stale or forged" in log
    assert fake.comments == {} and "::error file=src/stub.c," in log
