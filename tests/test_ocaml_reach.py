"""From a red-zone C helper up to the OCaml code and `external` that reach it (issue 8)."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import pytest
from conftest import require_tool, run, run_cli, scan_json
from data_ocaml.project import HERE, built_project, objects

from redzone_check.attribution.ocaml_externals import ExternalIndex
from redzone_check.attribution.ocaml_units import is_ocaml_symbol, ocaml_unit_names
from redzone_check.callgraph import CallGraph, SiteLine
from redzone_check.calls import ObjectCalls, object_calls
from redzone_check.callsource import WorkerCalls
from redzone_check.elf import ElfFile
from redzone_check.functions import list_functions
from redzone_check.model import Reach
from redzone_check.options import ScanOptions
from redzone_check.reach import reached_from
from redzone_check.scan import scan


def members(archive: Path, into: Path) -> list[Path]:
    into.mkdir(parents=True, exist_ok=True)
    run(["ar", "x", archive.resolve()], cwd=into)
    return sorted(into.glob("*.o"))


@pytest.fixture(scope="module")
def graph(tmp_path_factory: pytest.TempPathFactory) -> CallGraph:
    """Both archives of the dune build, members keyed `lib.a(member.o)` as the scan names them."""
    require_tool("ar")
    built = objects(built_project())
    scratch = tmp_path_factory.mktemp("members")
    graph = CallGraph()
    for name in ("stubs_archive", "ocaml_archive"):
        for member in members(built[name], scratch / name):
            elf = ElfFile(member.read_bytes())
            graph.add(f"{built[name].name}({member.name})", object_calls(elf, list_functions(elf)))
    return graph


def test_helper_is_reached_from_the_ocaml_caller_and_the_external(graph: CallGraph) -> None:
    reach = reached_from(graph, "libcipher_stubs.a(mystub.o)", "helper_sum", ExternalIndex.scan(str(HERE)))
    assert reach == (
        Reach("Cipher.Cipher_block.encrypt", "ocaml", "src/cipher_block.ml", 3, ("mystub",)),
        Reach("Cipher.Native.my_sum", "ocaml", "src/native.ml", 4, ("mystub",), kind="external"),
    )


def test_chain_crosses_archive_members_and_archives(graph: CallGraph) -> None:
    # checksum_fold is in util.o; mystub (mystub.o) tail-jumps to it; the OCaml caller is in cipher.a.
    reach = reached_from(graph, "libcipher_stubs.a(util.o)", "checksum_fold", ExternalIndex.scan(str(HERE)))
    assert [(r.function, r.kind, r.via) for r in reach] == [
        ("Cipher.Cipher_block.encrypt", "caller", ("mystub",)),
        ("Cipher.Native.my_sum", "external", ("mystub",)),
    ]


def test_stub_called_through_caml_c_call_is_reached_from_its_caller(graph: CallGraph) -> None:
    reach = reached_from(graph, "libcipher_stubs.a(mystub.o)", "mystub_alloc", ExternalIndex.scan(str(HERE)))
    assert reach == (
        Reach("Cipher.Cipher_block.table", "ocaml", "src/cipher_block.ml", 7, ()),
        Reach("Cipher.Native.alloc_table", "ocaml", "src/native.ml", 9, (), kind="external"),
    )


def test_linked_executable_resolves_decoded_calls_and_caml_c_call() -> None:
    exe = objects(built_project())["executable"]
    elf = ElfFile(exe.read_bytes())
    graph = CallGraph()
    graph.add("main.exe", object_calls(elf, list_functions(elf)))
    index = ExternalIndex.scan(str(HERE))
    assert [(r.function, r.via) for r in reached_from(graph, "main.exe", "helper_sum", index)] == [
        ("Cipher.Cipher_block.encrypt", ("mystub",)),
        ("Cipher.Native.my_sum", ("mystub",)),
    ]
    # Linked, the GOT load of the stub is relaxed to `lea mystub_alloc(%rip),%rax`.
    assert [r.function for r in reached_from(graph, "main.exe", "mystub_alloc", index)] == [
        "Cipher.Cipher_block.table",
        "Cipher.Native.alloc_table",
    ]


def test_unreached_function_has_no_reach(graph: CallGraph) -> None:
    assert reached_from(graph, "libcipher_stubs.a(mystub.o)", "mystub_byte", ExternalIndex([], {})) == ()


def test_search_depth_is_bounded() -> None:
    chain = [f"f{i}" for i in range(12)]
    edges = tuple((chain[i + 1], chain[i], "call") for i in range(11))
    graph = CallGraph()
    graph.add("c.o", ObjectCalls(tuple((f, True) for f in chain), edges))
    graph.add("m.o", ObjectCalls((("camlM__top_1", True),), (("camlM__top_1", "f3", "call"),), (), ("M",)))
    near = reached_from(graph, "c.o", "f0", ExternalIndex([], {}))
    assert near == (Reach("M.top", "ocaml", None, None, ("f3", "f2", "f1")),)
    graph.add("m.o", ObjectCalls((("camlM__top_1", True),), (("camlM__top_1", "f11", "call"),), (), ("M",)))
    assert reached_from(graph, "c.o", "f0", ExternalIndex([], {})) == ()


def test_stripped_ocamlopt_object_is_still_recognised(tmp_path: Path) -> None:
    require_tool("strip")
    stripped = tmp_path / "stripped.o"
    shutil.copy(objects(built_project())["cipher_block"], stripped)
    run(["strip", "--strip-unneeded", stripped])
    names = [s.name for s in ElfFile(stripped.read_bytes()).symbols()]
    units = ocaml_unit_names(names)
    assert units == {"Cipher__Cipher_block"}
    functions = [f.name for f in list_functions(ElfFile(stripped.read_bytes()))]
    assert functions and all(is_ocaml_symbol(f, units) for f in functions)
    assert not is_ocaml_symbol("mystub", units) and not is_ocaml_symbol("caml_c_call", units)


def test_runtime_assembly_units_are_not_ocaml_code() -> None:
    units = ocaml_unit_names(
        ["caml_system__code_begin", "caml_startup__code_begin", "camlStdlib__List__entry"]
    )
    assert units == {"_startup", "Stdlib__List"}
    assert is_ocaml_symbol("caml_curry2", units) and is_ocaml_symbol("camlStdlib__List__map_12", units)
    assert not is_ocaml_symbol("caml_call_gc", units)


# --- end to end through the CLI -------------------------------------------------------------------


def archives(project: Path) -> list[str]:
    built = objects(project)
    return [str(built["stubs_archive"]), str(built["ocaml_archive"])]


def test_scan_json_carries_the_whole_chain_and_the_dune_flags_line() -> None:
    project = built_project()
    status, doc = scan_json([*archives(project), "--source-root", str(project)], cwd=project)
    assert status == 1
    by_function = {f["function"]: f for f in doc["findings"]}
    assert set(by_function) == {"helper_sum", "checksum_fold"}
    helper = by_function["helper_sum"]
    assert helper["source"] == {"file": "src/mystub.c", "line": 10}
    assert helper["member"] == "mystub.o" and by_function["checksum_fold"]["member"] == "util.o"
    caller = {"function": "Cipher.Cipher_block.encrypt", "language": "ocaml", "file": "src/cipher_block.ml"}
    external = {"function": "Cipher.Native.my_sum", "language": "ocaml", "file": "src/native.ml", "line": 4}
    for finding in by_function.values():
        assert finding["reached_from"] == [
            {**caller, "line": 3, "via": ["mystub"], "kind": "caller"},
            {**external, "via": ["mystub"], "kind": "external"},
        ]
        assert finding["build_location"] == {
            "file": "src/dune",
            "line": 7,
            "kind": "dune",
            "text": "(flags :standard -O2 -g)",
        }


def test_scan_text_names_caller_external_stub_and_fix() -> None:
    project = built_project()
    status, out, _ = run_cli([*archives(project), "--source-root", str(project)], cwd=project)
    assert status == 1
    assert "src/mystub.c:10: error: helper_sum: [RZ001]" in out
    assert "Cipher.Cipher_block.encrypt (src/cipher_block.ml:3) via mystub" in out
    assert "Cipher.Native.my_sum (src/native.ml:4) via mystub" in out
    assert "add -mno-red-zone to (flags :standard -O2 -g) in src/dune:7" in out


def test_no_red_zone_flag_in_the_stanza_reports_nothing() -> None:
    project = built_project("fixed")
    status, doc = scan_json([*archives(project), "--source-root", str(project)], cwd=project)
    assert (status, doc["findings"]) == (0, [])
    assert doc["summary"]["functions"] >= 10


def test_pure_ocaml_scan_counts_ocaml_functions_and_says_why_nothing_is_found(tmp_path: Path) -> None:
    require_tool("strip")
    project = built_project()
    stripped = tmp_path / "cipher_block.o"
    shutil.copy(objects(project)["cipher_block"], stripped)
    run(["strip", "--strip-unneeded", stripped])
    status, doc = scan_json([str(stripped)], cwd=tmp_path)
    assert (status, doc["findings"], doc["summary"]["ocaml_functions"]) == (0, [], 3)
    status, out, _ = run_cli([objects(project)["ocaml_archive"]], cwd=project)
    assert status == 0
    assert "ocamlopt-generated code does not use the red zone" in out


def test_call_site_lines_are_read_in_one_request(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Red-zone C of OCaml's runtime is reached from several objects of its standard library; their
    # lines come from each object's DWARF. One request reads them all, and the result is what
    # reading them one object at a time gave.
    require_tool("ocamlopt")
    where = Path(run(["ocamlopt", "-where"]).stdout.strip())
    paths = [str(where / "libasmrun.a"), str(where / "stdlib.a")]
    options = ScanOptions(use_cache=False, jobs=1, source_root=str(tmp_path))
    requests: list[list[str]] = []
    real = WorkerCalls.site_lines

    def recorded(self: WorkerCalls, keys: Sequence[str]) -> Iterator[tuple[str, tuple[SiteLine, ...]]]:
        requests.append(list(keys))
        return real(self, keys)

    monkeypatch.setattr(WorkerCalls, "site_lines", recorded)
    batched = scan(paths, options)
    assert len(requests) == 1 and len(requests[0]) > 1
    assert any(r.line for f in batched.findings for r in f.reached_from)

    requests.clear()
    monkeypatch.setattr(CallGraph, "load_lines", _one_at_a_time(CallGraph.load_lines))
    assert scan(paths, options) == batched
    assert len(requests) > 1 and all(len(keys) == 1 for keys in requests)


def _one_at_a_time(load_lines: Callable[[CallGraph, Iterable[str]], None]) -> Callable[..., None]:
    def load(self: CallGraph, keys: Iterable[str]) -> None:
        keys = list(keys)
        if len(keys) == 1:  # as `site_line` asks, when the search meets a caller
            load_lines(self, keys)

    return load
