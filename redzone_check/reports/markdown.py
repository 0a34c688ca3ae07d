"""`--format markdown`: the GitHub job summary, with a table, disassembly and stack diagrams.

GitHub rejects a job summary above 1 MiB, so the report is assembled against a byte budget: the
headline and the counts always fit, then table rows, per-finding detail, suppressed findings and input
problems are added while they fit, and what was left out is counted at the end.
"""

from __future__ import annotations

from collections.abc import Iterable

from redzone_check.model import LEVELS, RED_ZONE_BYTES, Finding, Instruction, ScanResult, binary_location
from redzone_check.reports import ReportContext
from redzone_check.reports.escape import fence, markdown, plain_message, printable
from redzone_check.rules import RULES

DEFAULT_MAX_BYTES = 1_000_000
MAX_INSTRUCTIONS = 16  # per finding; the JSON and SARIF reports list them all
MAX_DIAGRAM_ROWS = 24
_RESERVE = 1_000  # kept free for the closing "left out" line
_ICON = {"error": "🔴", "warning": "🟠", "note": "🔵"}


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _hex(offset: int) -> str:
    return f"%rsp{'-' if offset < 0 else '+'}0x{abs(offset):x}"


def _source(finding: Finding) -> str:
    return f"{finding.source.file}:{finding.source.line}" if finding.source else "—"


def _flags(finding: Finding) -> str:
    build = finding.build
    if build is None:
        return "not recorded"
    if not build.recorded:
        return f"{build.compiler or 'unknown compiler'}, flags not recorded"
    if build.missing:
        return f"{build.compiler or 'unknown compiler'}, missing {' '.join(build.missing)}"
    return f"{build.compiler or 'unknown compiler'}, {' '.join(build.flags) or 'no flags'}"


def _row(finding: Finding) -> str:
    rule = RULES.get(finding.rule)
    rule_cell = f"[{finding.rule}]({rule.help_uri})" if rule else markdown(finding.rule)
    cells = (finding.function, _source(finding), finding.location, _flags(finding))
    return (
        f"| {_ICON[finding.level]} {finding.level} | {rule_cell} | "
        + " | ".join(map(markdown, cells))
        + " |\n"
    )


def _disassembly(finding: Finding) -> str:
    shown = finding.instructions[:MAX_INSTRUCTIONS]
    width = max((len(printable(i.text)) for i in shown), default=0)
    lines = [f"{printable(finding.symbol)}:  # {printable(finding.section)}+0x{finding.section_offset:x}"]
    for ins in shown:
        what = "address of" if ins.access == "address" else f"{ins.access} {ins.size} bytes at"
        benign = ", benign" if ins.benign else ""
        text = f"{printable(ins.text):<{width}}"
        lines.append(f"  +0x{ins.function_offset:<5x} {text}  ◀ {what} {_hex(ins.rsp_offset)}{benign}")
    if len(finding.instructions) > len(shown):
        lines.append(f"  … {_plural(len(finding.instructions) - len(shown), 'more instruction')}")
    return fence("\n".join(lines), "text")


def _slot_notes(instructions: Iterable[Instruction]) -> dict[int, list[str]]:
    notes: dict[int, list[str]] = {}
    for ins in instructions:
        what = "addr" if ins.access == "address" else f"{ins.access} {ins.size}"
        notes.setdefault((-ins.rsp_offset + 7) // 8, []).append(f"{what} @+0x{ins.function_offset:x}")
    return notes


def stack_diagram(instructions: tuple[Instruction, ...]) -> str:
    """8-byte slots below %rsp, one character per byte (lowest address first), higher slots on top."""
    touched: set[int] = set()  # byte offsets from %rsp, negative
    for ins in instructions:
        touched.update(range(ins.rsp_offset, min(ins.rsp_offset + max(ins.size, 1), 0)))
    notes = _slot_notes(instructions)
    slots = sorted({(-b + 7) // 8 for b in touched} | set(notes))  # slot k holds bytes -8k .. -8k+7
    edge = RED_ZONE_BYTES // 8
    gap = f"{'':>10} ┆   ⋮    ┆"
    lines = [f"{'%rsp':>10} ┌────────┐ ◀ current stack pointer"]
    previous, edge_drawn = 0, False
    for rows, k in enumerate(slots):
        if k > edge and not edge_drawn:
            lines += [gap] if edge > previous else []
            lines.append(f"{_hex(-RED_ZONE_BYTES):>10} ├────────┤ ◀ end of the 128-byte red zone")
            previous, edge_drawn = edge, True
        if rows == MAX_DIAGRAM_ROWS:
            lines.append(f"{gap} … {_plural(len(slots) - rows, 'more slot')}")
            break
        lines += [gap] if k > previous + 1 else []
        fill = "".join("▓" if -8 * k + i in touched else "·" for i in range(8))
        beyond = " (beyond the red zone)" if k > edge else ""
        lines.append(f"{_hex(-8 * k):>10} │{fill}│ {', '.join(notes.get(k, []))}{beyond}".rstrip())
        previous = k
    if not edge_drawn:
        lines += [gap] if edge > previous else []
        lines.append(f"{_hex(-RED_ZONE_BYTES):>10} └────────┘ ◀ end of the 128-byte red zone")
    return fence("\n".join(lines), "text")


def _detail(number: int, finding: Finding) -> str:
    rule = RULES.get(finding.rule)
    title = f"{finding.rule} {rule.name if rule else ''}".strip()
    parts = [
        f"### {number}. {markdown(finding.function)} · {title} · {_ICON[finding.level]} {finding.level}\n\n",
        f"{markdown(plain_message(finding.function, finding.message))}\n\n",
        f"- Source: {markdown(_source(finding))}\n",
        f"- Object: {markdown(finding.location)}, section {markdown(finding.section)}"
        f" +0x{finding.section_offset:x} (function +0x{finding.function_offset:x})\n",
        f"- Symbol: {markdown(finding.symbol)}"
        + (f" (aliases: {', '.join(map(markdown, finding.aliases))})" if finding.aliases else "")
        + f", {markdown(finding.language)}\n",
        f"- Build: {markdown(_flags(finding))}\n",
    ]
    if finding.build is not None and finding.build.note:
        parts.append(f"- Note: {markdown(finding.build.note)}\n")
    if finding.build_location is not None:
        loc = finding.build_location
        where = markdown(f"{loc.file}:{loc.line}")
        parts.append(f"- Flags set in {where} ({markdown(loc.kind)}): {markdown(loc.text)}\n")
    for reach in finding.reached_from:
        where = f" at {reach.file}:{reach.line}" if reach.file else ""
        via = f" via {' → '.join(reach.via)}" if reach.via else ""
        parts.append(
            f"- Reached from {markdown(f'{reach.language} {reach.kind} {reach.function}{where}{via}')}\n"
        )
    if rule is not None:
        parts.append(f"- Fix: see [{finding.rule}]({rule.help_uri})\n")
    if finding.instructions:
        parts += ["\n", _disassembly(finding), "\n", stack_diagram(finding.instructions)]
    return "".join(parts) + "\n"


class _Budget:
    def __init__(self, limit: int) -> None:
        self.limit = limit - _RESERVE
        self.parts: list[str] = []
        self.size = 0
        self.left_out: dict[str, int] = {}

    def add(self, text: str, what: str | None = None) -> bool:
        size = len(text.encode("utf-8", "replace"))
        if self.size + size > self.limit or (what and self.left_out.get(what)):
            if what:
                self.left_out[what] = self.left_out.get(what, 0) + 1
            return False
        self.parts.append(text)
        self.size += size
        return True


def _headline(result: ScanResult) -> str:
    active, s = result.active, result.summary
    by_level = [f"{_ICON[lv]} {_plural(sum(f.level == lv for f in active), lv)}" for lv in LEVELS]
    unknown = f" ({s.functions_unknown} with unknown stack state)" if s.functions_unknown else ""
    return (
        f"## redzone-check: {_plural(len(active), 'finding')}\n\n"
        f"{' · '.join(by_level)} · {len(result.findings) - len(active)} suppressed"
        f" · {_plural(len(result.errors), 'input error')} · platform {markdown(result.platform)}\n\n"
        f"{_plural(s.functions, 'function')} analysed in {_plural(s.objects, 'object')}"
        f" from {_plural(s.inputs, 'input')}{unknown}; {s.skipped} skipped,"
        f" {s.not_analysable} not analysable, {s.not_applicable} not applicable.\n\n"
    )


def render(result: ScanResult, ctx: ReportContext) -> str:
    budget = _Budget(ctx.max_bytes or DEFAULT_MAX_BYTES)
    budget.add(_headline(result))
    if result.errors:
        budget.add("### Input errors\n\n")
        for problem in result.errors:
            where = binary_location(problem.path, problem.member)
            budget.add(f"- {markdown(where)}: {markdown(problem.message)}\n", "input errors")
        budget.add("\n")
    unanalysable = [s for s in result.skipped if s.kind == "not-analysable"]
    if unanalysable:
        budget.add("### Not analysable (not known to be clean)\n\n")
        for item in unanalysable:
            where = binary_location(item.path, item.member)
            budget.add(f"- {markdown(where)}: {markdown(item.reason)}\n", "not-analysable entries")
        budget.add("\n")
    active = result.active
    if not active:
        budget.add("No red-zone use found in the analysed code.\n\n")
    else:
        budget.add("| Level | Rule | Function | Source | Object | Flags |\n|---|---|---|---|---|---|\n")
        for finding in active:
            budget.add(_row(finding), "table rows")
        budget.add("\n")
        for number, finding in enumerate(active, 1):
            budget.add(_detail(number, finding), "finding details")
    suppressed = [f for f in result.findings if f.suppressed is not None]
    if suppressed:
        budget.add(
            f"### Suppressed ({len(suppressed)})\n\n| Rule | Function | Where | Reason |\n|---|---|---|---|\n"
        )
        for finding in suppressed:
            where = _source(finding) if finding.source else finding.location
            cells = (finding.rule, finding.function, where, finding.suppressed or "")
            budget.add("| " + " | ".join(map(markdown, cells)) + " |\n", "suppressed findings")
        budget.add("\n")
    if budget.left_out:
        counts = ", ".join(f"{n} {what}" for what, n in budget.left_out.items())
        budget.parts.append(
            f"**Left out to stay under GitHub's job summary size limit: {counts}.**"
            " The JSON and SARIF reports hold every finding.\n"
        )
    return "".join(budget.parts)
