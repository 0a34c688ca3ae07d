"""Scan options: what the CLI, the config file and the hooks hand to the engine."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

PLATFORMS: dict[str, str] = {
    "bare-metal": "interrupts and exceptions push their frame onto the current stack",
    "linux-kernel": "the kernel is built with -mno-red-zone; interrupts use the current kernel stack",
    "minios": "Mini-OS/Xen (MirageOS): event and exception frames land on the current stack",
    "uefi": "UEFI firmware and loaders take interrupts on the current stack",
    "solo5": "Solo5 runs the unikernel as a process or with separate interrupt stacks",
    "userspace": "signals are delivered below the red zone, so it is safe",
}
# Where interrupts use another stack, RZ001 is a note; RZ002 stays an error everywhere.
RED_ZONE_SAFE_PLATFORMS = frozenset({"solo5", "userspace"})


def default_jobs() -> int:
    # os.cpu_count() is the machine's count, not what this process may use.
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class ScanOptions:
    source_root: str = "."
    path_maps: tuple[tuple[str, str], ...] = ()
    platform: str = "bare-metal"
    require_no_red_zone_flag: bool = False  # RZ003
    jobs: int = field(default_factory=default_jobs)
    use_cache: bool = True
    cache_dir: str | None = None
    excludes: tuple[str, ...] = ()  # globs on repository-relative paths
    prefilter: bool = True  # sound byte-level prefilter; off only to prove it changes nothing
    progress: bool = False
