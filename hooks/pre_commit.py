"""The pre-commit entry point: hands the hook's arguments to the `redzone-check` CLI.

pre-commit appends the staged file names to the hook's `args`; the `redzone-check-build` hook
passes no file names, so its `args` must name the build directory. Everything else (what is
ELF, what is a finding, how it is printed, the exit status) is the CLI's business.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import NoReturn

NO_PATHS = (
    "redzone-check-pre-commit: nothing to check. The redzone-check-build hook needs the build "
    "directory in its args, for example:\n"
    "    - id: redzone-check-build\n"
    "      args: [_build/default]"
)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        print(NO_PATHS, file=sys.stderr)
        return 2
    # Imported here, not at module level: a hook run on one small object must stay well under
    # a second, and `--help` or the error above should not pay for the engine's imports.
    from redzone_check.cli import main as cli_main

    return cli_main(args)


def run() -> NoReturn:
    """The hook's console script: `main`, then leave as the CLI does (see `cli.exit_now`)."""
    status = main()
    from redzone_check.cli import exit_now

    exit_now(status)


if __name__ == "__main__":
    run()
