"""An object's functions -> the functions that use memory below %rsp (before attribution)."""

from __future__ import annotations

from dataclasses import dataclass

from redzone_check.elf import ElfFile
from redzone_check.functions import Function, list_functions
from redzone_check.model import RED_ZONE_BYTES, Instruction
from redzone_check.stack import analyse_function

_IMPLAUSIBLE = 1 << 16


@dataclass(frozen=True)
class Hit:
    """One function with accesses below %rsp, split by rule."""

    function: Function
    red_zone: tuple[Instruction, ...]  # RZ001: within the 128 bytes
    beyond: tuple[Instruction, ...]  # RZ002: more than 128 bytes below %rsp


@dataclass(frozen=True)
class Detection:
    functions: tuple[Function, ...]
    hits: tuple[Hit, ...]
    unknown_functions: int


def detect(elf: ElfFile, prefilter: bool = True) -> Detection:
    functions = list_functions(elf)
    relocatable = elf.type == 1
    hits = []
    unknown = 0
    for fn in functions:
        # One copy of the function's bytes, which the decoding and the analysis then take as they are.
        code = bytes(elf.section_data(elf.sections[fn.section_index])[fn.offset : fn.offset + fn.size])
        analysis = analyse_function(code, fn.offset, relocatable, prefilter)
        if analysis is None:
            continue
        if analysis.unknown:
            unknown += 1
        red_zone: list[Instruction] = []
        beyond: list[Instruction] = []
        for access in analysis.accesses:
            if fn.region and access.rsp_offset < -_IMPLAUSIBLE:
                # Code no symbol covers may be data (perlasm tables in .text); no compiler or
                # hand-written routine reaches megabytes below %rsp, decoded data easily does.
                continue
            instruction = Instruction(
                function_offset=access.address - fn.offset,
                section_offset=access.address,
                text=access.text,
                access="write"
                if access.kind == "write"
                else "address"
                if access.kind == "address"
                else "read",
                rsp_offset=access.rsp_offset,
                size=access.size,
                benign=access.benign,
            )
            (beyond if access.rsp_offset < -RED_ZONE_BYTES else red_zone).append(instruction)
        if red_zone or beyond:
            hits.append(Hit(fn, tuple(red_zone), tuple(beyond)))
    return Detection(tuple(functions), tuple(hits), unknown)
