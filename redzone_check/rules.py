"""The rule table shared by every report: ids, names, descriptions, help and default levels."""

from __future__ import annotations

from dataclasses import dataclass

from redzone_check.model import Level

HOMEPAGE = "https://github.com/redzone-check/redzone-check"

_RED_ZONE = (
    "The x86-64 System V ABI lets a function keep data in the 128 bytes below the stack pointer, the "
    '"red zone", without moving %rsp. That is safe in user space, where signal frames are placed below '
    "the red zone. It is not safe where interrupts or exceptions push their frame onto the current stack: "
    "a kernel, a Mini-OS/Xen unikernel such as MirageOS, a UEFI loader or a hobby kernel. There the CPU "
    "overwrites those bytes at any instruction, and the function silently reads back corrupted data."
)

_FIX = """\
Build the code with `-mno-red-zone` (GCC and clang) and rebuild every library that is linked in:

- Make or plain compiler calls: add `-mno-red-zone` to `CFLAGS` (and `CXXFLAGS`).
- dune: `(foreign_stubs (language c) (names ...) (flags :standard -mno-red-zone))`.
- CMake: `target_compile_options(mylib PRIVATE -mno-red-zone)` or `-DCMAKE_C_FLAGS=-mno-red-zone`.
- meson: `add_project_arguments('-mno-red-zone', language: 'c')`.
- libgcc and other prebuilt runtimes: rebuild them with `-mno-red-zone` (GCC has a multilib for it
  on x86_64-elf cross toolchains), or link a runtime built for your kernel.
- Hand-written assembly: move %rsp down (`sub $N,%rsp`) before using the stack.

Record the flags so that the report can name them: GCC records them by default in
`DW_AT_producer` with `-g`; clang needs `-grecord-command-line`."""


@dataclass(frozen=True)
class Rule:
    id: str
    name: str  # PascalCase, as SARIF tools expect
    short: str
    full: str
    help_markdown: str
    level: Level  # default level on bare-metal platforms

    @property
    def help_uri(self) -> str:
        return f"{HOMEPAGE}#{self.id.lower()}"

    @property
    def help_text(self) -> str:
        """The Markdown help with code spans and list markers removed, for plain-text sinks."""
        return self.help_markdown.replace("`", "")


RULES: dict[str, Rule] = {
    rule.id: rule
    for rule in (
        Rule(
            id="RZ001",
            name="RedZoneUse",
            short="A function keeps data in the red zone below %rsp.",
            full=(
                "The function reads or writes memory below the current stack pointer, inside the 128-byte "
                "red zone. Code that takes interrupts on its current stack must not do that: the interrupt "
                "frame overwrites the data. Accesses that change nothing (a `lock or $0` fence) are notes."
            ),
            help_markdown=f"## Red-zone use\n\n{_RED_ZONE}\n\n### How to fix it\n\n{_FIX}\n",
            level="error",
        ),
        Rule(
            id="RZ002",
            name="AccessBeyondRedZone",
            short="A function accesses memory more than 128 bytes below %rsp.",
            full=(
                "The function reads or writes memory more than 128 bytes below the current stack pointer, "
                "beyond the red zone. Even in user space a signal handler may overwrite that memory, so "
                "this is an error on every platform."
            ),
            help_markdown=(
                "## Access beyond the red zone\n\n"
                "Memory more than 128 bytes below %rsp belongs to nobody: the ABI lets signal handlers, "
                "interrupts and the dynamic loader use it at any time. This is a bug on every platform, "
                "usually in hand-written assembly or in a miscompiled frame.\n\n"
                "### How to fix it\n\n"
                "Allocate the stack space first (`sub $N,%rsp`) and address it from the new %rsp, or "
                "keep the data in registers.\n"
            ),
            level="error",
        ),
        Rule(
            id="RZ003",
            name="MissingNoRedZoneFlag",
            short="A compile unit was built without -mno-red-zone.",
            full=(
                "The compile unit's recorded flags (DW_AT_producer or .GCC.command.line) lack -mno-red-zone "
                "or contain -mred-zone. Even if no function uses the red zone today, the next compiler "
                "version or optimisation level may. This rule is off by default; "
                "--require-no-red-zone-flag turns it on for kernel trees."
            ),
            help_markdown=(
                f"## Compile unit built without -mno-red-zone\n\n{_RED_ZONE}\n\n"
                "Today's code may not use the red zone, but nothing stops the compiler from using it "
                "after the next change, so kernel trees require the flag on every compile unit.\n\n"
                f"### How to fix it\n\n{_FIX}\n"
            ),
            level="warning",
        ),
    )
}

RULE_IDS: tuple[str, ...] = tuple(RULES)


def rule(rule_id: str) -> Rule:
    return RULES[rule_id]
