"""`--format github`: workflow commands that GitHub Actions turns into annotations.

Every value comes from object files, so everything is escaped the way @actions/core escapes it: a
symbol containing `::`, a newline or `%` stays inside its own command.
"""

from __future__ import annotations

from redzone_check.model import LEVELS, Finding, ScanResult, binary_location
from redzone_check.reports import ReportContext
from redzone_check.reports.escape import github_message, github_property, plain_message, printable
from redzone_check.rules import RULES

COMMANDS = {"error": "error", "warning": "warning", "note": "notice"}


def command(kind: str, message: str, **properties: str | int | None) -> str:
    props = ",".join(
        f"{key}={github_property(str(value))}" for key, value in properties.items() if value is not None
    )
    return f"::{kind}{' ' + props if props else ''}::{github_message(message)}"


def _detail(finding: Finding) -> str:
    lines = [printable(plain_message(finding.function, finding.message))]
    if finding.source is not None:
        lines.append(f"object: {printable(finding.location)} {printable(finding.section)}")
    for ins in finding.instructions:
        sign = "-" if ins.rsp_offset < 0 else "+"
        what = "address" if ins.access == "address" else f"{ins.access} {ins.size}"
        where = f"%rsp{sign}0x{abs(ins.rsp_offset):x}"
        lines.append(f"  +0x{ins.function_offset:x}  {printable(ins.text)}  ({what} at {where})")
    if finding.build is not None:
        if finding.build.missing:
            lines.append(
                f"built by {finding.build.compiler or '?'} without {' '.join(finding.build.missing)}"
            )
        elif not finding.build.recorded and finding.build.note:
            lines.append(printable(finding.build.note))
    lines.append(f"help: {RULES[finding.rule].help_uri}" if finding.rule in RULES else "")
    return "\n".join(line for line in lines if line)


def annotation(finding: Finding) -> str:
    title = f"{finding.rule} {printable(finding.function)}"
    if finding.source is not None:
        return command(
            COMMANDS[finding.level],
            _detail(finding),
            file=printable(finding.source.file),
            line=finding.source.line,
            title=title,
        )
    where = f" ({printable(finding.member)})" if finding.member else ""
    return command(
        COMMANDS[finding.level], _detail(finding), file=printable(finding.path), title=title + where
    )


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _summary(result: ScanResult) -> str:
    active, s = result.active, result.summary
    counts = ", ".join(_plural(n, lv) for lv in LEVELS if (n := sum(f.level == lv for f in active)))
    text = f"redzone-check: {_plural(len(active), 'finding')}" + (f" ({counts})" if counts else "")
    text += f", {len(result.findings) - len(active)} suppressed, {_plural(len(result.errors), 'input error')}"
    text += f"; {_plural(s.functions, 'function')} in {_plural(s.objects, 'object')} analysed."
    text += (
        " GitHub shows at most 10 annotations of each level per step:"
        " the full list is in the job summary (--format markdown, written to $GITHUB_STEP_SUMMARY)."
    )
    return command("notice", text, title="redzone-check summary")


def render(result: ScanResult, ctx: ReportContext) -> str:
    lines = [annotation(f) for f in result.active]
    for problem in result.errors:
        where = printable(binary_location(problem.path, problem.member))
        lines.append(
            command(
                "error",
                f"{where}: {printable(problem.message)}",
                file=printable(problem.path),
                title="redzone-check input error",
            )
        )
    for skipped in result.skipped:
        if skipped.kind == "not-analysable":
            where = printable(binary_location(skipped.path, skipped.member))
            text = f"{where}: {printable(skipped.reason)}; not analysed, so not known to be clean"
            lines.append(
                command("warning", text, file=printable(skipped.path), title="redzone-check not analysable")
            )
    lines.append(_summary(result))
    return "\n".join(lines) + "\n"
