"""The compiler as oracle: third-party C code built with and without -mno-red-zone.

Every function whose normalised disassembly changes when only -mno-red-zone is added, and which has a
%rsp/%rbp memory operand, must be flagged in the red-zone build; the -mno-red-zone build must give no
finding at all. The code comes from PyPI sdists at test time (tests/sources.py); the disassembly and
its normalisation come from objdump (tests/disasm_normalize.py), never from the engine.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import require_tool, scan_json
from disasm_normalize import Function, Key, Verdict, below_rsp_accesses, by_key, first_difference, verdict
from sources import SDISTS, BuildRequest, build

LEVELS: tuple[tuple[str, ...], ...] = (
    ("-O0",),
    ("-O1",),
    ("-O2",),
    ("-O3",),
    ("-Os",),
    ("-O2", "-fno-omit-frame-pointer"),
    ("-O2", "-ffunction-sections"),
)
# gcc's interprocedural register allocation makes a caller's code depend on the registers its callees
# use, which the red zone changes; clang does not enable such a pass.
EXTRA = {"gcc": ("-fno-ipa-ra",), "clang": ()}
NO_RED_ZONE = ("-mno-red-zone",)


@dataclass(frozen=True)
class Build:
    cc: str
    level: tuple[str, ...]

    @property
    def id(self) -> str:
        return f"{self.cc}{''.join(self.level)}"

    def requests(self, red_zone: bool) -> list[BuildRequest]:
        flags = (*self.level, *EXTRA[self.cc], *(() if red_zone else NO_RED_ZONE))
        return [BuildRequest(sdist, self.cc, flags) for sdist in SDISTS]


BUILDS = tuple(Build(cc, level) for cc in ("gcc", "clang") for level in LEVELS)

# (build id, object, function) -> why the oracle's "differs" does not mean "uses the red zone".
# None so far: with -fno-ipa-ra every difference that touches the stack is the red zone.
EXCEPTIONS: dict[tuple[str, str, str], str] = {}

# Engine errors found by this suite, kept as xfail(strict) tests so that they flip when fixed.
# (build id, object, function) -> what the compiler did and what the engine gets wrong.
KNOWN_MISSES: dict[tuple[str, str, str], str] = {}
# Engine errors this suite found and that are fixed: each stays a test of its own.
FIXED_MISSES: dict[tuple[str, str, str], str] = {
    ("gcc-Os", "ghash_portable.o", "ghash_portable"): (
        "was missed: `lea -0x18(%rsp),%r13` then `mov %dl,-0x1(%rax,%r13,1)` (the %rsp-derived register "
        "is the *index*, %rax counts 1..16) and `mov %r13,%rbp` then `movzbl 0x0(%rbp),%r12d`, "
        "`inc %rbp` in a loop"
    ),
    ("clang-O2-fno-omit-frame-pointer", "ghash_portable.o", "ghash_portable"): (
        "was missed: `push %rbp; mov %rsp,%rbp; push %r14; push %rbx` and no sub, then in a loop block "
        "reached only by a backward jump (entry `jmp 204`, block at +0xa0): "
        "`movapd %xmm5,-0x30(%rbp)` = %rsp-0x20"
    ),
}
_ARC2 = (
    "false positive: an index assumed >= 0 is the key length, 5..128 after `lea -0x5(%rbx),%rcx; "
    "cmp $0x7b,%rcx; ja`, so `-0x1(%rsp,%rbp,1)` (gcc) / `-1(%rsp,%rax)` (clang) is at or above %rsp"
)
_SHA256 = (
    "was a false positive: message-schedule loop `mov $0x10,%eax` ... `add $0x1,%rax; cmp $0x40,%rax; "
    "jne`, so %rax is 16..63 and `-0x2c(%rsp,%rax,4)` is at least %rsp+0x14; the engine assumed only "
    "%rax >= 0"
)
# Flagged in builds with -mno-red-zone (the compiler's word that no red zone is used).
FALSE_POSITIVES: dict[tuple[str, str, str], str] = {
    **{
        (bid, "ARC2.o", "ARC2_start_operation"): _ARC2
        for bid in (
            "gcc-O2",
            "gcc-O3",
            "gcc-Os",
            "gcc-O2-fno-omit-frame-pointer",
            "gcc-O2-ffunction-sections",
            "clang-O1",
        )
    },
}
# False positives this suite found and that are fixed (constant lower bounds of index registers).
FIXED_FALSE_POSITIVES: dict[tuple[str, str, str], str] = {
    **{
        (bid, "SHA256.o", "sha_compress"): _SHA256
        for bid in (
            "clang-O1",
            "clang-O2",
            "clang-O3",
            "clang-Os",
            "clang-O2-fno-omit-frame-pointer",
            "clang-O2-ffunction-sections",
        )
    },
}


@dataclass
class Outcome:
    red_zone: dict[Key, Function]
    no_red_zone: dict[Key, Function]
    verdict: Verdict
    flagged: set[Key]  # every name (symbol and aliases) of every finding in the red-zone build
    findings: list[dict[str, Any]]
    clean_doc: dict[str, Any]
    clean_status: int

    def is_flagged(self, key: Key) -> bool:
        return any((key[0], name) in self.flagged for name in self.red_zone[key].names)

    def clean_findings(self, build_id: str) -> list[dict[str, Any]]:
        """Findings in the -mno-red-zone build, less the listed false positives."""
        return [
            f
            for f in self.clean_doc["findings"]
            if (build_id, Path(f["path"]).name, f["symbol"]) not in FALSE_POSITIVES
        ]


def _objects(directories: Iterable[Path]) -> list[Path]:
    return sorted(obj for d in directories for obj in d.glob("*.o"))


@pytest.fixture(scope="session")
def built() -> dict[BuildRequest, Path]:
    for tool in ("gcc", "clang", "objdump"):
        require_tool(tool)
    return build([req for b in BUILDS for rz in (True, False) for req in b.requests(rz)])


@pytest.fixture(scope="session")
def outcome(built: dict[BuildRequest, Path]) -> Callable[[Build], Outcome]:
    cache: dict[Build, Outcome] = {}

    def get(b: Build) -> Outcome:
        if b not in cache:
            rz_objs = _objects(built[r] for r in b.requests(True))
            norz_objs = _objects(built[r] for r in b.requests(False))
            rz, norz = by_key(rz_objs), by_key(norz_objs)
            _, doc = scan_json(["--jobs", "2", *rz_objs])
            assert not doc["errors"], doc["errors"]
            flagged = {
                (Path(f["path"]).name, n) for f in doc["findings"] for n in (f["symbol"], *f["aliases"])
            }
            status, clean = scan_json(["--jobs", "2", *norz_objs])
            cache[b] = Outcome(rz, norz, verdict(rz, norz), flagged, doc["findings"], clean, status)
        return cache[b]

    return get


def _describe(b: Build, o: Outcome, keys: Iterable[Key]) -> str:
    parts = []
    for obj, fn in sorted(keys):
        diff = first_difference(o.red_zone[obj, fn], o.no_red_zone[obj, fn])
        parts.append(f"  {b.cc} {' '.join(b.level)}: {obj}:{fn}\n{diff}")
    return "\n".join(parts)


@pytest.mark.parametrize("b", BUILDS, ids=[b.id for b in BUILDS])
def test_every_function_the_red_zone_changed_is_flagged(
    b: Build, outcome: Callable[[Build], Outcome]
) -> None:
    o = outcome(b)
    listed = {(obj, fn) for (bid, obj, fn) in (*EXCEPTIONS, *KNOWN_MISSES) if bid == b.id}
    missed = [k for k in o.verdict.differing if not o.is_flagged(k) and k not in listed]
    assert not missed, f"{len(missed)} functions changed by the red zone are not flagged:\n" + _describe(
        b, o, missed
    )


@pytest.mark.parametrize("b", BUILDS, ids=[b.id for b in BUILDS])
def test_nothing_is_flagged_when_built_with_mno_red_zone(
    b: Build, outcome: Callable[[Build], Outcome]
) -> None:
    o = outcome(b)
    found = [
        (Path(f["path"]).name, f["symbol"], f["rule"], [i["text"] for i in f["instructions"]][:3])
        for f in o.clean_findings(b.id)
    ]
    assert not found, f"{b.id} -mno-red-zone: {found}"
    assert o.clean_doc["errors"] == []
    assert o.clean_status == (1 if len(o.clean_doc["findings"]) else 0)
    assert o.clean_doc["summary"]["functions"] >= len(o.no_red_zone) // 2


@pytest.mark.parametrize("b", BUILDS, ids=[b.id for b in BUILDS])
def test_flagged_functions_are_ones_the_red_zone_changed(
    b: Build, outcome: Callable[[Build], Outcome]
) -> None:
    """Code identical to the -mno-red-zone build cannot use the red zone."""
    o = outcome(b)
    wrong = sorted(k for k in o.verdict.identical if o.is_flagged(k) and (b.id, *k) not in FALSE_POSITIVES)
    assert not wrong, f"{b.id}: flagged although identical without the red zone: {wrong}"


@pytest.mark.parametrize("b", BUILDS, ids=[b.id for b in BUILDS])
def test_listed_exceptions_are_still_needed(b: Build, outcome: Callable[[Build], Outcome]) -> None:
    o = outcome(b)
    for (bid, obj, fn), reason in EXCEPTIONS.items():
        if bid == b.id:
            assert (obj, fn) in o.verdict.differing, f"stale exception {obj}:{fn} ({reason})"
            assert not o.is_flagged((obj, fn)), f"exception {obj}:{fn} is flagged now ({reason})"


@pytest.mark.parametrize(
    ("bid", "obj", "fn"),
    [pytest.param(*k, marks=pytest.mark.xfail(strict=True, reason=r)) for k, r in KNOWN_MISSES.items()],
)
def test_known_engine_miss(bid: str, obj: str, fn: str, outcome: Callable[[Build], Outcome]) -> None:
    o = outcome(next(b for b in BUILDS if b.id == bid))
    assert (obj, fn) in o.verdict.differing
    assert o.is_flagged((obj, fn))


@pytest.mark.parametrize(("bid", "obj", "fn"), list(FIXED_MISSES))
def test_fixed_engine_miss_stays_fixed(
    bid: str, obj: str, fn: str, outcome: Callable[[Build], Outcome]
) -> None:
    o = outcome(next(b for b in BUILDS if b.id == bid))
    assert (obj, fn) in o.verdict.differing
    assert o.is_flagged((obj, fn))


@pytest.mark.parametrize(
    ("bid", "obj", "fn"),
    [pytest.param(*k, marks=pytest.mark.xfail(strict=True, reason=r)) for k, r in FALSE_POSITIVES.items()],
)
def test_known_false_positive(bid: str, obj: str, fn: str, outcome: Callable[[Build], Outcome]) -> None:
    o = outcome(next(b for b in BUILDS if b.id == bid))
    assert (obj, fn) in o.no_red_zone
    assert fn not in {f["symbol"] for f in o.clean_doc["findings"] if Path(f["path"]).name == obj}


@pytest.mark.parametrize(("bid", "obj", "fn"), list(FIXED_FALSE_POSITIVES))
def test_fixed_false_positive_stays_fixed(
    bid: str, obj: str, fn: str, outcome: Callable[[Build], Outcome]
) -> None:
    o = outcome(next(b for b in BUILDS if b.id == bid))
    assert (obj, fn) in o.no_red_zone
    assert fn not in {f["symbol"] for f in o.clean_doc["findings"] if Path(f["path"]).name == obj}


@pytest.mark.parametrize("b", BUILDS, ids=[b.id for b in BUILDS])
def test_oracle_pairs_every_function_without_noise(b: Build, outcome: Callable[[Build], Outcome]) -> None:
    """Every function exists in both builds, and normalisation leaves no difference that spares the stack
    (addresses, relocation addends, branch targets and padding are all symbolised away)."""
    o = outcome(b)
    assert not o.verdict.unmatched
    assert not o.verdict.differing_without_stack, _describe(b, o, o.verdict.differing_without_stack)
    assert o.verdict.functions > 100
    # The two oracles agree: with -mno-red-zone the compiler never accesses memory certainly below %rsp.
    assert not [k for k, f in o.no_red_zone.items() if below_rsp_accesses(f)]


@pytest.mark.parametrize("cc", ["gcc", "clang"])
def test_oracle_sees_the_red_zone_in_md5_compress(cc: str, outcome: Callable[[Build], Outcome]) -> None:
    """A hash compression function at -O2 is the textbook red-zone user."""
    assert ("MD5.o", "md5_compress") in outcome(Build(cc, ("-O2",))).verdict.differing
