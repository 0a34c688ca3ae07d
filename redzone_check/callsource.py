"""Where a scan's call graph reads calls from: the workers decode the objects it asks for, by walk index."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TypeVar

from redzone_check.callgraph import SiteLine
from redzone_check.calls import ObjectCalls
from redzone_check.workers import Item, Mode, Runner, Task

Batches = Callable[[Sequence[Item], Mode], Iterator[Task]]
T = TypeVar("T")


class WorkerCalls:
    """A `CallSource` over the objects of a scan, keyed as `Finding.location` names them."""

    def __init__(
        self, items: Mapping[str, Item], runner: Runner, batches: Batches, parallel_bytes: int
    ) -> None:
        self._items = items
        self._keys = {item[0]: key for key, item in items.items()}
        self._runner = runner
        self._batches = batches
        self._parallel_bytes = parallel_bytes

    def calls(self, keys: Sequence[str]) -> Iterator[tuple[str, ObjectCalls]]:
        items = sorted(self._items[key] for key in keys)
        parallel = sum(item[3].length for item in items) >= self._parallel_bytes
        yield from self._read(items, "calls", parallel, lambda calls: calls)

    def site_lines(self, keys: Sequence[str]) -> Iterator[tuple[str, tuple[SiteLine, ...]]]:
        # Always in the workers, even for one small object: the DWARF of a large OCaml object takes
        # tens of MB to read, which the parent, holding the call graph, should not add to its peak.
        items = sorted(self._items[key] for key in keys)
        yield from self._read(items, "lines", True, lambda calls: calls.site_lines)

    def _read(
        self, items: Sequence[Item], mode: Mode, parallel: bool, part: Callable[[ObjectCalls], T]
    ) -> Iterator[tuple[str, T]]:
        for results in self._runner.run(self._batches(items, mode), parallel):
            for result in results:
                if result.calls is not None:
                    yield self._keys[result.index], part(result.calls)
