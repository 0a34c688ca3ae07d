"""Shared fixtures: toolchains, compiling and assembling at test time, running the CLI."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
SCHEMA = Path(__file__).resolve().parent.parent / "redzone_check" / "schema" / "findings.schema.json"


def require_tool(name: str) -> str:
    """Path of a tool; a missing tool skips locally and fails in CI."""
    path = shutil.which(name)
    if path is None:
        if IN_CI:
            pytest.fail(f"{name} is required in CI but is not installed")
        pytest.skip(f"{name} is not installed")
    return path


def run(
    cmd: Sequence[str | os.PathLike[str]],
    cwd: Path | None = None,
    check: bool = True,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(map(str, cmd))} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
        )
    return proc


PACKAGE = Path(__file__).resolve().parent.parent / "redzone_check"
DECODER_SOURCES = [PACKAGE / "_decoder.c", PACKAGE / "_stackflow.c", PACKAGE / "_function.c"]


def build_decoder(where: Path, macros: Sequence[tuple[str, str | None]] = ()) -> ModuleType:
    """`redzone_check._decoder` compiled from its sources against the installed capstone's headers,
    as the wheel build does (an editable install has no compiled module)."""
    require_tool("gcc")
    import capstone
    from setuptools import Distribution, Extension

    include = Path(capstone.__file__).resolve().parent / "include"
    sources = [str(source) for source in DECODER_SOURCES]
    extension = Extension(
        "redzone_check._decoder", sources, include_dirs=[str(include)], define_macros=list(macros)
    )
    dist = Distribution({"ext_modules": [extension]})
    build: Any = dist.get_command_obj("build_ext")
    build.build_lib = str(where / "lib")
    build.build_temp = str(where / "tmp")
    build.ensure_finalized()
    build.run()
    (path,) = (where / "lib" / "redzone_check").glob("_decoder*.so")
    spec = importlib.util.spec_from_file_location("redzone_check._decoder", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def compiled_decoder(tmp_path_factory: pytest.TempPathFactory) -> ModuleType:
    return build_decoder(tmp_path_factory.mktemp("decoder"))


@pytest.fixture
def use_compiled(compiled_decoder: ModuleType, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """The compiled module, found as a wheel's would be: every native path of the engine is on."""
    from redzone_check import native

    monkeypatch.setitem(sys.modules, "redzone_check._decoder", compiled_decoder)
    monkeypatch.delenv("REDZONE_CHECK_NATIVE", raising=False)
    native.reset()
    assert native.native_flow() is not None, "the compiled structures differ from capstone's ctypes ones"
    yield compiled_decoder
    native.reset()


@pytest.fixture
def assemble(tmp_path: Path) -> Callable[..., Path]:
    """Assemble AT&T source text with GNU as into an object; returns its path."""
    require_tool("as")
    counter = [0]

    def _assemble(source: str, name: str | None = None, flags: Sequence[str] = ()) -> Path:
        counter[0] += 1
        stem = name or f"asm{counter[0]}"
        src = tmp_path / f"{stem}.s"
        src.write_text(source)
        obj = tmp_path / f"{stem}.o"
        run(["as", "--64", *flags, "-o", obj, src])
        return obj

    return _assemble


@pytest.fixture
def compile_c(tmp_path: Path) -> Callable[..., Path]:
    """Compile C source text with gcc or clang into an object; returns its path."""

    def _compile(
        source: str,
        name: str = "unit",
        cc: str = "gcc",
        flags: Sequence[str] = ("-O2",),
        directory: Path | None = None,
    ) -> Path:
        require_tool(cc)
        where = directory or tmp_path
        where.mkdir(parents=True, exist_ok=True)
        src = where / f"{name}.c"
        src.write_text(source)
        obj = where / f"{name}.o"
        run([cc, "-c", *flags, "-o", obj, src], cwd=where)
        return obj

    return _compile


def run_cli(args: Sequence[str | os.PathLike[str]], cwd: Path | None = None) -> tuple[int, str, str]:
    """Run `redzone-check` in-process through main(argv); returns (status, stdout, stderr)."""
    import contextlib
    import io

    from redzone_check.cli import main

    out, err = io.StringIO(), io.StringIO()
    old = os.getcwd()
    try:
        if cwd is not None:
            os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                status = main([str(a) for a in args])
            except SystemExit as exc:  # argparse usage errors
                status = int(exc.code or 0)
    finally:
        os.chdir(old)
    return status, out.getvalue(), err.getvalue()


def scan_json(args: Sequence[str | os.PathLike[str]], cwd: Path | None = None) -> tuple[int, dict[str, Any]]:
    """Run the CLI with --format json, validate against the committed schema, return (status, doc)."""
    import jsonschema

    status, out, err = run_cli(["--format", "json", "--no-cache", *args], cwd=cwd)
    assert out, f"no JSON on stdout (status {status}); stderr:\n{err}"
    doc = json.loads(out)
    jsonschema.validate(doc, json.loads(SCHEMA.read_text()))
    return status, doc


# A leaf whose local array gcc -g -O2 keeps below %rsp (`movaps %xmm0,-0x28(%rsp)`, no `sub`);
# with -mno-red-zone gcc subtracts first. Shared by the hook and packaging tests.
LEAF_COPY_AND_PICK = """\
int copy_and_pick(const int *src, unsigned i)
{
    int local[8];
    for (unsigned k = 0; k < 8; k++)
        local[k] = src[k] + 1;
    return local[i & 7];
}
"""


def dune_build(project: Path, home: Path) -> Path:
    """`dune build` with the dune cache off and HOME/XDG inside the test's scratch space."""
    env = {
        **os.environ,
        "DUNE_CACHE": "disabled",
        "HOME": str(home),
        "XDG_CACHE_HOME": str(home / "cache"),
        "XDG_CONFIG_HOME": str(home / "config"),
        "XDG_DATA_HOME": str(home / "data"),
    }
    run(["dune", "build", "--root", "."], cwd=project, env=env)
    return project


@pytest.fixture(scope="session")
def github_ops() -> Any:
    """GitHub's OpenAPI operations, loaded once: the fake server checks every request against them."""
    from openapi_github import INSTALL, operations

    ops = operations()
    if ops is None:
        (pytest.fail if IN_CI else pytest.skip)(f"GitHub's OpenAPI description is missing: {INSTALL}")
    return ops


@pytest.fixture
def fake(github_ops: Any) -> Iterator[Any]:
    """A fake GitHub on 127.0.0.1; the test fails if the client sent anything the spec rejects."""
    from fake_github import FakeServer

    server = FakeServer(github_ops)
    yield server.fake
    server.close()
    assert server.fake.violations == []
