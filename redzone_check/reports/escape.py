"""Escaping of untrusted text (symbol names, paths, instruction text) for each sink."""

from __future__ import annotations

import re
import unicodedata

# Control, format (bidi overrides: "Trojan Source"), surrogate (undecodable bytes kept by
# surrogateescape) and line/paragraph separators never reach a report as they are.
_HIDDEN = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


def _escape_char(ch: str) -> str:
    code = ord(ch)
    if 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8, kept by surrogateescape
        return f"\\x{code - 0xDC00:02x}"
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}"


def printable(text: str) -> str:
    """Text with every invisible or line-breaking character shown as a backslash escape."""
    if text.isprintable() and "\\" not in text:
        return text
    return "".join(
        "\\\\" if ch == "\\" else _escape_char(ch) if unicodedata.category(ch) in _HIDDEN else ch
        for ch in text
    )


def github_message(text: str) -> str:
    """The data part of a workflow command, escaped as @actions/core's escapeData does it."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def github_property(text: str) -> str:
    """A property value of a workflow command, escaped as @actions/core's escapeProperty does it."""
    return github_message(text).replace(":", "%3A").replace(",", "%2C")


# Everything that can start Markdown or HTML inline syntax, or end a table cell. Backslash escapes
# work for any ASCII punctuation in CommonMark and GFM, including `\|` inside tables.
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]<>#|~&@$])")


def markdown(text: str) -> str:
    """Untrusted text for Markdown inline context (paragraphs, table cells, headings)."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", printable(text))


def fence(content: str, info: str = "") -> str:
    """A fenced code block that no backtick run in the content can close early."""
    longest = max((len(run) for run in re.findall(r"`+", content)), default=0)
    marks = "`" * max(3, longest + 1)
    return f"{marks}{info}\n{content.rstrip(chr(10))}\n{marks}\n"


def plain_message(function: str, message: str) -> str:
    """The finding's message, naming the function once and without Markdown code marks."""
    if function and function in message:
        return message.replace(f"`{function}`", function)
    return f"{function}: {message}"
