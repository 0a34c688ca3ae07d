"""The call graph: edges read from relocations and decoded branches, resolved across objects."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from conftest import run
from data_ocaml.project import built_project, objects

from redzone_check.callgraph import CallGraph
from redzone_check.calls import ObjectCalls, object_calls
from redzone_check.elf import ElfFile
from redzone_check.functions import list_functions


def calls_of(path: Path) -> ObjectCalls:
    elf = ElfFile(path.read_bytes())
    return object_calls(elf, list_functions(elf))


def test_call_to_static_function_resolved_by_the_assembler_is_an_edge() -> None:
    mystub = objects(built_project())["mystub"]
    # gas resolves a call to a static function in the same section: no relocation is left.
    assert "helper_sum" not in run(["objdump", "-r", mystub]).stdout
    assert ("mystub", "helper_sum", "call") in calls_of(mystub).edges


def test_plt32_jump_to_another_object_is_a_tail_edge() -> None:
    assert ("mystub", "checksum_fold", "tail") in calls_of(objects(built_project())["mystub"]).edges


def test_noalloc_external_is_a_direct_call_from_ocaml() -> None:
    edges = calls_of(objects(built_project())["cipher_block"]).edges
    direct = [a for a, b, k in edges if b == "mystub" and k == "call"]
    assert len(direct) == 1 and direct[0].startswith("camlCipher__Cipher_block__encrypt_")


def test_caml_c_call_edge_names_the_stub_loaded_into_rax() -> None:
    edges = calls_of(objects(built_project())["cipher_block"]).edges
    table = [a for a, b, k in edges if b == "mystub_alloc" and k == "caml_c_call"]
    assert len(table) == 1 and table[0].startswith("camlCipher__Cipher_block__table_")
    assert (table[0], "caml_c_call", "call") in edges


def test_ocaml_units_are_recorded_with_the_calls() -> None:
    assert calls_of(objects(built_project())["cipher_block"]).ocaml_units == ("Cipher__Cipher_block",)
    assert calls_of(objects(built_project())["mystub"]).ocaml_units == ()


def test_section_symbol_relocation_maps_to_the_function_at_its_offset(
    compile_c: Callable[..., Path],
) -> None:
    source = """
    static __attribute__((noinline)) long first(long a) { return a * 3; }
    static __attribute__((noinline)) long second(long a) { return a + 7; }
    long entry(long a) { return first(a) + second(a); }
    """
    obj = compile_c(source, name="sections", flags=("-O2", "-ffunction-sections"))
    relocs = run(["objdump", "-r", "-j", ".text.entry", obj]).stdout
    assert ".text.second" in relocs  # a section symbol plus addend, not the name `second`
    edges = calls_of(obj).edges
    assert ("entry", "first", "call") in edges
    assert ("entry", "second", "call") in edges or ("entry", "second", "tail") in edges


def test_local_symbols_resolve_only_inside_their_object() -> None:
    graph = CallGraph()
    graph.add("a.o", ObjectCalls((("helper", False), ("use_a", True)), (("use_a", "helper", "call"),)))
    graph.add("b.o", ObjectCalls((("helper", False), ("use_b", True)), (("use_b", "helper", "call"),)))
    assert [c.node for c in graph.callers("a.o", "helper")] == [("a.o", "use_a")]
    assert [c.node for c in graph.callers("b.o", "helper")] == [("b.o", "use_b")]


def test_global_symbols_resolve_across_archives_and_aliases() -> None:
    graph = CallGraph()
    graph.add("libx.a(x.o)", ObjectCalls((("impl", True),), (), aliases=(("public_name", "impl"),)))
    graph.add("liby.a(y.o)", ObjectCalls((("user", True),), (("user", "public_name", "tail"),)))
    graph.add("liby.a(z.o)", ObjectCalls((("other", True),), (("other", "missing", "call"),)))
    callers = graph.callers("libx.a(x.o)", "public_name")
    assert [(c.node, c.kind) for c in callers] == [(("liby.a(y.o)", "user"), "tail")]
    assert [c.node for c in graph.callers("", "missing")] == [("liby.a(z.o)", "other")]
