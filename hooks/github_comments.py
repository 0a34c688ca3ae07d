"""Review comment bodies: what a reviewer reads on the offending line, and the hidden marker that makes
re-runs idempotent. Symbol names, paths and flags come from the scanned objects: untrusted Markdown."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote, unquote

from redzone_check.model import Finding
from redzone_check.reports.escape import fence, markdown

_MARKER = re.compile(
    r"<!-- redzone-check:fingerprint=(?P<fp>[0-9a-f]{1,64}) role=(?P<role>\S+)(?P<fixed> state=fixed)? -->"
)


@dataclass(frozen=True)
class Marker:
    fingerprint: str
    role: str  # "source", "object", "build", "reach:<file>", "body"
    fixed: bool = False

    @property
    def key(self) -> tuple[str, str]:
        return self.fingerprint, self.role

    def render(self) -> str:
        state = " state=fixed" if self.fixed else ""
        return (
            f"<!-- redzone-check:fingerprint={self.fingerprint} role={quote(self.role, safe=':/')}{state} -->"
        )


def markers(body: str | None) -> list[Marker]:
    return [
        Marker(m.group("fp"), unquote(m.group("role")), m.group("fixed") is not None)
        for m in _MARKER.finditer(body or "")
    ]


def _code(text: str) -> str:
    return f"`{text}`" if "`" not in text and text.isprintable() else markdown(text)


def _where(finding: Finding) -> str:
    where = f"{_code(finding.location)}, section {_code(finding.section)}+0x{finding.section_offset:x}"
    if finding.source:
        where += f", source {_code(f'{finding.source.file}:{finding.source.line}')}"
    return where


def _flags(finding: Finding) -> str:
    build = finding.build
    if build is None or not build.recorded:
        note = f" {markdown(build.note)}" if build and build.note else ""
        return f"**Flags:** not recorded.{note}"
    compiler = f"{markdown(build.compiler)}: " if build.compiler else ""
    flags = " ".join(build.flags) or "(none)"
    text = f"**Flags recorded:** {compiler}{_code(flags)}"
    if build.missing:
        text += f"; missing {', '.join(_code(m) for m in build.missing)}"
    return text


def _reached(finding: Finding) -> list[str]:
    lines = []
    for reach in finding.reached_from:
        where = f" ({_code(f'{reach.file}:{reach.line}')})" if reach.file else ""
        via = f" via {' → '.join(_code(v) for v in reach.via)}" if reach.via else ""
        kind = "`external`" if reach.kind == "external" else f"{markdown(reach.language)} caller"
        lines.append(f"- {kind} **{markdown(reach.function)}**{where}{via}")
    return lines


def fix(finding: Finding) -> str:
    if finding.rule == "RZ002":
        return (
            "this access lies more than 128 bytes below %rsp, which no platform allows: "
            "allocate the frame (`sub $N,%rsp`) before using it, or report a compiler bug."
        )
    if finding.build_location is not None:
        addition, text, where = finding.build_location.advice_parts()
        return f"add {_code(addition)} to {_code(text)} in {_code(where)}."
    target = finding.source.file if finding.source else finding.location
    return f"rebuild {_code(target)} with `-mno-red-zone` (and every library linked into the kernel)."


def finding_body(finding: Finding, role: str) -> str:
    level = "note" if finding.level == "note" else finding.level
    parts = [
        f"**redzone-check {finding.rule}** ({level}) in **{markdown(finding.function)}**",
        "",
        markdown(finding.message.replace("`", "")),  # the engine's code spans hold untrusted names
        "",
        f"**Symbol:** {_code(finding.symbol)} in {_where(finding)}",
    ]
    if role.startswith("reach:"):
        parts.insert(1, "\nThis code reaches a function that uses the red zone.")
    offending = "\n".join(
        f"+0x{i.function_offset:x}  {i.text}    # {i.access}, {i.size} bytes at %rsp{i.rsp_offset:+d}"
        + (" (benign)" if i.benign else "")
        for i in finding.instructions
    )
    if offending:
        parts += ["", "**Offending instructions:**", fence(offending, "asm").rstrip("\n")]
    parts += ["", _flags(finding)]
    reached = _reached(finding)
    if reached:
        parts += ["", "**Reached from:**", *reached]
    parts += ["", f"**Fix:** {fix(finding)}", "", Marker(finding.fingerprint, role).render()]
    return "\n".join(parts)


def build_body(finding: Finding) -> str:
    assert finding.build_location is not None
    source = f" ({_code(f'{finding.source.file}:{finding.source.line}')})" if finding.source else ""
    return "\n".join(
        [
            f"**redzone-check {finding.rule}**: the flags that compiled **{markdown(finding.function)}**"
            f"{source} are set here, without `-mno-red-zone`.",
            "",
            f"**Fix:** {fix(finding)}",
            "",
            Marker(finding.fingerprint, "build").render(),
        ]
    )


def fixed_body(marker: Marker, commit: str) -> str:
    return (
        f"**Fixed** in {commit[:12]}: redzone-check no longer reports this finding.\n\n"
        + Marker(marker.fingerprint, marker.role, fixed=True).render()
    )


def body_line(finding: Finding) -> str:
    """One line of the review body for a finding that has no place in the diff."""
    marker = Marker(finding.fingerprint, "body").render()
    return f"- {marker} {finding.rule} **{markdown(finding.function)}** in {_where(finding)}"
