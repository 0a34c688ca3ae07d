"""Where a scan's call graph reads calls from: the workers decode the objects it asks for, by walk index."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence

from redzone_check.callgraph import SiteLine
from redzone_check.calls import ObjectCalls
from redzone_check.workers import Item, Mode, Runner, Task

Batches = Callable[[Sequence[Item], Mode], Iterator[Task]]


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
        parallel = sum(item[3] for item in items) >= self._parallel_bytes
        for results in self._runner.run(self._batches(items, "calls"), parallel):
            for result in results:
                if result.calls is not None:
                    yield self._keys[result.index], result.calls

    def site_lines(self, key: str) -> tuple[SiteLine, ...]:
        # In a worker, like the calls: the DWARF of a large OCaml object takes tens of MB to read.
        for results in self._runner.run(self._batches([self._items[key]], "lines")):
            for result in results:
                if result.calls is not None:
                    return result.calls.site_lines
        return ()
