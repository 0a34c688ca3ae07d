"""The QEMU demo: a red-zone kernel really computes wrong results, and the checker predicts it.

examples/qemu-redzone/demo.sh builds one kernel twice (with and without -mno-red-zone), boots both
under QEMU with a 100 kHz local APIC timer on the current stack and `-icount` (so the counts below
are deterministic), and scans both kernels with `redzone-check`. Observed with gcc 12.2 and QEMU 7.2:
16892 timer interrupts in 200000 checksum calls gave 16399 wrong results (97% of the interrupts
corrupted a result); without the red zone 16933 interrupts gave 0 wrong results.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import SCHEMA, require_tool, run

pytestmark = pytest.mark.slow

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "qemu-redzone"
ITERATIONS = 200000
NEGATIVE_RSP = re.compile(r"-0x[0-9a-f]+\(%rsp")


@dataclass(frozen=True)
class Demo:
    status: int
    stdout: str
    build: Path

    def serial(self, variant: str) -> dict[str, int]:
        log = (self.build / variant / "serial.log").read_text(errors="replace")
        return {k: int(v) for k, v in re.findall(r"^([a-z ]+): (\d+)\s*$", log, re.MULTILINE)}

    def findings(self, variant: str) -> dict[str, Any]:
        doc: dict[str, Any] = json.loads((self.build / variant / "findings.json").read_text())
        return doc


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Demo:
    for tool in ("gcc", "ld", "objcopy", "objdump", "make", "qemu-system-x86_64", "redzone-check"):
        require_tool(tool)
    build = tmp_path_factory.mktemp("qemu-demo")
    proc = subprocess.run(
        [str(EXAMPLE / "demo.sh")],
        env={**os.environ, "BUILD": str(build), "ITERATIONS": str(ITERATIONS)},
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode in (0, 1), f"demo failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return Demo(proc.returncode, proc.stdout, build)


def objdump_function(kernel: Path, name: str) -> dict[int, str]:
    """Address -> instruction text of one function, from binutils (the independent oracle)."""
    out = run(["objdump", "-d", "--no-show-raw-insn", f"--disassemble={name}", kernel]).stdout
    lines = re.findall(r"^\s+([0-9a-f]+):\s+(.+)$", out, re.MULTILINE)
    return {int(addr, 16): text for addr, text in lines}


def test_red_zone_kernel_computes_wrong_checksums(demo: Demo) -> None:
    counts = demo.serial("red-zone")
    assert counts["iterations"] == ITERATIONS
    assert counts["timer interrupts"] > 1000
    assert counts["mismatches"] > 0


def test_no_red_zone_kernel_never_goes_wrong_under_the_same_interrupts(demo: Demo) -> None:
    counts = demo.serial("no-red-zone")
    assert counts["iterations"] == ITERATIONS
    assert counts["timer interrupts"] > 1000
    assert counts["mismatches"] == 0


def test_both_scans_match_the_committed_schema(demo: Demo) -> None:
    import jsonschema

    schema = json.loads(SCHEMA.read_text())
    for variant in ("red-zone", "no-red-zone"):
        jsonschema.validate(demo.findings(variant), schema)


def test_checker_flags_exactly_the_checksum_function_in_the_red_zone_kernel(demo: Demo) -> None:
    doc = demo.findings("red-zone")
    flagged = {(f["function"], f["rule"], f["level"]) for f in doc["findings"]}
    assert flagged == {("checksum", "RZ001", "error")}
    (finding,) = doc["findings"]
    assert finding["source"]["file"] == "examples/qemu-redzone/checksum.c"
    assert "-mno-red-zone" in finding["build"]["missing"]
    assert {i["access"] for i in finding["instructions"]} >= {"read", "write"}


def test_checker_lists_every_instruction_objdump_shows_below_rsp(demo: Demo) -> None:
    kernel = demo.build / "red-zone" / "kernel.elf"
    (finding,) = demo.findings("red-zone")["findings"]
    disassembly = objdump_function(kernel, "checksum")
    # lea computes an address without touching memory, so only loads and stores count.
    below_rsp = {
        addr for addr, text in disassembly.items() if NEGATIVE_RSP.search(text) and not text.startswith("lea")
    }
    start = min(disassembly)
    reported = {start + i["function_offset"] for i in finding["instructions"]}
    assert below_rsp, "gcc no longer puts checksum's locals in the red zone"
    assert reported <= set(disassembly), "reported offsets must be instruction boundaries"
    assert below_rsp <= reported


def test_checker_flags_nothing_in_the_no_red_zone_kernel(demo: Demo) -> None:
    doc = demo.findings("no-red-zone")
    assert doc["findings"] == []
    assert doc["errors"] == []
    assert doc["summary"]["functions"] >= 8  # an honest zero: the kernel's functions were analysed


def test_demo_prints_both_builds_side_by_side_and_confirms_the_prediction(demo: Demo) -> None:
    red, clean = demo.serial("red-zone"), demo.serial("no-red-zone")
    wrong = re.search(r"^wrong results\s+(\d+)\s+(\d+)$", demo.stdout, re.MULTILINE)
    assert wrong is not None, demo.stdout
    assert (int(wrong[1]), int(wrong[2])) == (red["mismatches"], clean["mismatches"])
    assert re.search(r"^functions flagged\s+checksum \(RZ001\)\s+none$", demo.stdout, re.MULTILINE)
    assert demo.stdout.rstrip().endswith("redzone-check predicted which build breaks: yes")
    assert demo.status == 0


def test_icount_makes_the_corruption_count_reproducible(demo: Demo) -> None:
    kernel = demo.build / "red-zone" / "kernel.elf32"
    proc = subprocess.run(
        ["qemu-system-x86_64", "-accel", "tcg", "-machine", "pc", "-m", "32M", "-display", "none",
         "-no-reboot", "-nic", "none", "-monitor", "none", "-serial", "stdio",
         "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04", "-icount", "shift=0", "-kernel", str(kernel)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 3  # isa-debug-exit: the kernel exited with 1, "mismatches found"
    assert proc.stdout == (demo.build / "red-zone" / "serial.log").read_text()
