"""The console scripts leave with os._exit after flushing: nothing written may be lost, and the
exit status and stderr must be those of `main()` run in-process."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from conftest import run_cli
from test_cli import LEAF

from redzone_check.cli import main

# What the `redzone-check` and `redzone-check-pre-commit` console scripts run.
CLI = [sys.executable, "-c", "from redzone_check.cli import run; run()"]
HOOK = [sys.executable, "-c", "from redzone_check.hooks.pre_commit import run; run()"]


def _libgcc() -> str:
    return subprocess.run(
        ["gcc", "-print-libgcc-file-name"], capture_output=True, text=True, check=True
    ).stdout.strip()


def test_a_large_report_through_a_pipe_is_complete(tmp_path: Path) -> None:
    # Far more than a pipe buffer: the last bytes sit in Python's buffer until the exit flushes them.
    proc = subprocess.run([*CLI, "--format", "json", _libgcc()], capture_output=True, cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    doc = json.loads(proc.stdout)
    assert len(proc.stdout) > 65536
    status, text, _err = run_cli(["--format", "json", _libgcc()], cwd=tmp_path)
    assert status == 1
    assert doc == json.loads(text)


def test_status_and_stderr_are_those_of_main(compile_c: Callable[..., Path], tmp_path: Path) -> None:
    leaf = compile_c(LEAF, name="leaf", flags=("-O2",))
    clean = compile_c("int f(int a) { return a + 1; }\n", name="clean", flags=("-O2",))
    assert subprocess.run([*CLI, str(leaf)], capture_output=True, cwd=tmp_path).returncode == 1
    assert subprocess.run([*CLI, str(clean)], capture_output=True, cwd=tmp_path).returncode == 0
    missing = subprocess.run([*CLI, str(tmp_path / "nope.o")], capture_output=True, text=True, cwd=tmp_path)
    assert missing.returncode == main([str(tmp_path / "nope.o")])
    assert "nope.o" in missing.stderr and "Traceback" not in missing.stderr
    usage = subprocess.run(CLI, capture_output=True, text=True, cwd=tmp_path)
    assert usage.returncode == 2 and "no PATH given" in usage.stderr


def test_a_reader_that_goes_away_is_no_traceback(tmp_path: Path) -> None:
    # `redzone-check lib.a | true`: the report has nowhere to go, the status and the other reports
    # still count.
    sarif = tmp_path / "out.sarif"
    proc = subprocess.Popen(
        [*CLI, "--format", "json", "--sarif", str(sarif), _libgcc()],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=tmp_path,
    )
    assert proc.stdout is not None
    proc.stdout.close()
    _out, err = proc.communicate(timeout=120)
    assert "Traceback" not in err.decode() and "Exception ignored" not in err.decode()
    assert proc.returncode == 1
    assert json.loads(sarif.read_text())["runs"][0]["results"]


def test_the_pre_commit_script_exits_the_same_way(compile_c: Callable[..., Path], tmp_path: Path) -> None:
    leaf = compile_c(LEAF, name="leaf", flags=("-O2",))
    found = subprocess.run([*HOOK, str(leaf)], capture_output=True, text=True, cwd=tmp_path)
    assert found.returncode == 1 and "checksum" in found.stdout
    nothing = subprocess.run(HOOK, capture_output=True, text=True, cwd=tmp_path)
    assert nothing.returncode == 2 and "nothing to check" in nothing.stderr
