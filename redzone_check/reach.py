"""Which OCaml code reaches a red-zone function, through which C functions and `external`s."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import replace
from functools import lru_cache
from typing import Protocol

from redzone_check.attribution.buildfiles import locate, source_for_object
from redzone_check.attribution.demangle import demangle
from redzone_check.attribution.ocaml_externals import ExternalIndex
from redzone_check.callgraph import CallGraph, Node
from redzone_check.model import Finding, Reach

MAX_DEPTH = 8
MAX_CALLERS = 12  # a red-zone memcpy can be reached from hundreds of functions; the nearest few say enough
# Breadth-first, so the nearest callers come first; a helper deep in libc has tens of thousands
# of transitive callers when a whole system's archives are scanned together.
MAX_VISITS = 5000
REACH_RULES = frozenset({"RZ001", "RZ002"})
_C_SOURCES = (".c", ".cc", ".cpp", ".cxx", ".S", ".s", ".m")


class PathMapper(Protocol):
    """What `redzone_check.attribution.paths.PathMapper` offers."""

    def source(self, path: str) -> str: ...


@lru_cache(maxsize=65536)
def display_name(symbol: str) -> str:
    return demangle(symbol)[0]


def reached_from(
    graph: CallGraph,
    object_key: str,
    symbol: str,
    externals: ExternalIndex,
    mapper: PathMapper | None = None,
    lines_of: set[str] | None = None,
) -> tuple[Reach, ...]:
    """OCaml callers (nearest first) and `external` declarations on the call chains into `symbol`.

    `via` lists the C functions from the reaching code's first callee down to, but not
    including, `symbol`. The search stops at the first OCaml function on each chain. Given
    `lines_of`, call-site lines are not read but the objects they would be read from are added
    to it (see `attach`).
    """
    start = graph.canonical(object_key, symbol)
    near = graph.near_ocaml(externals.stub_names(), MAX_DEPTH)
    via: dict[Node, tuple[str, ...]] = {start: ()}
    queue: deque[tuple[Node, int]] = deque([(start, 0)])
    callers: list[Reach] = []
    declared: list[Reach] = []
    seen_externals: set[tuple[str, str, int]] = set()
    while queue and len(via) <= MAX_VISITS:
        node, depth = queue.popleft()
        below = (display_name(node[1]), *via[node]) if node != start else ()
        for ext in externals.by_stub(node[1]):
            if (ext.name, ext.file, ext.line) not in seen_externals:
                seen_externals.add((ext.name, ext.file, ext.line))
                declared.append(Reach(ext.name, "ocaml", ext.file, ext.line, below, kind="external"))
        if depth >= MAX_DEPTH:
            continue
        if node not in near:
            continue  # no OCaml code or declared stub is within reach of this node
        for caller in graph.callers_near(node, near):
            if caller.node in via:
                continue
            via[caller.node] = below
            if caller.ocaml:
                if len(callers) >= MAX_CALLERS:
                    continue  # its call-site line costs a read of the object's DWARF
                name = display_name(caller.node[1])
                where = externals.definition(name)
                site = None
                if where is None and lines_of is not None:
                    lines_of.add(caller.node[0])
                elif where is None:
                    site = graph.site_line(caller.node, node[1])
                if site is not None:
                    # An anonymous function (`fun_154`) has no `let`; its call site has a line.
                    where = (mapper.source(site[0]) if mapper else site[0], site[1])
                file, line = where if where else (None, None)
                reach = Reach(name, "ocaml", file, line, below)
                # The same OCaml unit may be scanned twice (a loose .o and its archive member).
                if reach not in callers:
                    callers.append(reach)
            else:
                queue.append((caller.node, depth + 1))
    return (*callers, *declared)


def attach(
    findings: Sequence[Finding],
    graph: CallGraph,
    externals: ExternalIndex,
    source_root: str,
    mapper: PathMapper | None = None,
) -> list[Finding]:
    """Fill `reached_from` and `build_location` of red-zone findings (graph keyed by `Finding.location`)."""
    # Call-site lines come from each OCaml caller's DWARF: a first search of every finding names
    # the objects, so that they are read in one request (in parallel workers) rather than one by one.
    lines_of: set[str] = set()
    for finding in findings:
        if finding.rule in REACH_RULES and not finding.reached_from:
            reached_from(graph, finding.location, finding.symbol, externals, mapper, lines_of)
    graph.load_lines(lines_of)
    out = []
    for finding in findings:
        reach = finding.reached_from
        if finding.rule in REACH_RULES and not reach:
            reach = reached_from(graph, finding.location, finding.symbol, externals, mapper)
        location = finding.build_location
        if location is None and finding.language != "ocaml":
            source = finding.source.file if finding.source else None
            if source is None or not source.endswith(_C_SOURCES):
                source = source_for_object(finding.member or finding.path, source_root)
            if source is not None:
                location = locate(source, source_root)
        out.append(replace(finding, reached_from=reach, build_location=location))
    return out
