"""Build hook: compile the stack analysis' inner loop with mypyc when a wheel is built.

Everything else is declared in pyproject.toml. The analysis modules are strictly typed Python;
compiled they run the same code about a fifth faster (README, "Speed"). One small C module,
`redzone_check/_decoder` (`_decoder.c`, `_stackflow.c`, `_function.c`), reads capstone's decodings
without their per-instruction Python overhead and runs the stack analysis. The wheel stays correct
without them: when no C compiler is found the extensions are skipped and the Python sources run.

- `pip install .` and `python -m build` compile; set REDZONE_CHECK_COMPILE=0 to build pure Python.
- An editable install (`pip install -e .`) never compiles: a compiled copy beside the sources would
  shadow every later edit of them.
- REDZONE_CHECK_COMPILE=1 makes a failed compilation an error instead of a fallback.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from setuptools import Extension, setup

COMPILED = [
    "redzone_check/filters.py",
    "redzone_check/stack.py",
    "redzone_check/stackstate.py",
    "redzone_check/digest.py",
    "redzone_check/lite.py",
]
_BUILDS = {"bdist_wheel", "build", "build_ext", "install"}


def _extensions() -> list[Any]:
    choice = os.environ.get("REDZONE_CHECK_COMPILE", "auto")
    if choice == "0" or not _BUILDS.intersection(sys.argv):
        return []  # metadata, sdist or editable builds
    extensions: list[Any] = [_decoder()]
    try:
        from mypyc.build import mypycify
    except ImportError:
        if choice == "1":
            raise
    else:
        extensions[:0] = mypycify(COMPILED, opt_level="3", debug_level="0")
    for extension in extensions:
        extension.optional = choice != "1"
    return extensions


def _decoder() -> Extension:
    """capstone's decodings read in C; it includes the headers the capstone package ships."""
    try:
        import capstone
    except ImportError:
        include = []
    else:
        include = [str(Path(capstone.__file__).parent / "include")]
    return Extension(
        "redzone_check._decoder",
        ["redzone_check/_decoder.c", "redzone_check/_stackflow.c", "redzone_check/_function.c"],
        include_dirs=include,
        depends=["redzone_check/_capstone.h", "redzone_check/_stackflow.h"],
    )


def _drop_stale_extensions(compiled: set[str]) -> None:
    """Delete the compiled modules an earlier build left in build/ that this build does not compile.

    setuptools packages build/lib* whole, and an extension module shadows its Python source on
    import: once a module leaves COMPILED, `pip install .` in a checkout that was built before would
    install its old compiled code.
    """
    for lib in Path(__file__).resolve().parent.glob("build/lib*"):
        for extension in lib.glob("redzone_check/**/*.so"):
            if extension.relative_to(lib).as_posix().split(".", 1)[0] not in compiled:
                extension.unlink()


extensions = _extensions()
if _BUILDS.intersection(sys.argv):
    _drop_stale_extensions({extension.name.replace(".", "/") for extension in extensions})
setup(ext_modules=extensions)
