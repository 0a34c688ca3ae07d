"""Packaging: the sdist builds, the wheel built from it installs into a fresh venv and works.

One build per module: `python -m build` makes the sdist, then the wheel from the unpacked sdist,
so a file missing from the sdist breaks the wheel too.
"""

from __future__ import annotations

import shutil
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
from conftest import LEAF_COPY_AND_PICK, require_tool, run

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
NOT_IN_WHEEL = ("tests/", "examples/", "benchmarks/", ".ci/", "docs/", "hooks/")
LEAF_C = LEAF_COPY_AND_PICK


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the working tree: tracked and new files, as a clean clone has them."""
    require_tool("git")
    source = tmp_path_factory.mktemp("source")
    listed = run(["git", "-C", ROOT, "ls-files", "-z", "--cached", "--others", "--exclude-standard"])
    for name in filter(None, listed.stdout.split("\0")):
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    return source


@pytest.fixture(scope="module")
def dist(source: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    run([sys.executable, "-m", "build", "--outdir", out, source])
    return out


@pytest.fixture(scope="module")
def wheel_names(dist: Path) -> list[str]:
    (wheel,) = dist.glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        return archive.namelist()


@pytest.fixture(scope="module")
def venv(dist: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv (no system site-packages) with only the wheel and its dependencies."""
    where = tmp_path_factory.mktemp("venv")
    run([sys.executable, "-m", "venv", where])
    (wheel,) = dist.glob("*.whl")
    run([where / "bin" / "python", "-m", "pip", "install", "-q", "--disable-pip-version-check", wheel])
    return where


def test_sdist_holds_the_sources_the_wheel_needs(dist: Path) -> None:
    (sdist,) = dist.glob("*.tar.gz")
    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    wanted = {"pyproject.toml", "CHANGELOG.md", "hooks/pre-commit", "hooks/pre_commit.py"}
    wanted.add("redzone_check/schema/findings.schema.json")
    # Every source of the C module, so that a wheel built from the sdist compiles it.
    extension = Path(__file__).resolve().parent.parent / "redzone_check"
    wanted |= {f"redzone_check/{p.name}" for p in (*extension.glob("*.c"), *extension.glob("*.h"))}
    assert len(wanted) >= 10
    assert wanted <= names


def test_wheel_carries_no_test_data(wheel_names: list[str]) -> None:
    strays = [name for name in wheel_names if name.startswith(NOT_IN_WHEEL)]
    assert not strays


def test_wheel_carries_every_module_the_schema_and_the_hooks(source: Path, wheel_names: list[str]) -> None:
    hooks = {f"redzone_check/hooks/{p.name}" for p in (source / "hooks").glob("*.py")}
    assert "redzone_check/hooks/pre_commit.py" in hooks
    modules = {p.relative_to(source).as_posix() for p in (source / "redzone_check").rglob("*.py")}
    missing = (hooks | modules) - set(wheel_names)
    assert not missing, "a new subpackage needs adding to [tool.setuptools] packages in pyproject.toml"
    assert "redzone_check/schema/findings.schema.json" in wheel_names
    assert "redzone_check/py.typed" in wheel_names


def test_installed_version_is_the_package_metadata_version(venv: Path) -> None:
    python = venv / "bin" / "python"
    probe = "import importlib.metadata as m, redzone_check as r; print(m.version(r.__name__), r.__file__)"
    # cwd outside the checkout: `python -c` puts the working directory first on sys.path.
    version, module = run([python, "-c", probe], cwd=venv).stdout.split()
    assert Path(module).is_relative_to(venv), "redzone_check was not imported from the fresh venv"

    for script in ("redzone-check", "redzone-check-pre-commit"):
        out = run([venv / "bin" / script, "--version"], cwd=venv).stdout
        assert version in out.split(), f"{script} --version printed {out!r}, metadata says {version}"


def test_installed_cli_finds_red_zone_in_a_compiled_object(venv: Path, tmp_path: Path) -> None:
    require_tool("gcc")
    (tmp_path / "leaf.c").write_text(LEAF_C)
    run(["gcc", "-g", "-O2", "-c", "leaf.c", "-o", "leaf.o"], cwd=tmp_path)

    proc = run([venv / "bin" / "redzone-check", "--no-cache", "leaf.o"], cwd=tmp_path, check=False)

    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "copy_and_pick" in proc.stdout


COMPILED = ("filters", "stack", "stackstate", "digest", "lite")  # setup.py's list


def test_wheel_compiles_the_analysis_with_mypyc(wheel_names: list[str]) -> None:
    for module in COMPILED:
        assert any(
            name.startswith(f"redzone_check/{module}.cpython-") and name.endswith(".so")
            for name in wheel_names
        ), f"{module} was not compiled (is a C compiler and Python.h available?)"
        assert f"redzone_check/{module}.py" in wheel_names  # the source stays beside it
    assert any(name.startswith("redzone_check/_decoder.cpython-") for name in wheel_names)


def test_compiled_engine_finds_exactly_what_the_python_sources_find(venv: Path, tmp_path: Path) -> None:
    python = venv / "bin" / "python"
    probe = "import redzone_check.stack as s, redzone_check.digest as d; print(s.__file__, d.__file__)"
    for path in run([python, "-c", probe], cwd=venv).stdout.split():
        assert path.endswith(".so"), f"{path} is not the compiled module"
    probe = "from redzone_check.native import native_decode; print(native_decode() is not None)"
    assert run([python, "-c", probe], cwd=venv).stdout.split() == ["True"], "no compiled lite decoder"
    libgcc = Path(run(["gcc", "-print-libgcc-file-name"]).stdout.strip())
    for prefilter in ([], ["--no-prefilter"]):
        args = ["--no-cache", "--format", "json", *prefilter, str(libgcc)]

        compiled = run([venv / "bin" / "redzone-check", *args], cwd=tmp_path, check=False)
        pure = run([sys.executable, "-m", "redzone_check.cli", *args], cwd=tmp_path, check=False)

        assert compiled.returncode == pure.returncode == 1, compiled.stderr + pure.stderr
        assert compiled.stdout == pure.stdout


def test_a_build_does_not_ship_compiled_modules_an_earlier_build_left(
    source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # setuptools packages build/lib* whole: a module compiled by an earlier build, and no longer
    # in setup.py's list, would shadow its Python source in the new wheel.
    tree = tmp_path / "tree"
    shutil.copytree(source, tree)
    stale = tree / "build" / "lib" / "redzone_check" / "calls.cpython-311-x86_64-linux-gnu.so"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"not a module")
    kept = stale.with_name("stack.cpython-311-x86_64-linux-gnu.so")
    kept.write_bytes(b"a module this build compiles, or replaces")
    monkeypatch.setenv("REDZONE_CHECK_COMPILE", "0")
    run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", tmp_path / "out", tree])
    (wheel,) = (tmp_path / "out").glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        compiled = [name for name in archive.namelist() if name.endswith(".so")]
    assert compiled == []
    assert not stale.exists()
