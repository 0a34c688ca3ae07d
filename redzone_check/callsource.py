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
        self,
        items: Mapping[str, Item],
        runner: Runner,
        batches: Batches,
        parallel_bytes: int,
        copied_from: Mapping[int, Item] | None = None,
    ) -> None:
        self._items = items
        self._runner = runner
        self._batches = batches
        self._parallel_bytes = parallel_bytes
        # Walk index of a byte-identical copy -> its original's item: calls and call-site lines
        # depend only on the bytes, so a copy's are read from its original, once for both.
        self._copied_from = copied_from or {}

    def calls(self, keys: Sequence[str]) -> Iterator[tuple[str, ObjectCalls]]:
        wanted = self._wanted(keys)
        parallel = sum(item[3].length for item in wanted.values()) >= self._parallel_bytes
        yield from self._read(wanted, "calls", parallel, lambda calls: calls)

    def site_lines(self, keys: Sequence[str]) -> Iterator[tuple[str, tuple[SiteLine, ...]]]:
        # Always in the workers, even for one small object: the DWARF of a large OCaml object takes
        # tens of MB to read, which the parent, holding the call graph, should not add to its peak.
        yield from self._read(self._wanted(keys), "lines", True, lambda calls: calls.site_lines)

    def _wanted(self, keys: Sequence[str]) -> dict[str, Item]:
        """Each key -> the item to read for it: its own, or its original's when it is a copy."""
        wanted = {}
        for key in keys:
            item = self._items[key]
            wanted[key] = self._copied_from.get(item[0], item)
        return wanted

    def _read(
        self, wanted: Mapping[str, Item], mode: Mode, parallel: bool, part: Callable[[ObjectCalls], T]
    ) -> Iterator[tuple[str, T]]:
        keys_of: dict[int, list[str]] = {}
        for key, item in wanted.items():
            keys_of.setdefault(item[0], []).append(key)
        items = sorted({item[0]: item for item in wanted.values()}.values())
        for results in self._runner.run(self._batches(items, mode), parallel):
            for result in results:
                if result.calls is not None:
                    value = part(result.calls)
                    for key in keys_of[result.index]:
                        yield key, value
