"""The pipeline: inputs -> objects -> functions -> stack analysis -> findings -> attribution.

The inputs are walked once here, which records every input problem in order and numbers the
objects; the objects are then analysed in batches, here or in forked workers (`workers.py`), and
their results are put back in walk order, so the output does not depend on `jobs`. Call edges
(`callgraph.object_calls`) only tell which OCaml code reaches a finding, so they are computed in a
second pass, and only when the run has findings and OCaml code or `external`s to reach them from.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from redzone_check.attribution.ocaml_externals import ExternalIndex
from redzone_check.attribution.paths import PathMapper
from redzone_check.cache import ResultCache, default_directory, salt
from redzone_check.callgraph import CallGraph
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
from redzone_check.workers import ObjectResult, Task, run_tasks

BATCH_BYTES = 512 * 1024
BATCH_OBJECTS = 64
PARALLEL_MIN_BYTES = 2 * 1024 * 1024  # below this, forking workers costs more than it saves

Item = tuple[int, str, "str | None", int]  # walk index, path, member, size


@dataclass
class _Walk:
    """The Sink for inputs: problems in walk order, with the objects' places among them."""

    mapper: PathMapper
    options: ScanOptions
    slots: list[InputProblem | Skipped | int] = field(default_factory=list)
    items: list[Item] = field(default_factory=list)

    def skip(self, path: str, member: str | None, reason: str, kind: SkipKind) -> None:
        self.slots.append(Skipped(self.mapper.binary(path), member, reason, kind))

    def error(self, path: str, member: str | None, message: str) -> None:
        self.slots.append(InputProblem(self.mapper.binary(path), member, message))

    def run(self, paths: Sequence[str]) -> None:
        excludes = self.options.excludes
        for index, blob in enumerate(iter_blobs(paths, self)):
            if excludes and any(path_matches(g, self.mapper.binary(blob.path)) for g in excludes):
                self.skip(blob.path, blob.member, "excluded by configuration", "excluded")
                continue
            self.slots.append(index)
            self.items.append((index, blob.path, blob.member, len(blob.data)))


def _batches(items: Sequence[Item], want_calls: bool = False, calls_only: bool = False) -> Iterator[Task]:
    batch: list[tuple[int, str, str | None]] = []
    size = 0
    for index, path, member, length in items:
        batch.append((index, path, member))
        size += length
        if size >= BATCH_BYTES or len(batch) >= BATCH_OBJECTS:
            yield Task(tuple(batch), want_calls, calls_only)
            batch, size = [], 0
    if batch:
        yield Task(tuple(batch), want_calls, calls_only)


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
    total = sum(item[3] for item in walk.items)
    jobs = max(1, options.jobs) if total >= PARALLEL_MIN_BYTES else 1
    results = _run(walk.items, _batches(walk.items), paths, options, cache, jobs, total)

    findings = [f for index in sorted(results) for f in results[index].findings]
    if findings:
        # The reach of a finding spans every object of the run, so it is attached last.
        externals = ExternalIndex.scan(options.source_root)
        graph = CallGraph()
        # Reach needs an OCaml caller, or an `external` declaration naming a C stub of the run.
        reachable = bool(externals.externals) or any(r.ocaml for r in results.values())
        if reachable and any(f.rule in REACH_RULES for f in findings):
            _add_calls(graph, walk.items, results, paths, options, cache, jobs, mapper)
        findings = attach(findings, graph, externals, options.source_root, mapper)
    if cache is not None and any(r.fresh for r in results.values()):
        cache.prune()
    return _result(len(paths), walk, results, findings, options)


def _run(
    items: Sequence[Item],
    tasks: Iterator[Task],
    paths: Sequence[str],
    options: ScanOptions,
    cache: ResultCache | None,
    jobs: int,
    total: int,
) -> dict[int, ObjectResult]:
    sizes = {item[0]: item[3] for item in items}
    progress = Progress(options.progress)
    results: dict[int, ObjectResult] = {}
    done = 0
    try:
        for batch in run_tasks(tasks, paths, options, cache, jobs):
            for result in batch:
                results[result.index] = result
                done += sizes.get(result.index, 0)
            progress.update(done, total, len(results))
    finally:
        progress.close()
    return results


def _add_calls(
    graph: CallGraph,
    items: Sequence[Item],
    results: dict[int, ObjectResult],
    paths: Sequence[str],
    options: ScanOptions,
    cache: ResultCache | None,
    jobs: int,
    mapper: PathMapper,
) -> None:
    missing = [item for item in items if results[item[0]].analysed and results[item[0]].calls is None]
    total = sum(item[3] for item in missing)
    found = _run(missing, _batches(missing, calls_only=True), paths, options, cache, jobs, total)
    for index, path, member, _size in items:
        result = results[index]
        if not result.analysed:
            continue  # corrupt or not applicable: no code, no calls
        calls = result.calls if result.calls is not None else found[index].calls
        if calls is not None:
            graph.add(binary_location(mapper.binary(path), member), calls)


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
