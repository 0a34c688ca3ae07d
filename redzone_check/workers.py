"""Per-object work, run in this process or in forked workers, with the same code either way.

A task names objects by their number in the scan's walk of the inputs and by where the walk found
their bytes (`inputs.Where`), never by the bytes themselves: a worker maps the file and reads the
object there, so no object is pickled, memory stays flat, and a task may name objects in any order
(the OCaml reach reads calls in rounds, going back to objects analysed long before).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Literal

from redzone_check.archive import MappedFile, NotRegularFile
from redzone_check.attribute import Debug, findings_for, unit_findings
from redzone_check.attribution.ocaml_units import is_ocaml_symbol, ocaml_unit_names
from redzone_check.attribution.paths import PathMapper
from redzone_check.cache import ResultCache
from redzone_check.calls import ObjectCalls, ObjectSymbols, object_calls, object_symbols, with_site_lines
from redzone_check.detect import Detection, Hit, detect
from redzone_check.elf import ElfFile, NotApplicable
from redzone_check.errors import InputError
from redzone_check.functions import list_functions
from redzone_check.inputs import Blob, Where
from redzone_check.model import Finding, InputProblem, SkipKind, Skipped
from redzone_check.options import ScanOptions

if TYPE_CHECKING:
    from multiprocessing.pool import Pool

CHANGED = "changed while it was being scanned"
LTO_REASON = "GCC LTO object: GIMPLE bytecode only, no machine code to analyse (scan the linked output)"
Item = tuple[int, str, "str | None", Where]  # walk index, path, member, where the bytes are
# What a task asks of its objects: the analysis, or (for the call graph) their calls, or their calls
# with the source lines of OCaml call sites (a read of the DWARF: tens of MB for a large object).
Mode = Literal["analyse", "calls", "lines"]


@dataclass(frozen=True)
class Analysed:
    """What the bytes of one object say, whatever its path: the value the cache keeps."""

    functions: int = 0
    unknown: int = 0
    hits: tuple[Hit, ...] = ()
    ocaml: int = 0
    ocaml_units: tuple[str, ...] = ()
    symbols: ObjectSymbols | None = None
    calls: ObjectCalls | None = None  # computed only when a run's findings need the call graph
    lined: ObjectCalls | None = None  # the calls with call-site lines, once a reported chain needed them
    skip: tuple[str, SkipKind] | None = None
    error: str | None = None


@dataclass(frozen=True)
class ObjectResult:
    index: int
    findings: tuple[Finding, ...] = ()
    errors: tuple[InputProblem, ...] = ()
    skipped: tuple[Skipped, ...] = ()
    analysed: bool = False  # an x86-64 object whose functions were analysed
    functions: int = 0
    unknown: int = 0
    ocaml: int = 0
    symbols: ObjectSymbols | None = None  # for the call graph, which the scan may need once all is analysed
    calls: ObjectCalls | None = None
    fresh: bool = False  # analysed in this run rather than taken from the cache


@dataclass(frozen=True)
class Task:
    items: tuple[Item, ...]
    mode: Mode = "analyse"


def analyse(data: bytes | memoryview, prefilter: bool) -> Analysed:
    try:
        elf = ElfFile(data)
    except NotApplicable as exc:
        return Analysed(skip=(str(exc), "not-applicable"))
    except InputError as exc:
        return Analysed(error=f"corrupt ELF: {exc}")
    if elf.is_lto_only:
        return Analysed(skip=(LTO_REASON, "not-analysable"))
    try:
        detection = detect(elf, prefilter)
    except InputError as exc:
        return Analysed(error=f"corrupt ELF: {exc}")
    units = ocaml_unit_names(s.name for s in elf.symbols())
    return Analysed(
        functions=len(detection.functions),
        unknown=detection.unknown_functions,
        hits=detection.hits,
        ocaml=sum(is_ocaml_symbol(f.name, units) for f in detection.functions),
        ocaml_units=tuple(sorted(units)),
        symbols=object_symbols(detection.functions, units),
    )


def calls_of(data: bytes | memoryview) -> ObjectCalls:
    try:
        elf = ElfFile(data)
        return object_calls(elf, list_functions(elf))
    except (InputError, NotApplicable):  # analysed before, so not expected; no edges then
        return ObjectCalls((), ())


class Worker:
    """Turns tasks into results; one per process."""

    def __init__(self, options: ScanOptions, cache: ResultCache | None) -> None:
        self.options = options
        self.cache = cache
        self.mapper = PathMapper(options.source_root, options.path_maps)

    def run(self, task: Task) -> list[ObjectResult]:
        out = []
        files = _Files()
        try:
            for index, path, member, where in task.items:
                data = files.read(where)
                if data is None:
                    problem = InputProblem(self.mapper.binary(path), member, CHANGED)
                    out.append(ObjectResult(index, errors=(problem,)))
                    continue
                blob = Blob(path, member, data, where)
                if task.mode != "analyse":
                    calls, fresh = self._calls(blob, lines=task.mode == "lines")
                    out.append(ObjectResult(index, calls=calls, fresh=fresh))
                else:
                    out.append(self._object(index, blob))
                del blob, data  # the mapping may go when the next object is in another file
        finally:
            files.close()
        return out

    def _cached(self, blob: Blob) -> tuple[str | None, Analysed | None]:
        key = self.cache.key(blob.data) if self.cache else None
        found = self.cache.get(key) if self.cache and key else None
        return key, found if isinstance(found, Analysed) else None

    def _analysed(self, blob: Blob) -> tuple[Analysed, bool]:
        key, found = self._cached(blob)
        if found is not None:
            return found, False
        value = analyse(blob.data, self.options.prefilter)
        if self.cache and key:
            self.cache.put(key, value)
        return value, True

    def _calls(self, blob: Blob, lines: bool) -> tuple[ObjectCalls, bool]:
        """The object's calls; with `lines`, with the source lines of its OCaml call sites."""
        key, found = self._cached(blob)
        if found is not None:
            kept = found.lined if lines else found.calls
            if kept is not None:
                return kept, False
        calls = found.calls if found is not None and found.calls is not None else calls_of(blob.data)
        # Reading DWARF for the lines is most of a cached re-run's OCaml reach: keep them too.
        lined = with_site_lines(calls, blob.data) if lines else None
        if self.cache and key and found is not None:
            self.cache.put(key, replace(found, calls=calls, lined=lined or found.lined))
        return lined or calls, True

    def _object(self, index: int, blob: Blob) -> ObjectResult:
        result, fresh = self._analysed(blob)
        path, member = blob.path, blob.member
        shown = self.mapper.binary(path)
        if result.error is not None:
            return ObjectResult(index, errors=(InputProblem(shown, member, result.error),), fresh=fresh)
        if result.skip is not None:
            return ObjectResult(index, skipped=(Skipped(shown, member, *result.skip),), fresh=fresh)
        errors: list[InputProblem] = []
        findings: list[Finding] = []
        options = self.options
        if result.hits or options.require_no_red_zone_flag:
            units = set(result.ocaml_units)

            def hint(symbol: str) -> str | None:
                return "ocaml" if is_ocaml_symbol(symbol, units) else None

            def report(message: str) -> None:
                errors.append(InputProblem(shown, member, message))

            with Debug(blob.data, report) as debug:
                detection = Detection((), result.hits, result.unknown)
                findings.extend(findings_for(path, member, detection, debug, self.mapper, options, hint))
                if options.require_no_red_zone_flag:
                    findings.extend(unit_findings(path, member, debug, self.mapper))
        return ObjectResult(
            index,
            tuple(findings),
            tuple(errors),
            analysed=True,
            functions=result.functions,
            unknown=result.unknown,
            ocaml=result.ocaml,
            symbols=result.symbols,
            fresh=fresh,
        )


class _Files:
    """The file of the objects being read, mapped once for all of a task's objects in it."""

    def __init__(self) -> None:
        self._path: str | None = None
        self._mapping: MappedFile | None = None

    def read(self, where: Where) -> memoryview | None:
        """The bytes at `where`, or None when its file is no longer the one the walk mapped."""
        if where.path != self._path:
            self.close()
            self._path = where.path
            try:
                self._mapping = MappedFile(where.path)
            except (OSError, NotRegularFile):
                self._mapping = None
        mapping = self._mapping
        if mapping is None or mapping.identity != where.identity:
            return None
        if where.offset < 0 or where.offset + where.length > len(mapping.view):
            return None
        return mapping.view[where.offset : where.offset + where.length]

    def close(self) -> None:
        if self._mapping is not None:
            self._mapping.close()
        self._path = self._mapping = None


_worker: Worker | None = None


def _init(options: ScanOptions, cache: ResultCache | None) -> None:
    global _worker
    _worker = Worker(options, cache)


def _run(task: Task) -> list[ObjectResult]:
    assert _worker is not None
    return _worker.run(task)


class Runner:
    """Runs tasks here, or in `jobs` forked workers kept for every task this runner is given.

    Forked workers start as a copy of this process: they are forked at the first task run in
    parallel, so a scan gives its analysis to the runner before the call graph fills the process.
    """

    def __init__(self, options: ScanOptions, cache: ResultCache | None, jobs: int) -> None:
        self._args = (options, cache)
        self.jobs = jobs
        self._pool: Pool | None = None
        self._local: Worker | None = None

    def __enter__(self) -> Runner:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.terminate()
            self._pool.join()
            self._pool = None

    def run(self, tasks: Iterable[Task], parallel: bool = True) -> Iterator[list[ObjectResult]]:
        """Results of each task, in task order."""
        if self.jobs <= 1 or not parallel:
            if self._local is None:
                self._local = Worker(*self._args)
            yield from map(self._local.run, tasks)
            return
        if self._pool is None:
            # Imported here: a scan small enough for one process never pays for it.
            import multiprocessing

            # fork: the workers start with the engine imported and share nothing they write.
            context = multiprocessing.get_context("fork")
            self._pool = context.Pool(self.jobs, initializer=_init, initargs=self._args)
        yield from self._pool.imap(_run, tasks)
