"""Build the dune project next to this file, once per test session, in a temporary copy.

`src/mystub.c`'s `helper_sum` and `util.c`'s `checksum_fold` keep locals in the red zone
at gcc -O2; `Cipher_block.encrypt` reaches both through the noalloc `external my_sum`
(stub `mystub`), and `Cipher_block.table` calls `mystub_alloc` through `caml_c_call`.
`bin/main.exe` links them all. The "fixed" variant adds -mno-red-zone to the stanza's (flags ...).
"""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path

from conftest import dune_build, require_tool

HERE = Path(__file__).resolve().parent
RED_FLAGS = "(flags :standard -O2 -g)"
FIXED_FLAGS = "(flags :standard -O2 -g -mno-red-zone)"


@functools.cache
def built_project(variant: str = "red") -> Path:
    for tool in ("dune", "ocamlopt", "gcc"):
        require_tool(tool)
    scratch = Path(tempfile.mkdtemp(prefix=f"rzc-dune-{variant}-"))
    atexit.register(shutil.rmtree, scratch, True)
    project = scratch / "proj"
    shutil.copytree(HERE, project, ignore=shutil.ignore_patterns("*.py", "__pycache__", "_build"))
    if variant == "fixed":
        dune = project / "src" / "dune"
        dune.write_text(dune.read_text().replace(RED_FLAGS, FIXED_FLAGS))
    return dune_build(project, scratch / "home")


def objects(project: Path) -> dict[str, Path]:
    """The build's objects by short name: mystub, util, cipher_block, native."""
    src = project / "_build" / "default" / "src"
    ocaml = src / ".cipher.objs" / "native"
    return {
        "mystub": src / "mystub.o",
        "util": src / "util.o",
        "cipher_block": ocaml / "cipher__Cipher_block.o",
        "native": ocaml / "cipher__Native.o",
        "stubs_archive": src / "libcipher_stubs.a",
        "ocaml_archive": src / "cipher.a",
        "executable": project / "_build" / "default" / "bin" / "main.exe",
    }
