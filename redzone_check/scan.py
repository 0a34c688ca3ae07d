"""The pipeline: inputs -> objects -> functions -> stack analysis -> findings -> attribution.

The inputs are walked once here, which records every input problem in order and numbers the
objects; the objects are then analysed in batches, here or in forked workers (`workers.py`), and
their results are put back in walk order, so the output does not depend on `jobs`. Calls only tell
which OCaml code reaches a finding: the analysis hands each object's symbols to the call graph, and
only when the run has findings and OCaml code or `external`s to reach them from does the graph have
the workers decode calls, of the objects the reach search can walk.

An object whose bytes equal an earlier object's of the same run (a copied archive, a member shared by
two archives) is not analysed again when its original's result holds nothing that depends on the
path: that result is re-pathed in its place (`_Copies`).
"""

from __future__ import annotations

import functools
import hashlib
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from redzone_check.attribution.ocaml_externals import ExternalIndex
from redzone_check.attribution.paths import PathMapper
from redzone_check.cache import ResultCache, default_directory, salt
from redzone_check.callgraph import CallGraph
from redzone_check.callsource import WorkerCalls
from redzone_check.inputs import iter_blobs
from redzone_check.model import (
    LEVELS,
    Finding,
    InputProblem,
    ScanResult,
    SkipKind,
    Skipped,
    Summary,
    binary_location,
)
from redzone_check.options import ScanOptions
from redzone_check.progress import Progress
from redzone_check.reach import REACH_RULES, attach
from redzone_check.suppress import path_matches
from redzone_check.workers import Item, Mode, ObjectResult, Runner, Task

BATCH_BYTES = 512 * 1024
BATCH_OBJECTS = 64
PARALLEL_MIN_BYTES = 2 * 1024 * 1024  # below this, forking workers costs more than it saves


@dataclass
class _Walk:
    """The Sink for inputs: problems in walk order, with the objects' places among them."""

    mapper: PathMapper
    options: ScanOptions
    slots: list[InputProblem | Skipped | int] = field(default_factory=list)
    items: list[Item] = field(default_factory=list)
    copies: dict[int, int] = field(default_factory=dict)  # walk index of a copy -> its original's

    def skip(self, path: str, member: str | None, reason: str, kind: SkipKind) -> None:
        self.slots.append(Skipped(self.mapper.binary(path), member, reason, kind))

    def error(self, path: str, member: str | None, message: str) -> None:
        self.slots.append(InputProblem(self.mapper.binary(path), member, message))

    def run(self, paths: Sequence[str]) -> None:
        excludes = self.options.excludes
        # With RZ003 most objects of a -g build have findings, which a copy cannot take from its
        # original (see `_Copies`): copies are then left to the workers like any other object.
        first: dict[bytes, int] | None = None if self.options.require_no_red_zone_flag else {}
        for index, blob in enumerate(iter_blobs(paths, self)):
            if excludes and any(path_matches(g, self.mapper.binary(blob.path)) for g in excludes):
                self.skip(blob.path, blob.member, "excluded by configuration", "excluded")
                continue
            self.slots.append(index)
            self.items.append((index, blob.path, blob.member, blob.where))
            if first is not None:
                original = first.setdefault(content_key(blob.data), index)
                if original != index:
                    self.copies[index] = original


def content_key(data: bytes | memoryview) -> bytes:
    # sha256 rather than blake2b: with the CPU's SHA extensions it hashes over 1 GB/s, a third of a
    # second for the 493 MB of every static archive on a Debian machine.
    return hashlib.sha256(data).digest()


def _batches(items: Sequence[Item], mode: Mode = "analyse", spread: int = 1) -> Iterator[Task]:
    objects = BATCH_OBJECTS
    if mode == "lines":
        # Reading an object's DWARF lines takes milliseconds and a run reads a few: one object per
        # task, so that every worker takes some.
        objects = 1
    elif mode == "calls":
        # A round of the reach reads a few dozen objects while the `spread` workers wait for it:
        # two tasks each, so that none waits for the others' last one.
        objects = min(BATCH_OBJECTS, max(1, -(-len(items) // (2 * spread))))
    batch: list[Item] = []
    size = 0
    for item in items:
        batch.append(item)
        size += item[3].length
        if size >= BATCH_BYTES or len(batch) >= objects:
            yield Task(tuple(batch), mode)
            batch, size = [], 0
    if batch:
        yield Task(tuple(batch), mode)


def open_cache(options: ScanOptions) -> ResultCache | None:
    if not options.use_cache:
        return None
    directory = Path(options.cache_dir) if options.cache_dir else default_directory()
    # Only what changes the path-independent analysis; attribution is redone on every run.
    return ResultCache.open(directory, salt(("prefilter" if options.prefilter else "no-prefilter",)))


def scan(paths: Sequence[str], options: ScanOptions) -> ScanResult:
    mapper = PathMapper(options.source_root, options.path_maps)
    walk = _Walk(mapper, options)
    walk.run(paths)
    cache = open_cache(options)
    total = sum(item[3].length for item in walk.items)
    originals = [item for item in walk.items if item[0] not in walk.copies]
    jobs = max(1, options.jobs) if sum(item[3].length for item in originals) >= PARALLEL_MIN_BYTES else 1
    # Every object's symbols go to the graph as they come (in walk order: a later object of the same
    # name replaces an earlier one); its calls are read later, and only if a finding needs them.
    graph = CallGraph()
    places = {item[0]: item for item in walk.items}
    results: dict[int, ObjectResult] = {}
    copies = _Copies(walk)
    # One runner for the analysis and the reach: its workers are forked at the first batch, before
    # the call graph fills this process, and read the calls later without a second fork.
    with Runner(options, cache, jobs) as runner:
        batches = copies.merge(runner.run(_batches(originals)))
        for index, result in _stream(walk.items, batches, options, total):
            if result.symbols is not None:
                graph.add_symbols(_location(mapper, places[index]), result.symbols)
                result = replace(result, symbols=None)
            results[index] = result
        # Copies whose originals had findings or errors: the graph already has their symbols.
        for batch in runner.run(_batches(copies.late)):
            results.update((result.index, replace(result, symbols=None)) for result in batch)

        findings = [f for index in sorted(results) for f in results[index].findings]
        if findings:
            # The reach of a finding spans every object of the run, so it is attached last.
            externals = ExternalIndex.scan(options.source_root)
            # Reach needs an OCaml caller, or an `external` declaration naming a C stub of the run.
            reachable = bool(externals.externals) or any(r.ocaml for r in results.values())
            if reachable and any(f.rule in REACH_RULES for f in findings):
                objects = {_location(mapper, item): item for item in walk.items if results[item[0]].analysed}
                copied_from = {copy: places[original] for copy, original in walk.copies.items()}
                # The workers are forked by now: even a round of a few objects is worth spreading.
                threshold = 0 if jobs > 1 else PARALLEL_MIN_BYTES
                spread = functools.partial(_batches, spread=jobs)
                graph.source = WorkerCalls(objects, runner, spread, threshold, copied_from)
            else:
                graph = CallGraph()
            findings = attach(findings, graph, externals, options.source_root, mapper)
    if cache is not None and any(r.fresh for r in results.values()):
        cache.prune()
    return _result(len(paths), walk, results, findings, options)


def _stream(
    items: Sequence[Item], batches: Iterator[list[ObjectResult]], options: ScanOptions, total: int
) -> Iterator[tuple[int, ObjectResult]]:
    sizes = {item[0]: item[3].length for item in items}
    progress = Progress(options.progress)
    done = count = 0
    try:
        for batch in batches:
            for result in batch:
                yield result.index, result
                done += sizes.get(result.index, 0)
                count += 1
            progress.update(done, total, count)
    finally:
        progress.close()


class _Copies:
    """The results of the walk's copies, put among the analysed objects' results in walk order.

    The graph takes symbols in walk order, and so does the progress line. A copy's original comes
    earlier in the walk, so its result has always arrived by the time the copy's place comes.

    A copy whose original has findings or errors still has to be analysed (`late`): findings are
    attributed with the path (binary path, the note of an object without flags), and an error may
    be the original's own ("changed while it was being scanned"). Which copies these are is only
    known once the original is analysed, too late for the workers' tasks of this round unless every
    later result waited for them. But their symbols and counts are the original's, so the graph
    gets those at the copy's place, and the workers analyse the copies afterwards, in a round of
    their own (63 of the 3,441 copies of every static archive on a Debian machine).
    """

    def __init__(self, walk: _Walk) -> None:
        self._mapper = walk.mapper
        self._of = walk.copies
        self._places = {item[0]: item for item in walk.items if item[0] in walk.copies}
        self._pending = deque(sorted(walk.copies))
        # An original's result is kept, symbols and all, only until its last copy has been given one.
        self._last = {original: copy for copy, original in sorted(walk.copies.items())}
        self._originals: dict[int, ObjectResult] = {}
        self.late: list[Item] = []

    def merge(self, batches: Iterator[list[ObjectResult]]) -> Iterator[list[ObjectResult]]:
        """`batches` (the originals' results, ascending) with the copies' results in their places."""
        for batch in batches:
            merged: list[ObjectResult] = []
            for result in batch:
                merged.extend(self._until(result.index))
                merged.append(result)
                if result.index in self._last:
                    self._originals[result.index] = result
            yield merged
        if self._pending:
            yield list(self._until(None))

    def _until(self, index: int | None) -> Iterator[ObjectResult]:
        while self._pending and (index is None or self._pending[0] < index):
            copy = self._pending.popleft()
            original = self._of[copy]
            result = self._originals[original]
            if self._last[original] == copy:
                del self._originals[original]
            _, path, member, _ = place = self._places[copy]
            derived = _derived(result, copy, self._mapper.binary(path), member)
            if derived is None:
                self.late.append(place)
                derived = replace(result, index=copy, findings=(), errors=(), fresh=False)
            yield derived


def _derived(original: ObjectResult, index: int, shown: str, member: str | None) -> ObjectResult | None:
    """The result of a byte-identical copy at `shown` and `member`, when nothing in it depends on the path.

    An analysed object without findings or errors had nothing attributed: every hit makes a finding,
    and so does every unit of RZ003. Its counts and symbols are the copy's; a skipped one names
    only its path.
    """
    if original.findings or original.errors:
        return None
    if original.analysed:
        return replace(original, index=index, fresh=False)
    if original.skipped:
        skipped = tuple(replace(s, path=shown, member=member) for s in original.skipped)
        return replace(original, index=index, skipped=skipped, fresh=False)
    return None


def _location(mapper: PathMapper, item: Item) -> str:
    return binary_location(mapper.binary(item[1]), item[2])


def _result(
    inputs: int,
    walk: _Walk,
    results: dict[int, ObjectResult],
    findings: list[Finding],
    options: ScanOptions,
) -> ScanResult:
    errors: list[InputProblem] = []
    skipped: list[Skipped] = []
    for slot in walk.slots:
        if isinstance(slot, int):
            errors.extend(results[slot].errors)
            skipped.extend(results[slot].skipped)
        elif isinstance(slot, Skipped):
            skipped.append(slot)
        else:
            errors.append(slot)
    findings = sorted(findings, key=lambda f: (f.path, f.member or "", f.section, f.section_offset, f.rule))
    counts: dict[str, int] = {level: 0 for level in LEVELS}
    for finding in findings:
        counts[finding.level] += 1
    kinds = [s.kind for s in skipped]
    analysed = [r for r in results.values() if r.analysed]
    summary = Summary(
        inputs=inputs,
        objects=len(analysed),
        functions=sum(r.functions for r in analysed),
        functions_unknown=sum(r.unknown for r in analysed),
        ocaml_functions=sum(r.ocaml for r in analysed),
        findings=counts,
        skipped=len(skipped),
        not_analysable=kinds.count("not-analysable"),
        not_applicable=kinds.count("not-applicable"),
        errors=len(errors),
    )
    return ScanResult(
        tuple(findings),
        tuple(errors),
        tuple(skipped),
        summary,
        platform=options.platform,
        source_root=options.source_root,
    )
