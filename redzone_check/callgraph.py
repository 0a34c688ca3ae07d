"""The calls of a run, resolved the way a static link would see them.

Local symbols resolve only inside their own object, global ones across objects and archives. Every
object's symbols are known up front (`add_symbols`, from its symbol table), but its calls cost a
decoding of its code, so they are read through a `CallSource` only for objects that hold a function
within reach of OCaml code or a declared stub (`near_ocaml`), the only part the reach search walks:
on all the archives of a system, 2,400 objects of 16,000. Call-site lines (DWARF) are read only for
the calls a reported chain starts with.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from redzone_check.attribution.ocaml_units import is_ocaml_symbol
from redzone_check.calls import ObjectCalls, ObjectSymbols

Node = tuple[str, str]  # (object key, primary symbol); object key "" for symbols defined nowhere scanned
SiteLine = tuple[str, str, str, int]  # (caller, callee, file, line)
_NO_UNITS: set[str] = set()


class CallSource(Protocol):
    def calls(self, keys: Sequence[str]) -> Iterable[tuple[str, ObjectCalls]]: ...
    def site_lines(self, keys: Sequence[str]) -> Iterable[tuple[str, tuple[SiteLine, ...]]]: ...


@dataclass(frozen=True)
class Caller:
    node: Node
    kind: str
    ocaml: bool


class _Object:
    """One object of the graph: its symbols always, its calls once loaded (`out` is then set)."""

    __slots__ = (
        "aliases",
        "defined",
        "exported",
        "has_sites",
        "lines",
        "names",
        "out",
        "site_lines",
        "units",
    )

    def __init__(self, symbols: ObjectSymbols) -> None:
        self.defined = tuple(name for name, _ in symbols.defined)
        self.exported = tuple(name for name, is_global in symbols.defined if is_global)
        self.aliases = symbols.aliases
        self.units = set(symbols.ocaml_units) if symbols.ocaml_units else _NO_UNITS
        self.names: dict[str, str] | None = None
        # Caller (as its primary symbol) -> (callee as the code names it, kind).
        self.out: dict[str, list[tuple[str, str]]] | None = None
        self.has_sites = False  # calls from OCaml into other code, whose lines DWARF may give
        self.site_lines: tuple[SiteLine, ...] = ()
        self.lines: dict[tuple[str, str], tuple[str, int]] | None = None

    def local_names(self) -> dict[str, str]:
        """Symbol -> primary symbol, for every name a call from this object resolves to locally."""
        if self.names is None:
            names = {name: name for name in self.defined}
            names.update({alias: target for alias, target in self.aliases if target in names})
            self.names = names
        return self.names

    def load(self, calls: ObjectCalls) -> None:
        names = self.local_names()
        out: dict[str, list[tuple[str, str]]] = defaultdict(list)
        for caller, callee, kind in calls.edges:
            out[names.get(caller, caller)].append((callee, kind))
        self.out = dict(out)
        self.has_sites, self.site_lines = bool(calls.sites), calls.site_lines


class CallGraph:
    def __init__(self, source: CallSource | None = None) -> None:
        self.source = source  # may be set once the symbols are in
        self._objects: dict[str, _Object] = {}
        self._reset()

    def _reset(self) -> None:
        self._exports: dict[str, tuple[Node, ...]] | None = None
        self._callers: dict[Node, set[tuple[Node, str]]] | None = None
        self._near: tuple[tuple[frozenset[str], int], frozenset[Node]] | None = None
        # Calls from `near`, by callee: resolved inside the caller's object, or a global name.
        self._near_local: dict[Node, list[tuple[Node, str]]] = {}
        self._near_global: dict[str, list[tuple[Node, str]]] = {}
        self._caller_cache: dict[Node, tuple[Caller, ...]] = {}
        self._near_cache: dict[Node, tuple[Caller, ...]] = {}

    def add(self, object_key: str, calls: ObjectCalls) -> None:
        """An object with its calls already read; a key added again replaces the earlier object."""
        self.add_symbols(object_key, calls.symbols)
        self._objects[object_key].load(calls)

    def add_symbols(self, object_key: str, symbols: ObjectSymbols) -> None:
        """An object whose calls the source reads when a search needs them."""
        self._objects[object_key] = _Object(symbols)
        self._reset()

    def units(self, object_key: str) -> set[str]:
        obj = self._objects.get(object_key)
        return obj.units if obj is not None else _NO_UNITS

    def is_ocaml(self, node: Node) -> bool:
        return is_ocaml_symbol(node[1], self.units(node[0]))

    def canonical(self, object_key: str, symbol: str) -> Node:
        obj = self._objects.get(object_key)
        if obj is not None:
            return object_key, dict(obj.aliases).get(symbol, symbol)
        return object_key, symbol

    def near_ocaml(self, stubs: frozenset[str], depth: int) -> frozenset[Node]:
        """Nodes within `depth` calls of OCaml code or of a declared stub, themselves included.

        Only these can lie on a chain from OCaml code to a finding, so the search per finding
        never walks the rest of libc's callers, and only their objects' calls are read.
        """
        key = (stubs, depth)
        if self._near is not None and self._near[0] == key:
            return self._near[1]
        frontier = {
            (object_key, name)
            for object_key, obj in self._objects.items()
            for name in obj.defined
            if name in stubs or (obj.units and is_ocaml_symbol(name, obj.units))
        }
        frontier.update(("", name) for name in stubs)
        near = set(frontier)
        for _ in range(depth):
            self._load(node[0] for node in frontier)
            step = {c for node in frontier for c, _kind in self._callees(node) if c not in near}
            near.update(step)
            frontier = step
        self._load(node[0] for node in frontier)
        # Callers in `near`, the only ones `callers_near` returns, indexed before global resolution:
        # memcpy is defined in dozens of archives, and every call to it would count once for each.
        local: dict[Node, list[tuple[Node, str]]] = defaultdict(list)
        by_name: dict[str, list[tuple[Node, str]]] = defaultdict(list)
        for node in near:
            obj = self._objects.get(node[0])
            if obj is None or obj.out is None:
                continue
            names = obj.local_names()
            for callee, kind in obj.out.get(node[1], ()):
                if callee in names:
                    local[(node[0], names[callee])].append((node, kind))
                else:
                    by_name[callee].append((node, kind))
        self._near = (key, frozenset(near))
        self._near_local, self._near_global = dict(local), dict(by_name)
        self._near_cache = {}
        return self._near[1]

    def callers(self, object_key: str, symbol: str) -> tuple[Caller, ...]:
        """Direct callers of a function, each with the edge kind and whether it is OCaml code.

        This reads the calls of every object; the reach search uses `callers_near` instead.
        """
        node = self.canonical(object_key, symbol)
        cached = self._caller_cache.get(node)
        if cached is None:
            found = self._all_callers().get(node, set())
            cached = tuple(Caller(n, kind, self.is_ocaml(n)) for n, kind in sorted(found))
            self._caller_cache[node] = cached
        return cached

    def callers_near(self, node: Node, near: frozenset[Node]) -> tuple[Caller, ...]:
        """`callers` restricted to `near` (see `near_ocaml`), cached: hubs such as memcpy have
        tens of thousands of callers, and every finding's search would walk them again."""
        cached = self._near_cache.get(node)
        if cached is None:
            if self._near is not None and near is self._near[1]:
                found = self._callers_from_near(self.canonical(*node))
                cached = tuple(Caller(n, kind, self.is_ocaml(n)) for n, kind in sorted(found))
            else:
                cached = tuple(c for c in self.callers(*node) if c.node in near)
            self._near_cache[node] = cached
        return cached

    def site_line(self, caller: Node, callee: str) -> tuple[str, int] | None:
        """File and line (as DWARF records them) where OCaml code `caller` calls `callee`."""
        obj = self._objects.get(caller[0])
        if obj is None:
            return None
        if obj.lines is None:
            self.load_lines([caller[0]])
        return obj.lines.get((caller[1], callee)) if obj.lines is not None else None

    def load_lines(self, keys: Iterable[str]) -> None:
        """Read the call-site lines of these objects, those the source must read all in one request."""
        wanted = sorted({k for k in keys if k in self._objects and self._objects[k].lines is None})
        self._load(wanted)
        unread = [k for k in wanted if not self._objects[k].site_lines and self._objects[k].has_sites]
        read = dict(self.source.site_lines(unread)) if unread and self.source is not None else {}
        for key in wanted:
            obj = self._objects[key]
            obj.lines = {}
            for name, target, file, line in obj.site_lines or read.get(key, ()):
                obj.lines.setdefault((name, target), (file, line))

    def _callers_from_near(self, node: Node) -> set[tuple[Node, str]]:
        found = set(self._near_local.get(node, ()))
        object_key, symbol = node
        obj = self._objects.get(object_key)
        if obj is None:
            if object_key == "" and not self._exported().get(symbol):
                found.update(self._near_global.get(symbol, ()))
        elif symbol in obj.exported:
            for name, target in obj.local_names().items():
                if target == symbol:
                    found.update(self._near_global.get(name, ()))
        return found

    def _load(self, keys: Iterable[str]) -> None:
        wanted = sorted({k for k in keys if k in self._objects and self._objects[k].out is None})
        if wanted and self.source is not None:
            for key, calls in self.source.calls(wanted):
                self._objects[key].load(calls)

    def _callees(self, node: Node) -> list[tuple[Node, str]]:
        obj = self._objects.get(node[0])
        if obj is None or obj.out is None:
            return []
        return [
            (target, kind)
            for callee, kind in obj.out.get(node[1], ())
            for target in self._targets(node[0], obj, callee)
        ]

    def _targets(self, object_key: str, obj: _Object, callee: str) -> Sequence[Node]:
        names = obj.local_names()
        if callee in names:
            return ((object_key, names[callee]),)
        return self._exported().get(callee) or (("", callee),)

    def _exported(self) -> dict[str, tuple[Node, ...]]:
        if self._exports is None:
            found: dict[str, list[Node]] = defaultdict(list)
            for key, obj in self._objects.items():
                exported = set(obj.exported)
                names = obj.names or {name: name for name in obj.defined}  # not kept for every object
                if obj.names is None:
                    names.update({alias: target for alias, target in obj.aliases if target in names})
                for name, target in names.items():
                    if target in exported:
                        found[name].append((key, target))
            self._exports = {name: tuple(nodes) for name, nodes in found.items()}
        return self._exports

    def _all_callers(self) -> dict[Node, set[tuple[Node, str]]]:
        if self._callers is None:
            self._load(self._objects)
            callers: dict[Node, set[tuple[Node, str]]] = defaultdict(set)
            for key, obj in self._objects.items():
                for name in obj.out or ():
                    for callee, kind in self._callees((key, name)):
                        callers[callee].add(((key, name), kind))
            self._callers = dict(callers)
        return self._callers
