"""The runner: calls the stages of a run in order and records, for all of them
in one place, progress, timing, the catalog's lineage edges and the summary.

A run may start at a later stage (``--from``): the stages before it are not
called, and their persisted outputs are taken from the last run that completed
them, after checking that those outputs are still what that stage would make
now (same settings, same code version, still the latest version in the lake,
and made from the very inputs the run reuses).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .. import __version__
from ..errors import SpecError, StageError
from ._context import Reporter, RunContext
from ._project import Project
from ._stage import (
    DATASET,
    PERSISTED,
    ArtifactRef,
    DatasetRef,
    Stage,
    StageResult,
    ref_from_dict,
    refs,
)


def merge(into: dict[str, Any], entries: dict[str, Any]) -> dict[str, Any]:
    """Merge summary entries: nested dictionaries key by key, the rest replaced."""
    for key, value in entries.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            merge(into[key], value)
        else:
            into[key] = value
    return into


def digest(obj: Any) -> str:
    """The sha256 of a JSON-able value, keys sorted: equal values, equal digests
    (write ids, settings)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()
                          ).hexdigest()


@dataclass(frozen=True)
class Plan:
    """The stages a run calls, and those before them whose outputs it reuses."""

    run: list[Stage]
    reuse: list[Stage]


class Runner:
    """Runs a list of stages in order.

    Parameters
    ----------
    stages : sequence of Stage
        In the order they run; each may read only what an earlier one writes.
    """

    def __init__(self, *, stages: Sequence[Stage]):
        self.stages = list(stages)

    # the graph -----------------------------------------------------------------
    def producers(self) -> dict[str, Stage]:
        """Product name -> the stage that writes it; checks the stage list."""
        out: dict[str, Stage] = {}
        names: set[str] = set()
        for s in self.stages:
            if not isinstance(s, Stage):
                raise StageError(f"{s!r} is not a stage: declare it with "
                                 f"@mlsd.runtime.stage")
            if s.name in names:
                raise StageError(f"two stages are named {s.name!r}")
            names.add(s.name)
            for product in s.reads:
                if product not in out:
                    raise StageError(
                        f"stage {s.name!r} reads {product!r}, which no stage "
                        f"before it writes (written so far: "
                        f"{', '.join(out) or 'nothing'})")
            for product in s.writes:
                if product in out:
                    raise StageError(f"stages {out[product].name!r} and {s.name!r} "
                                     f"both write {product!r}")
                out[product] = s
        return out

    def _index(self, name: str, option: str) -> int:
        for i, s in enumerate(self.stages):
            if s.name == name:
                return i
        raise StageError(f"{option}: no stage {name!r}; the stages are "
                         f"{', '.join(s.name for s in self.stages)}")

    def why_not_from(self, name: str, until: str | None = None) -> str | None:
        """Why a run cannot start at stage ``name`` (None when it can): a
        stage it runs reads a product that an earlier stage keeps in memory."""
        producers = self.producers()
        start = self._index(name, "--from")
        stop = self._index(until, "--until") if until else len(self.stages) - 1
        for s in self.stages[start:stop + 1]:
            for product in s.reads:
                maker = producers[product]
                if (self.stages.index(maker) < start
                        and maker.writes[product] not in PERSISTED):
                    return (f"stage {s.name!r} reads {product!r}, which stage "
                            f"{maker.name!r} keeps in memory only")
        return None

    def startable(self) -> list[str]:
        """The stages a whole run (to the last stage) can start at."""
        return [s.name for s in self.stages if self.why_not_from(s.name) is None]

    def plan(self, from_: str | None = None, until: str | None = None) -> Plan:
        """The stages to call and the stages to reuse, or a clear error."""
        self.producers()
        start = self._index(from_, "--from") if from_ else 0
        stop = (self._index(until, "--until") if until
                else len(self.stages) - 1)
        if stop < start:
            raise StageError(f"--until {until} comes before --from {from_}: the "
                             f"stages run in the order "
                             f"{', '.join(s.name for s in self.stages)}")
        if from_:
            why = self.why_not_from(from_, until)
            if why:
                can = [s.name for s in self.stages[:stop + 1]
                       if self.why_not_from(s.name, until) is None]
                raise StageError(
                    f"--from {from_}: {why}, so a run cannot start there. "
                    f"Start from one of: {', '.join(can)}")
        return Plan(run=self.stages[start:stop + 1], reuse=self.stages[:start])

    def check(self, ctx: RunContext, stages: Sequence[Stage] | None = None
              ) -> None:
        """Raise a :class:`SpecError` naming every spec path that does not fit
        the data, as the stages' ``check`` hooks see it (nothing runs)."""
        problems = [p for s in (self.stages if stages is None else stages)
                    if s.check is not None for p in s.check(ctx)]
        if problems:
            lines = [f"{path}: {msg}" for path, msg in problems]
            raise SpecError("mlsd.yaml does not fit the data:\n  "
                            + "\n  ".join(lines), problems=problems)

    # running -----------------------------------------------------------------
    def run(self, ctx: RunContext, *, from_: str | None = None,
            until: str | None = None) -> dict[str, Any]:
        """Call the planned stages; return the run summary (``ctx.summary``)."""
        plan = self.plan(from_, until)
        entries: list[dict[str, Any]] = []
        ctx.summary["stages"] = entries
        products = self._reuse(ctx, plan, entries)
        self.check(ctx, plan.run)
        for s in plan.run:
            products.update(self._call(ctx, s, products, entries))
        ctx.summary["stages"] = ctx.summary.pop("stages")  # listed last
        return ctx.summary

    def _call(self, ctx: RunContext, s: Stage, products: dict[str, Any],
              entries: list[dict[str, Any]]) -> dict[str, Any]:
        inputs = {p: products[p] for p in s.reads}
        started_at = datetime.now(UTC).isoformat(timespec="milliseconds")
        started = time.perf_counter()
        with ctx.reporter.stage(s.name) as step:
            try:
                result = s(ctx, **inputs)
                self._check_result(s, result)
            except BaseException as err:
                told = None
                if ctx.spec.engine.kind == "spark":  # an mlsd error in a task
                    from ..engine._spark import told_by_a_task

                    told = told_by_a_task(err)
                ctx.catalog.add_stage_run(
                    run_id=ctx.run_id, stage=s.name, status="failed",
                    started_at=started_at, seconds=time.perf_counter() - started,
                    settings={}, code_version=__version__,
                    reads=[r.node for p in s.reads for r in refs(inputs[p])],
                    outputs={}, summary={},
                    error=f"{type(told or err).__name__}: {told or err}")
                if told is not None:
                    raise told from None
                raise
            used = {p: result.used.get(p, inputs[p]) for p in s.reads}
            read_nodes = [r.node for p in s.reads for r in refs(used[p])]
            written = self._record_lineage(ctx, s, used, result.outputs)
            if result.note:
                step.note(result.note)
        seconds = round(time.perf_counter() - started, 3)
        # as they are now that the stage ran (ingest freezes inferred schemas)
        settings = s.settings_of(ctx)
        merge(ctx.summary, result.summary)
        entries.append({"stage": s.name, "status": "ran", "seconds": seconds,
                        "reads": read_nodes, "writes": written})
        stored = {p: _stored(v) for p, v in result.outputs.items()
                  if s.writes[p] in PERSISTED}
        ctx.catalog.add_stage_run(
            run_id=ctx.run_id, stage=s.name, status="done", started_at=started_at,
            seconds=seconds, settings=settings, code_version=__version__,
            reads=read_nodes, outputs=stored, summary=result.summary)
        return result.outputs

    @staticmethod
    def _check_result(s: Stage, result: Any) -> None:
        if not isinstance(result, StageResult):
            raise StageError(f"stage {s.name!r} returned {type(result).__name__}; "
                             f"a stage returns a StageResult")
        unread = [p for p in result.used if p not in s.reads]
        if unread:
            raise StageError(f"stage {s.name!r} says it used {unread}, which it "
                             f"does not read")
        missing = [p for p in s.writes if p not in result.outputs]
        extra = [p for p in result.outputs if p not in s.writes]
        if missing or extra:
            raise StageError(
                f"stage {s.name!r} declares writes {sorted(s.writes)} but returned "
                f"{sorted(result.outputs)}"
                + (f" (missing {missing})" if missing else "")
                + (f" (undeclared {extra})" if extra else ""))
        for product, kind in s.writes.items():
            if kind not in PERSISTED:
                continue
            value = result.outputs[product]
            items = value if isinstance(value, list | tuple) else [value]
            want = DatasetRef if kind == DATASET else ArtifactRef
            if not all(isinstance(v, want) for v in items):
                raise StageError(f"stage {s.name!r}: {product!r} is a {kind}; "
                                 f"return a {want.__name__} (or a list of them)")

    @staticmethod
    def _record_lineage(ctx: RunContext, s: Stage, inputs: dict[str, Any],
                        outputs: dict[str, Any]) -> list[str]:
        """Register what the stage wrote, with an edge from each thing it read."""
        cat = ctx.catalog
        written = []
        for product, kind in s.writes.items():
            for ref in refs(outputs[product]) if kind in PERSISTED else []:
                if isinstance(ref, DatasetRef):
                    cat.add_dataset_version(ref.area, ref.name, ref.version,
                                            write_id=ref.write_id or "",
                                            rows=ref.rows, run_id=ctx.run_id)
                else:
                    cat.add_artifact(ref.artifact_id, kind=ref.kind, path=ref.path,
                                     run_id=ctx.run_id, metadata=ref.metadata)
                written.append(ref.node)
                for read in s.reads:
                    for src in refs(inputs[read]):
                        cat.add_edge(src.node, ref.node, s.relation(read),
                                     ctx.run_id)
        return written

    # reusing -------------------------------------------------------------------
    def _reuse(self, ctx: RunContext, plan: Plan, entries: list[dict[str, Any]]
               ) -> dict[str, Any]:
        """The persisted outputs of the stages before the first one called,
        from the last run that completed each, checked to be still valid."""
        products: dict[str, Any] = {}
        if not plan.reuse:
            return products
        first = plan.run[0].name
        for s in plan.reuse:
            rec = ctx.catalog.last_stage_run(s.name)
            if rec is None:
                raise StageError(
                    f"--from {first} reuses what stage {s.name!r} wrote, but no run "
                    f"of this project has completed {s.name!r} yet: run `mlsd run` "
                    f"(or `mlsd run --until {s.name}`) first")
            again = f"start from {s.name!r} (`mlsd run --from {s.name}`)"
            if rec["code_version"] != __version__:
                raise StageError(
                    f"--from {first}: stage {s.name!r} last ran (run "
                    f"{rec['run_id']}) with mlsd {rec['code_version']}, this is "
                    f"mlsd {__version__}; {again}")
            changed = _changed(rec["settings"], s.settings_of(ctx))
            if changed:
                raise StageError(
                    f"--from {first}: what stage {s.name!r} depends on changed "
                    f"since run {rec['run_id']} ({', '.join(changed)}); {again}")
            available = {r.node for p in s.reads for r in refs(products.get(p))}
            stale = sorted(set(rec["reads"]) - available)
            if stale:
                raise StageError(
                    f"--from {first}: stage {s.name!r} in run {rec['run_id']} read "
                    f"{', '.join(stale)}, but the run would reuse "
                    f"{', '.join(sorted(available)) or 'nothing'}; {again}")
            outputs = {p: ref_from_dict(v) for p, v in rec["outputs"].items()}
            for value in outputs.values():
                for ref in refs(value):
                    _still_there(ctx, s, rec["run_id"], ref, again)
            products.update(outputs)
            merge(ctx.summary, rec["summary"])
            entries.append({"stage": s.name, "status": "reused",
                            "run_id": rec["run_id"], "seconds": 0.0,
                            "reads": rec["reads"],
                            "writes": [r.node for v in outputs.values()
                                       for r in refs(v)]})
        return products


def _stored(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return [v.to_dict() for v in value]
    return value.to_dict()


def _changed(before: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """The settings that differ, named by their path."""
    out = []
    for key in sorted(set(before) | set(now)):
        a, b = before.get(key), now.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += [f"{key}.{k}" for k in _changed(a, b)]
        elif digest(a) != digest(b):
            out.append(key)
    return out


def _still_there(ctx: RunContext, s: Stage, run_id: str,
                 ref: DatasetRef | ArtifactRef, again: str) -> None:
    if isinstance(ref, DatasetRef):
        changes = ctx.lake.changes_since(ref.area, ref.name, ref.version)
        if changes:
            raise StageError(
                f"stage {s.name!r} wrote {ref.dataset}@{ref.version} in run "
                f"{run_id}, but the dataset changed since, outside a run (version "
                f"{', '.join(changes)}: an `mlsd ingest`, `quarantine replay` or "
                f"`lake delete`); {again}")
    elif not (ctx.root / ref.path).exists():
        raise StageError(f"stage {s.name!r} wrote {ref.kind} {ref.artifact_id} in "
                         f"run {run_id}, but {ref.path} is gone; {again}")


@contextmanager
def recorded_run(project: Project, *, prefix: str = "r",
                 reporter: Reporter | None = None) -> Iterator[RunContext]:
    """A run recorded in the project's catalog: started when entered, finished
    as done with ``ctx.summary`` (its ``seconds`` set), or as failed with the
    error. The summary starts with the run's id, times, spec hash and version."""
    from ..spec import spec_hash

    # the lock first: a run that waited for another starts (and is named,
    # and names its model) when it really starts
    with run_lock(project):
        started = time.perf_counter()
        started_at = datetime.now(UTC)
        run_id = prefix + started_at.strftime("%Y%m%dT%H%M%S%f")
        s_hash = spec_hash(project.spec)
        ctx = RunContext(project=project, run_id=run_id, started_at=started_at,
                         reporter=reporter or Reporter(), spec_hash=s_hash)
        ctx.summary.update({
            "run_id": run_id, "project": project.spec.name,
            "started_at": started_at.isoformat(), "seconds": 0.0,
            "spec_hash": s_hash, "code_version": __version__})
        catalog = project.catalog
        catalog.start_run(run_id, spec_hash=s_hash, code_version=__version__)
        try:
            yield ctx
        except BaseException as err:
            catalog.finish_run(run_id, status="failed", summary={"error": str(err)})
            raise
        ctx.summary["seconds"] = round(time.perf_counter() - started, 3)
        catalog.finish_run(run_id, status="done", summary=ctx.summary)


@contextmanager
def run_lock(project: Project) -> Iterator[None]:
    """Hold the project's run lock (one run, replay, erasure or vacuum at a
    time; :mod:`mlsd.lake._locks`), and first clear what dead runs left: a
    run still recorded as running is marked ``killed``, and the work folders
    of loads under ``.mlsd/tmp/`` are removed (no live run can own them while
    this process holds the lock)."""
    import shutil

    from ..lake._locks import hold, lock_path

    with hold(lock_path(project.home, "run"), "the project's lake"):
        if (project.home / "catalog.db").exists():
            project.catalog.mark_killed()
        tmp = project.home / "tmp"
        if tmp.is_dir():
            for leftover in tmp.iterdir():
                shutil.rmtree(leftover, ignore_errors=True)
        if project.lake.url is not None:  # Spark's scratch on the store
            from ..lake._store import remove

            remove(project.lake.scratch())
        yield


def check_stages(project: Project | str | None, stages: Sequence[Stage]) -> None:
    """Check the spec against the data schemas (frozen, or inferred from the
    sources) with every stage's ``check`` hook, before anything runs."""
    project = Project.of(project)
    ctx = RunContext(project=project, run_id="check",
                     started_at=datetime.now(UTC))
    Runner(stages=stages).check(ctx)


def execute(project: Project | str | None, stages: Sequence[Stage], *,
            from_: str | None = None, until: str | None = None,
            reporter: Reporter | None = None, prefix: str = "r") -> dict[str, Any]:
    """One run of ``stages`` on a project, recorded in its catalog.

    Returns the run summary: the run's id, times and spec hash, every stage's
    summary entries, and the list of stages with what each read and wrote.
    """
    project = Project.of(project)
    runner = Runner(stages=stages)
    runner.plan(from_, until)  # a usage mistake is said before anything runs
    with recorded_run(project, prefix=prefix, reporter=reporter) as ctx:
        if from_ or until:
            ctx.summary["partial"] = {"from": from_, "until": until}
        runner.run(ctx, from_=from_, until=until)
    return ctx.summary
