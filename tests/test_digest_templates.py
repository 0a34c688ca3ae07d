"""Instructions built from a template are exactly what capstone's detailed decoding says.

`digest()` decodes the first instruction of each shape with capstone and builds the others
from that template and the numbers of their lite text. The oracle is capstone itself: for every
distinct encoding in the code of real archives (libc.a, libgcc.a, OCaml's libasmrun.a), the
templated digest must equal the detailed one, field by field.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from capstone import CsError
from conftest import require_tool

from redzone_check import digest as digest_module
from redzone_check.archive import iter_members
from redzone_check.decode import canonical, decoder, lite_decoder
from redzone_check.digest import OP_IMM, OP_MEM, OP_REG, Digest, Op, detailed, digest
from redzone_check.elf import ElfFile, NotApplicable


def _gcc_file(name: str) -> Path:
    require_tool("gcc")
    out = subprocess.run(["gcc", f"-print-file-name={name}"], capture_output=True, text=True, check=True)
    path = Path(out.stdout.strip())
    if not path.is_absolute():
        pytest.fail(f"gcc does not know {name} (install libc6-dev)")
    return path


def _ocaml_runtime() -> Path:
    require_tool("ocamlopt")
    out = subprocess.run(["ocamlopt", "-where"], capture_output=True, text=True, check=True)
    return Path(out.stdout.strip()) / "libasmrun.a"


def real_objects(archive: Path) -> Iterator[ElfFile]:
    """Each member of an archive that ElfFile reads (the others are passed over)."""
    data = memoryview(archive.read_bytes())
    for member in iter_members(data):
        try:
            yield ElfFile(member.data)
        except NotApplicable:
            continue


def _instructions(archive: Path) -> Iterator[tuple[bytes, int, str, str]]:
    for elf in real_objects(archive):
        for section in elf.sections:
            if not section.executable:
                continue
            code = bytes(elf.section_data(section))
            for address, size, mnemonic, op_str in lite_decoder().disasm_lite(code, 0):
                if mnemonic != ".byte":  # data capstone skipped over; never decoded in detail
                    yield code[address : address + size], address, mnemonic, op_str


def real_archive(name: str) -> Path:
    """libc.a or libgcc.a as gcc finds them, or OCaml's libasmrun.a."""
    return _ocaml_runtime() if name == "libasmrun.a" else _gcc_file(name)


def distinct_instructions(archive: Path) -> Iterator[tuple[bytes, int, str, str]]:
    """`_instructions(archive)`, each distinct encoding once."""
    seen: set[bytes] = set()
    for found in _instructions(archive):
        if found[0] not in seen:
            seen.add(found[0])
            yield found


@pytest.fixture(autouse=True)
def _empty_caches() -> Iterator[None]:
    digest_module._cache.clear()
    digest_module._templates.clear()
    yield
    digest_module._cache.clear()
    digest_module._templates.clear()


@pytest.mark.parametrize("archive", ["libc.a", "libgcc.a", "libasmrun.a"])
def test_templated_digests_equal_capstone_on_real_archives(archive: str) -> None:
    path = real_archive(archive)
    checked = 0
    mismatches = []
    for raw, address, mnemonic, op_str in _instructions(path):
        if raw in digest_module._cache:
            continue
        got = digest(raw, address, mnemonic, op_str)
        want = detailed(raw, address)
        checked += 1
        if got != want and len(mismatches) < 5:
            mismatches.append((mnemonic, op_str, raw.hex(), got, want))
    assert checked > 1000
    assert not mismatches
    # The point of templates: far fewer detailed decodings than distinct encodings.
    templates = sum(len(t) for t in digest_module._templates.values())
    assert templates < checked / 2


def _public(raw: bytes, address: int) -> Digest | None:
    """The digest as capstone's public `CsInsn` API gives it: the oracle for `detailed`."""
    found = list(decoder().disasm(raw, address, 1))
    if not found:
        return None
    insn = found[0]
    ops = []
    for op in insn.operands:
        if op.type == OP_MEM:
            mem = op.mem
            base, index = canonical(mem.base), canonical(mem.index)
            ops.append(Op(OP_MEM, None, op.size, 0, base, index, mem.disp, op.access, mem.scale))
        elif op.type == OP_REG:
            ops.append(Op(OP_REG, canonical(op.reg), op.size, 0, None, None, 0, op.access))
        elif op.type == OP_IMM:
            ops.append(Op(OP_IMM, None, op.size, op.imm, None, None, 0, op.access))
        else:
            ops.append(Op(op.type, None, op.size, 0, None, None, 0, op.access))
    try:
        _read, write = insn.regs_access()
    except CsError:
        write = []
    written = tuple(sorted({r for r in map(canonical, write) if r is not None}))
    return Digest(insn.id, insn.prefix[0] == 0xF0, tuple(ops), written)


@pytest.mark.parametrize("archive", ["libc.a", "libgcc.a", "libasmrun.a"])
def test_detailed_decoding_equals_capstones_public_api(archive: str) -> None:
    # `detailed` reads capstone's structures directly, for speed; CsInsn is the reference.
    path = real_archive(archive)
    checked = 0
    mismatches = []
    for raw, address, mnemonic, op_str in distinct_instructions(path):
        checked += 1
        got, want = detailed(raw, address), _public(raw, address)
        if got != want and len(mismatches) < 5:
            mismatches.append((mnemonic, op_str, raw.hex(), got, want))
    assert checked > 1000
    assert not mismatches


def test_head_is_the_bytes_before_displacement_and_immediate() -> None:
    raw = bytes.fromhex("48c744240810000000")  # movq $0x10, 8(%rsp): disp8 at 4, imm32 at 5
    assert digest_module._decode(raw, 0)[1] == 4
    assert digest_module._decode(bytes.fromhex("c3"), 0)[1] == 1  # ret: neither


def _one(hex_bytes: str) -> tuple[bytes, int, str, str]:
    raw = bytes.fromhex(hex_bytes)
    ((address, size, mnemonic, op_str),) = list(lite_decoder().disasm_lite(raw, 0x1000))
    assert size == len(raw)
    return raw, address, mnemonic, op_str


def test_numbers_of_a_shape_come_from_the_text() -> None:
    first = _one("488944240c")  # movq %rax, 0xc(%rsp)
    second = _one("48894424f0")  # movq %rax, -0x10(%rsp)
    digest(*first)
    got = digest(*second)
    assert got == detailed(second[0], second[1])
    assert got is not None and got.ops[1].disp == -0x10
    assert len(digest_module._templates) == 1


def test_one_text_from_two_encodings_gets_two_templates() -> None:
    # jne with a rel8 and with a rel32: capstone gives their targets different sizes.
    short = _one("7510")
    near = _one("0f8510000000")
    for raw, address, mnemonic, op_str in (short, near):
        assert digest(raw, address, mnemonic, op_str) == detailed(raw, address)
    assert sum(len(t) for t in digest_module._templates.values()) == 2


def test_a_number_whose_conversion_is_not_yet_known_is_decoded() -> None:
    # `andl $0x10, %eax` reads the same at every width; `andl $0xfffffff0, %eax` (the same
    # encoding, imm8 -16) does not, so capstone decides it and the template learns the width.
    small = _one("83e010")
    wide = _one("83e0f0")
    for raw, address, mnemonic, op_str in (small, wide):
        assert digest(raw, address, mnemonic, op_str) == detailed(raw, address)
    ((template,),) = digest_module._templates.values()
    assert all(len(fits) < 4 for fits in template.modes)
