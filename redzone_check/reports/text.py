"""`--format text`: one `file:line:` line per finding, for terminals and editors."""

from __future__ import annotations

from redzone_check.model import Finding, Instruction, ScanResult
from redzone_check.reports import ReportContext
from redzone_check.reports.escape import printable

__all__ = ["printable", "render", "render_finding", "summary_line"]


def _head(f: Finding) -> str:
    if f.source and f.source.line:
        return f"{printable(f.source.file)}:{f.source.line}:"
    if f.source:
        return f"{printable(f.source.file)}:"
    return f"{printable(f.location)}:"


def _instruction(i: Instruction) -> str:
    below = f"%rsp{i.rsp_offset}"
    note = " (benign fence)" if i.benign else ""
    head = f"      +0x{i.function_offset:<5x} {i.access:<5} {i.size:>2} bytes at {below:<10}"
    return f"{head} {printable(i.text)}{note}"


_LANGUAGES = {"ocaml": "OCaml", "c": "C", "c++": "C++", "rust": "Rust"}


def render_finding(f: Finding) -> list[str]:
    name = printable(f.function)
    level = f"{f.level} (suppressed)" if f.suppressed else f.level
    lines = [f"{_head(f)} {level}: {name}: [{f.rule}] {printable(f.message)}"]
    where = f"{printable(f.location)} {printable(f.section)}+0x{f.section_offset:x}"
    if f.rule != "RZ003":
        where += f" ({printable(f.symbol)}+0x{f.function_offset:x})"
    if f.aliases:
        where += ", also named " + ", ".join(printable(a) for a in f.aliases)
    lines.append(f"    in {where} [{f.language}]")
    if f.suppressed:
        lines.append(f"    suppressed: {printable(f.suppressed)}")
    if f.instructions:
        lines.append("    instructions:")
        lines.extend(_instruction(i) for i in f.instructions)
    for reach in f.reached_from:
        at = f" ({printable(reach.file)}:{reach.line})" if reach.file else ""
        via = " via " + " -> ".join(printable(v) for v in reach.via) if reach.via else ""
        language = _LANGUAGES.get(reach.language, reach.language)
        what = "external" if reach.kind == "external" else f"{language} caller"
        lines.append(f"    reached from {what} {printable(reach.function)}{at}{via}")
    b = f.build
    if b is not None:
        if b.recorded:
            flags = " ".join(printable(x) for x in b.flags) or "(none)"
            lines.append(f"    flags: {printable(b.compiler or 'unknown compiler')}: {flags}")
            if b.missing:
                lines.append(f"    missing: {' '.join(b.missing)}")
        if b.note:
            lines.append(f"    note: {printable(b.note)}")
    lines.append(f"    fix: {_fix(f)}")
    return lines


def _fix(f: Finding) -> str:
    if f.build_location is not None:
        return printable(f.build_location.advice())
    if f.rule == "RZ002":
        return "this code is wrong even in user space: move %rsp down before using the stack"
    target = f.source.file if f.source else f.location
    if f.language == "ocaml":
        # ocamlopt has no -mno-red-zone and never needs one: this code was written or patched by hand.
        where = printable(target)
        return f"ocamlopt never uses the red zone: look for hand-written or patched assembly in {where}"
    if f.language == "asm":
        return f"move %rsp down (sub $N,%rsp) before using the stack in {printable(target)}"
    return f"rebuild {printable(target)} with -mno-red-zone"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def summary_line(result: ScanResult) -> str:
    s = result.summary
    n = len(result.findings)
    levels = ", ".join(
        f"{s.findings[lv]} {lv}{'s' if s.findings[lv] != 1 else ''}" for lv in s.findings if s.findings[lv]
    )
    parts = [f"{n} finding{'s' if n != 1 else ''}" + (f" ({levels})" if levels else "")]
    parts.append(f"{_count(s.objects, 'object')}, {_count(s.functions, 'function')} analysed")
    if s.functions_unknown:
        parts.append(f"{s.functions_unknown} with stack accesses of unknown verdict")
    if s.ocaml_functions:
        parts.append(
            f"{s.ocaml_functions} OCaml functions (ocamlopt-generated code does not use the red zone)"
        )
    if s.suppressed:
        parts.append(f"{s.suppressed} suppressed")
    if s.not_analysable:
        parts.append(f"{s.not_analysable} not analysable")
    if s.not_applicable:
        parts.append(f"{s.not_applicable} not x86-64")
    if s.errors:
        parts.append(f"{s.errors} input error{'s' if s.errors != 1 else ''}")
    return "redzone-check: " + "; ".join(parts)


def render(result: ScanResult, ctx: ReportContext) -> str:
    lines: list[str] = []
    for finding in result.findings:
        lines.extend(render_finding(finding))
    for skipped in result.skipped:
        if skipped.kind == "not-analysable":
            where = printable(f"{skipped.path}({skipped.member})" if skipped.member else skipped.path)
            lines.append(f"{where}: warning: not analysable: {printable(skipped.reason)}")
    lines.append(summary_line(result))
    return "\n".join(lines) + "\n"
