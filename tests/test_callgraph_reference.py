"""The lazy call graph answers exactly like a plain one that resolves every call of every object.

The reference below is the straightforward graph (all edges resolved, then searched); the real
graph reads calls only for objects near OCaml code and indexes callers before global resolution.
Both run on real objects: the dune project's C stubs and OCaml code, and OCaml's own runtime and
standard library.
"""

from __future__ import annotations

import subprocess
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import pytest
from conftest import require_tool
from data_ocaml.project import HERE, built_project, objects

from redzone_check.attribution.ocaml_externals import ExternalIndex
from redzone_check.attribution.ocaml_units import is_ocaml_symbol
from redzone_check.callgraph import Caller, CallGraph, Node, SiteLine
from redzone_check.calls import ObjectCalls, object_calls
from redzone_check.elf import ElfFile, NotApplicable
from redzone_check.functions import list_functions
from redzone_check.inputs import iter_blobs
from redzone_check.model import binary_location

Edges = dict[Node, set[tuple[Node, str]]]


class _Quiet:
    def skip(self, *args: object) -> None:
        pass

    def error(self, *args: object) -> None:
        pass


class DictSource:
    """Serves calls from memory and records which objects the graph asked for."""

    def __init__(self, calls: dict[str, ObjectCalls]) -> None:
        self.objects = calls
        self.asked: list[str] = []

    def calls(self, keys: Sequence[str]) -> list[tuple[str, ObjectCalls]]:
        self.asked.extend(keys)
        return [(key, self.objects[key]) for key in keys]

    def site_lines(self, keys: Sequence[str]) -> list[tuple[str, tuple[SiteLine, ...]]]:
        return [(key, ()) for key in keys]


@pytest.fixture(scope="module")
def real_objects() -> dict[str, ObjectCalls]:
    require_tool("ocamlopt")
    where = Path(
        subprocess.run(["ocamlopt", "-where"], capture_output=True, text=True, check=True).stdout.strip()
    )
    built = objects(built_project())
    paths = [str(built["stubs_archive"]), str(built["ocaml_archive"]), str(where / "libasmrun.a")]
    paths.append(str(where / "stdlib.a"))
    out: dict[str, ObjectCalls] = {}
    for blob in iter_blobs(paths, _Quiet()):
        try:
            elf = ElfFile(blob.data)
        except NotApplicable:
            continue
        out[binary_location(blob.path, blob.member)] = object_calls(elf, list_functions(elf))
    assert sum(1 for calls in out.values() if calls.ocaml_units) > 20 and len(out) > 100
    return out


def reference(calls: dict[str, ObjectCalls]) -> tuple[Edges, dict[Node, set[Node]]]:
    """Callers and callees of every node, every call resolved the way a static link would."""
    exported: dict[str, list[Node]] = defaultdict(list)
    local: dict[str, dict[str, str]] = {}
    for key, obj in calls.items():
        names = {name: name for name, _ in obj.defined}
        names.update({alias: target for alias, target in obj.aliases if target in names})
        local[key] = names
        public = {name for name, is_global in obj.defined if is_global}
        for name, target in names.items():
            if target in public:
                exported[name].append((key, target))
    callers: Edges = defaultdict(set)
    callees: dict[Node, set[Node]] = defaultdict(set)
    for key, obj in calls.items():
        names = local[key]
        for caller, callee, kind in obj.edges:
            source = (key, names.get(caller, caller))
            targets = [(key, names[callee])] if callee in names else exported.get(callee) or [("", callee)]
            for target in targets:
                callers[target].add((source, kind))
                callees[source].add(target)
    return callers, callees


def reference_near(
    calls: dict[str, ObjectCalls], callees: dict[Node, set[Node]], stubs: frozenset[str], depth: int
) -> set[Node]:
    frontier = {
        (key, name)
        for key, obj in calls.items()
        for name, _ in obj.defined
        if name in stubs or is_ocaml_symbol(name, set(obj.ocaml_units))
    }
    frontier |= {("", name) for name in stubs}
    near = set(frontier)
    for _ in range(depth):
        frontier = {c for node in frontier for c in callees[node] if c not in near}
        near |= frontier
    return near


def every_node(calls: dict[str, ObjectCalls]) -> list[Node]:
    nodes = [(key, name) for key, obj in calls.items() for name, _ in obj.defined]
    nodes += [(key, alias) for key, obj in calls.items() for alias, _ in obj.aliases]
    nodes += [("", callee) for obj in calls.values() for _, callee, _ in obj.edges]
    return sorted(set(nodes))


def lazy_graph(calls: dict[str, ObjectCalls]) -> tuple[CallGraph, DictSource]:
    source = DictSource(calls)
    graph = CallGraph(source)
    for key, obj in calls.items():
        graph.add_symbols(key, obj.symbols)
    return graph, source


@pytest.mark.parametrize("depth", [0, 2, 8])
def test_near_ocaml_and_its_callers_match_the_reference(
    real_objects: dict[str, ObjectCalls], depth: int
) -> None:
    stubs = ExternalIndex.scan(str(HERE)).stub_names() | {"caml_md5_string", "memcpy", "not_defined_anywhere"}
    ref_callers, ref_callees = reference(real_objects)
    graph, source = lazy_graph(real_objects)
    near = graph.near_ocaml(stubs, depth)
    assert near == reference_near(real_objects, ref_callees, stubs, depth)
    # Calls are read only for objects that hold a node of the neighbourhood.
    assert set(source.asked) <= {key for key, _ in near} and len(source.asked) == len(set(source.asked))
    for key, name in every_node(real_objects):
        canonical = (key, dict(real_objects[key].aliases).get(name, name)) if key else (key, name)
        expected = tuple(
            Caller(n, kind, graph.is_ocaml(n)) for n, kind in sorted(ref_callers[canonical]) if n in near
        )
        assert graph.callers_near((key, name), near) == expected, (key, name)


def test_callers_match_the_reference_for_every_node(real_objects: dict[str, ObjectCalls]) -> None:
    ref_callers, _ = reference(real_objects)
    graph, _source = lazy_graph(real_objects)
    for key, name in every_node(real_objects):
        node = graph.canonical(key, name)
        expected = tuple(Caller(n, kind, graph.is_ocaml(n)) for n, kind in sorted(ref_callers[node]))
        assert graph.callers(key, name) == expected, (key, name)
    assert sum(len(graph.callers(key, name)) for key, name in every_node(real_objects)) > 1000


def test_object_added_again_replaces_the_earlier_one() -> None:
    graph, _ = lazy_graph({})
    graph.add("a.o", ObjectCalls((("f", True),), (("f", "g", "call"),)))
    graph.add("b.o", ObjectCalls((("g", True),), ()))
    assert [c.node for c in graph.callers("b.o", "g")] == [("a.o", "f")]
    graph.add("a.o", ObjectCalls((("f", True),), (("f", "h", "call"),)))
    assert graph.callers("b.o", "g") == ()
    assert [c.node for c in graph.callers("", "h")] == [("a.o", "f")]
