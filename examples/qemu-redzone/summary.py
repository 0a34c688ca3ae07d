"""Print the demo's side-by-side table from the serial logs and the checker's JSON.

Exit status 0 when the checker's verdict matches what each kernel did under QEMU.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

VARIANTS = (("red-zone", "(gcc default)"), ("no-red-zone", "-mno-red-zone"))
WORKLOAD = "checksum"


def serial_counts(log: str) -> dict[str, int]:
    return {key: int(value) for key, value in re.findall(r"^([a-z ]+): (\d+)\s*$", log, re.MULTILINE)}


def flagged(doc: dict[str, Any]) -> list[str]:
    return sorted(
        f"{f['function']} ({f['rule']})"
        for f in doc["findings"]
        if f["suppressed"] is None and f["level"] == "error"
    )


def main(argv: list[str]) -> int:
    build = Path(argv[1])
    rows: list[tuple[str, ...]] = [("", *(name for name, _ in VARIANTS))]
    columns = []
    for name, _ in VARIANTS:
        counts = serial_counts((build / name / "serial.log").read_text(errors="replace"))
        doc = json.loads((build / name / "findings.json").read_text())
        columns.append((counts, flagged(doc), doc["summary"]["functions"]))
    rows.append(("compile flags", *(flags for _, flags in VARIANTS)))
    for label, key in (
        ("checksum calls", "iterations"),
        ("timer interrupts", "timer interrupts"),
        ("wrong results", "mismatches"),
    ):
        rows.append((label, *(str(counts.get(key, "?")) for counts, _, _ in columns)))
    rows.append(("functions scanned", *(str(n) for _, _, n in columns)))
    rows.append(("functions flagged", *(", ".join(names) or "none" for _, names, _ in columns)))
    width = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, width, strict=True)).rstrip())

    (red, red_flags, _), (clean, clean_flags, _) = columns
    predicted = (
        red.get("mismatches", 0) > 0
        and any(name.startswith(f"{WORKLOAD} (RZ001") for name in red_flags)
        and clean.get("mismatches") == 0
        and not clean_flags
    )
    print(f"redzone-check predicted which build breaks: {'yes' if predicted else 'NO'}")
    return 0 if predicted else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
