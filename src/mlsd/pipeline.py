"""The whole run, stage after stage: what ``mlsd run`` does.

``STAGES`` lists the stages of a run, each a function in its stage's package
that declares what it reads and writes:

    ingest -> table -> sample -> split -> features -> train -> audit -> register
    -> report -> track

:func:`run` hands them to the runner (:mod:`mlsd.runtime`), which records the
progress, timing, lineage edges and summary of each; a run can stop after a
stage (``until``) or start at a later one (``from_``) where everything that
stage needs is persisted. The other functions here are the project-level
commands around a run: ingest only, replay the quarantine, erase rows, vacuum,
query with SQL, batch scoring.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .audit import audit
from .errors import DataError, LakeError, ModelError, SpecError
from .etl import ingest as ingest_stage
from .features import features
from .models import register, train_model
from .report import report, track
from .runtime import (
    Project,
    Reporter,
    Runner,
    Stage,
    check_stages,
    execute,
    recorded_run,
    run_lock,
)
from .trainingdata import sample, split, table

if TYPE_CHECKING:
    import pyarrow as pa

    from .lake import Lake
    from .spec import SampleSpec

# the commands around a run import the connectors, pyarrow and the lake where
# they use them: `mlsd spec check` and `mlsd stages` load none of them

__all__ = ["STAGES", "Project", "Reporter", "aggregate_labels",
           "apply_label_functions", "check",
           "delete_rows", "exclude_label_source", "gc", "import_labels", "ingest",
           "import_feedback", "import_prediction_log", "label_agreement",
           "natural_labels", "next_to_label", "export_to_label",
           "pretrain_embeddings", "pseudo_label",
           "simulate_active",
           "compare_models", "export_model", "monitor", "promote_model",
           "prune_features",
           "replay_quarantine", "rollback_model", "run", "sample_dataset",
           "score_file", "sql", "stages", "track_run", "tune", "vacuum"]

STAGES: tuple[Stage, ...] = (ingest_stage, table, sample, split, features,
                             train_model, audit, register, report, track)
"""The stages of ``mlsd run``, in order. To add one, write a function with
:func:`mlsd.runtime.stage` and put it in this list (or pass your own list to
:func:`run`)."""

_SHA256 = re.compile(r"\b[0-9a-f]{64}\b")


def run(project: Project | str | Path | None = None, *,
        reporter: Reporter | None = None, from_: str | None = None,
        until: str | None = None, stages: tuple[Stage, ...] | list[Stage] = STAGES,
        engine: str | None = None) -> dict[str, Any]:
    """Run the stages on a project; return the run summary.

    Parameters
    ----------
    project : Project, or a path to a project folder or spec file
        By default, the project of the current folder.
    reporter : Reporter, optional
        Receives progress (the command line draws it with Rich).
    from_ : str, optional
        Start at this stage, reusing the persisted outputs of the stages
        before it from the last run that completed them (see :func:`stages`
        for where a run can start).
    until : str, optional
        Stop after this stage.
    stages : sequence of Stage
        The stages to run, in order (default :data:`STAGES`).
    engine : str, optional
        ``duckdb`` or ``spark``: the spec's ``engine.kind`` for this run (its
        other engine settings kept), as ``mlsd run --engine``.

    Examples
    --------
    >>> import mlsd
    >>> summary = mlsd.run("demo")                       # doctest: +SKIP
    >>> summary = mlsd.run("demo", from_="features")     # doctest: +SKIP
    >>> summary = mlsd.run("demo", engine="spark")       # doctest: +SKIP
    """
    if engine is not None:
        project = Project.of(project)
        chosen = {**project.spec.engine.model_dump(), "kind": engine}
        project = project.with_overrides([f"engine={json.dumps(chosen)}"])
    return execute(project, stages, from_=from_, until=until, reporter=reporter)


def check(project: Project | str | Path | None = None,
          stages: tuple[Stage, ...] | list[Stage] = STAGES) -> None:
    """Check the spec against the data, as a run would before its first stage:
    the columns it names exist and have the types their use needs (a time
    split on timestamps or numbers, a regression target of numbers, ...).

    Raises
    ------
    SpecError
        Naming the spec path of every problem.
    """
    check_stages(project, stages)


def stages(stage_list: tuple[Stage, ...] | list[Stage] = STAGES
           ) -> list[dict[str, Any]]:
    """The stages of a run: what each reads and writes, and whether a run can
    start there (``--from``), or why not."""
    runner = Runner(stages=stage_list)
    producers = runner.producers()
    out = []
    for s in stage_list:
        why = runner.why_not_from(s.name)
        out.append({
            "stage": s.name, "module": s.fn.__module__.rsplit("._", 1)[0],
            "reads": {p: producers[p].writes[p] for p in s.reads},
            "writes": dict(s.writes), "can_start_here": why is None,
            "why_not": why, "doc": s.doc})
    return out


def sample_spec(settings: SampleSpec | dict[str, Any]) -> SampleSpec:
    """A sample's settings as a :class:`~mlsd.spec.SampleSpec`; mistakes are
    one :class:`SpecError` naming each setting (``sample.n: ...``)."""
    from pydantic import ValidationError

    from .spec import SampleSpec

    if isinstance(settings, SampleSpec):
        return settings
    try:
        return SampleSpec.model_validate(settings)
    except ValidationError as err:
        lines = []
        for e in err.errors():
            where = ".".join(str(p) for p in e["loc"]) or "sample"
            msg = str(e["msg"]).removeprefix("Value error, ")
            if e["type"] == "extra_forbidden":
                msg = "unknown setting"
            lines.append(f"sample.{where}: {msg}" if e["loc"] else f"sample: {msg}")
        raise SpecError("; ".join(dict.fromkeys(lines))) from None


def sample_dataset(project: Project | str | Path | None, dataset: str,
                   settings: SampleSpec | dict[str, Any], *,
                   version: int | None = None, key: str | None = None,
                   seed: int | None = None, write: str | None = None
                   ) -> dict[str, Any]:
    """Draw a sample of any dataset, with its bias report.

    ``dataset`` is a lake dataset (``sources/NAME``, ``training/NAME``, a
    source name; ``version`` picks one, the latest by default) or a data file
    (read whole, its types inferred). ``settings`` are those of the spec's
    ``sample:`` section. ``write``: keep the sample as ``samples/WRITE`` in the
    project's lake (recorded in the catalog, with a lineage edge from the
    dataset version it was drawn from). Returns :meth:`Sample.summary` with
    ``dataset`` and ``version`` (of the input) and ``written``.

    Examples
    --------
    >>> import mlsd.pipeline as p
    >>> s = p.sample_dataset("demo", "training/forum-spam",        # doctest: +SKIP
    ...                      {"method": "stratified", "n": 500, "by": "is_spam"})
    >>> s["warnings"]                                              # doctest: +SKIP
    """
    from .runtime import digest
    from .trainingdata import draw

    spec = sample_spec(settings)
    path = Path(dataset)
    proj = None
    tmp = None
    if path.suffix and path.is_file():
        # typed batch by batch into a temporary Parquet file, then scanned:
        # a file larger than memory is sampled like a lake version
        import tempfile

        import pyarrow.dataset as ds
        import pyarrow.parquet as pq

        from .etl import read_batches

        counts: dict[str, Any] = {}
        schema, batches = read_batches(path, counts=counts)
        tmp = tempfile.TemporaryDirectory(prefix="mlsd-sample-")
        parquet = Path(tmp.name) / "rows.parquet"
        import numpy as np
        import pyarrow as pa

        from .trainingdata._sampling import POS

        # each row keeps its place in the file: its identity and its order
        seen = 0
        with pq.ParquetWriter(parquet, schema.arrow().append(
                pa.field(POS, pa.int64()))) as writer:
            for b in batches:
                writer.write_batch(b.append_column(POS, pa.array(
                    np.arange(seen, seen + b.num_rows, dtype=np.int64))))
                seen += b.num_rows
        source = ds.dataset(parquet)
        where_from = {"file": str(path),
                      "broken_records": counts["broken_records"],
                      "bad_values": {c: n for c, n in counts["bad_values"].items()
                                     if n}}
        if project is not None or write:
            proj = Project.of(project)
    else:
        from .etl._export import parse_dataset

        proj = Project.of(project)
        area, name = parse_dataset(dataset)
        if not proj.lake.exists(area, name):
            raise LakeError(f"{area}/{name} is not in the lake (`mlsd lake` lists "
                            f"what is; a file path must exist)")
        version = proj.lake.version(area, name) if version is None else version
        source = proj.lake.dataset(area, name, version)
        where_from = {"dataset": f"{area}/{name}", "version": version}
        if key is None:
            key = (proj.spec.sources[name].key if area == "sources"
                   and name in proj.spec.sources else proj.spec.key)
    if key is not None and key not in source.schema.names:
        raise SpecError(f"--key {key!r} is not a column of {dataset}")
    if seed is None:
        seed = proj.spec.seed if proj is not None else 0
    try:
        drawn = draw(source, spec, seed=seed, key=key)
    finally:
        if tmp is not None:
            tmp.cleanup()
    out = {**where_from, **drawn.summary(), "key": key, "written": None}
    if write:
        from .lake import check_name

        check_name(write)
        with recorded_run(proj, prefix="s") as ctx:
            write_id = digest({"from": where_from, "settings": drawn.settings,
                               "seed": drawn.seed})
            v, _ = ctx.lake.write("samples", write, drawn.rows, write_id=write_id)
            node = ctx.catalog.add_dataset_version("samples", write, v,
                                                   write_id=write_id,
                                                   rows=drawn.rows.num_rows,
                                                   run_id=ctx.run_id)
            if "dataset" in where_from:
                area, name = where_from["dataset"].split("/", 1)
                ctx.catalog.add_edge(f"dataset:{area}/{name}@{version}", node,
                                     "sampled_from", ctx.run_id)
            ctx.summary["sample"] = out
        out["written"] = {"dataset": f"samples/{write}", "version": v}
    return out


def prune_features(project: Project | str | Path | None = None, *,
                   tolerance: float | None = None,
                   budget_seconds: float | None = None,
                   write: str | Path | None = None,
                   reporter: Reporter | None = None) -> dict[str, Any]:
    """Which features could go: the data stages up to ``features``, then the
    drop-one ablation of every feature on the validation split (see
    :func:`mlsd.models.prune`). ``tolerance`` and ``budget_seconds`` override
    ``feature_policy.prune_tolerance`` and ``prune_budget_seconds``.

    ``write``: a file name in the project folder (next to ``mlsd.yaml``, as
    its data paths are relative to it) where the spec with the proposed
    features only is written; the project's own ``mlsd.yaml`` is left as it is.
    Returns the run summary, whose ``prune`` entry holds the result.

    Examples
    --------
    >>> import mlsd.pipeline as p
    >>> out = p.prune_features("demo", write="mlsd.pruned.yaml")  # doctest: +SKIP
    >>> out["prune"]["drop"]                                      # doctest: +SKIP
    """
    from .models import prune_stage

    project = Project.of(project)
    if tolerance is not None and not 0.0 <= tolerance <= 0.5:
        raise SpecError(f"--tolerance {tolerance}: expected a relative loss between 0 "
                        f"and 0.5 (0.005: half a percent of the validation metric)")
    if budget_seconds is not None and not budget_seconds > 0:
        raise SpecError(f"--budget {budget_seconds}: expected seconds above 0")
    target = _beside_spec(project, write, "pruned") if write is not None else None
    head = STAGES[:STAGES.index(features) + 1]  # the data stages, up to features
    summary = execute(project, (*head, prune_stage(
        tolerance=tolerance, budget_seconds=budget_seconds)), reporter=reporter)
    if target is not None:
        summary["prune"]["written"] = str(write_pruned_spec(
            project, summary["prune"]["drop"], target))
    return summary


def tune(project: Project | str | Path | None = None, *, trials: int | None = None,
         seconds: float | None = None, write: str | Path | None = None,
         reporter: Reporter | None = None) -> dict[str, Any]:
    """The hyper-parameter search alone: the data stages up to ``features``,
    then ``model.search`` (or its defaults; ``trials`` and ``seconds``
    override) on the train and valid splits. The test split is not read.

    ``write``: a file next to ``mlsd.yaml`` where the spec with the chosen
    ``model.params`` (and no search) is written. Returns the run summary,
    whose ``search`` entry holds the result.
    """
    from .models import search_stage

    project = Project.of(project)
    if trials is not None and trials < 1:
        raise SpecError(f"--trials {trials}: expected 1 or more")
    if seconds is not None and not seconds > 0:
        raise SpecError(f"--seconds {seconds}: expected seconds above 0")
    target = _beside_spec(project, write, "tuned") if write is not None else None
    head = STAGES[:STAGES.index(features) + 1]
    summary = execute(project, (*head, search_stage(trials=trials, seconds=seconds)),
                      reporter=reporter)
    if target is not None:
        import yaml

        from ._yaml import load

        doc = load(project.spec_path.read_text(encoding="utf-8"))
        found = summary["search"]
        doc.setdefault("model", {})
        doc["model"]["params"] = found["params"]
        doc["model"].pop("search", None)
        head_line = (f"# {project.spec_path.name} with model.params chosen by `mlsd "
                     f"tune` ({found['trials']} trials, valid {found['metric']} "
                     f"{found['best_value']}; the spec's own: "
                     f"{found['spec_params_value']}; kept {found['chosen']})\n")
        target.write_text(head_line + yaml.safe_dump(doc, sort_keys=False,
                                                      allow_unicode=True),
                          encoding="utf-8")
        found["written"] = str(write)
    return summary


def _beside_spec(project: Project, write: str | Path, what: str) -> Path:
    """A file name next to the project's spec (its data paths are relative to
    its folder), refused elsewhere."""
    from .lake import inside

    target = inside(project.root, str(write))
    if target.parent != project.root:
        raise SpecError(f"--write {write}: write the {what} spec next to "
                        f"{project.spec_path.name} (its data paths are relative "
                        f"to the spec's folder)")
    return target


def write_pruned_spec(project: Project, drop: list[str], path: Path) -> Path:
    """The project's spec with the features in ``drop`` (by label) removed,
    written to ``path`` (the comments of the original are not kept: the file
    says where it came from)."""
    import yaml

    from ._yaml import load

    doc = load(project.spec_path.read_text(encoding="utf-8"))
    from .features._pipeline import feature_labels
    from .spec import FeatureSpec

    gone = set(drop)
    specs = [FeatureSpec.model_validate(f) for f in doc["features"]]
    names = feature_labels([(f.label, f.kind) for f in specs])
    doc["features"] = [f for f, name in zip(doc["features"], names, strict=True)
                       if name not in gone]
    head = (f"# {project.spec_path.name} with {len(gone)} feature(s) removed by "
            f"`mlsd features prune`: {', '.join(sorted(gone)) or 'none'}\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(head + yaml.safe_dump(doc, sort_keys=False, allow_unicode=True),
                    encoding="utf-8")
    return path


def ingest(project: Project, *, sources: list[str] | None = None,
           reporter: Reporter | None = None) -> dict[str, Any]:
    """Load sources into the lake (all by default): extract, validate, commit.

    Loading every source is the run's ``ingest`` stage alone, recorded as such
    (a later ``mlsd run --from table`` reuses it). Returns the per-source
    results (rows read, stored, quarantined, reasons, the dataset version, and
    whether anything new was loaded).
    """
    from .etl import load_sources
    if sources is None:
        summary = execute(project, [ingest_stage], reporter=reporter, prefix="i")
        return {"run_id": summary["run_id"], "sources": summary["sources"]}
    with recorded_run(project, prefix="i", reporter=reporter) as ctx:
        results = load_sources(ctx, sources)
        ctx.summary["sources"] = [r.to_dict() for r in results]
    return {"run_id": ctx.run_id, "sources": ctx.summary["sources"]}


def consume(project: Project, source: str, *, max_messages: int | None = None,
            idle_seconds: float | None = None, batch_rows: int | None = None,
            batch_seconds: float | None = None, stop=None,
            handle_signals: bool = False, on_batch=None) -> dict[str, Any]:
    """Consume the broker source ``source`` into the lake in micro-batches
    (see :mod:`mlsd.etl._consume`): until ``stop`` (a ``threading.Event``) is
    set, SIGTERM/Ctrl-C (``handle_signals``), ``max_messages`` messages or
    ``idle_seconds`` without one. ``batch_rows``/``batch_seconds`` override
    the source's. Runs beside `mlsd run` (it takes only its two tables' locks,
    commit by commit). Returns the counts (messages, stored, quarantined,
    duplicates dropped, dead-lettered, batches)."""
    from .etl import consume as consume_source
    from .spec import BrokerSourceSpec

    spec = project.spec
    if source not in spec.sources:
        raise SpecError(f"unknown source {source!r}; sources are "
                        f"{', '.join(spec.sources)}")
    src = spec.sources[source]
    if not isinstance(src, BrokerSourceSpec):
        raise SpecError(f"source {source!r} is not a broker source (`broker:` in "
                        f"mlsd.yaml); `mlsd ingest {source}` loads it")
    changes = {k: v for k, v in (("batch_rows", batch_rows),
                                  ("batch_seconds", batch_seconds)) if v is not None}
    if changes:
        from pydantic import ValidationError

        try:
            src = BrokerSourceSpec.model_validate({**src.model_dump(), **changes})
        except ValidationError as err:
            first = err.errors()[0]
            raise SpecError(f"--{str(first['loc'][0]).replace('_', '-')}: "
                            f"{first['msg']}") from None
    if max_messages is not None and max_messages < 1:
        raise SpecError("--max-messages: at least 1")
    if idle_seconds is not None and idle_seconds <= 0:
        raise SpecError("--idle-seconds: more than 0")
    res = consume_source(source, src, spec.validate_, root=project.root,
                         lake=project.lake, catalog=project.catalog,
                         transform=spec.transform, max_messages=max_messages,
                         idle_seconds=idle_seconds, stop=stop,
                         handle_signals=handle_signals, on_batch=on_batch,
                         seed=spec.seed, windows=spec.windows,
                         online_store={"url": spec.online_store.url,
                                       "password_env": spec.online_store.password_env,
                                       "prefix": spec.online_store.prefix or spec.name})
    return res.to_dict()


def _one_at_a_time(fn):
    """Run ``fn(project, ...)`` holding the project's run lock: a replay, an
    erasure, a vacuum or a gc never interleaves with a run."""
    import functools

    @functools.wraps(fn)
    def locked(project: Project, *args, **kwargs):
        with run_lock(project):
            return fn(project, *args, **kwargs)
    return locked


@_one_at_a_time
def replay_quarantine(project: Project, source: str) -> dict[str, Any]:
    """Re-validate a source's quarantined rows with its current schema and rules;
    rows that pass join the dataset, the others stay with their reasons."""
    from .etl import replay, resolve_schema

    spec = project.spec
    if source not in spec.sources:
        raise SpecError(f"unknown source {source!r}; sources are "
                        f"{', '.join(spec.sources)}")
    schema, _ = resolve_schema(source, spec.sources[source], spec.validate_,
                               project.root)
    run_id = "q" + datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
    return replay(source, spec.sources[source], spec.validate_, schema,
                  root=project.root, lake=project.lake, catalog=project.catalog,
                  run_id=run_id)


@_one_at_a_time
def delete_rows(project: Project, source: str, where: str) -> dict[str, Any]:
    """Erase the rows of a source matching ``where`` (say, one person's data)
    from its dataset, its quarantine (each rejected record parsed again), the
    training table and its split. Old versions keep the rows until
    ``mlsd lake vacuum``.

    ``where`` must be one DuckDB expression. It is evaluated in a locked
    DuckDB (no file, network or extension) on every dataset before anything
    is deleted; the matching rows are then removed by identity (provenance or
    row number; :meth:`mlsd.lake.Lake.erase`), so the user's text never
    reaches another SQL dialect. Either
    every dataset loses its rows or, when a deletion fails, those already
    changed are restored to their version before.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    from .engine._sandbox import check_expression
    from .etl import quarantine_matches, resolve_schema

    spec = project.spec
    if source not in spec.sources:
        raise SpecError(f"unknown source {source!r}; sources are "
                        f"{', '.join(spec.sources)}")
    problem = check_expression(where)
    if problem:
        raise SpecError(f"--where {where!r} is not one SQL expression: {problem}")
    lake, name = project.lake, spec.name
    # 1. what matches, everywhere, before any change
    plans: list[tuple[str, str, list[str], set[tuple]]] = []
    if not lake.exists("sources", source):
        raise LakeError(f"sources/{source} has no data yet: nothing to erase")
    ident = ["_load_id", "_source", "_line"]
    plans.append(("sources", source, ident, _identities(
        _matching(lake.read("sources", source), "sources/" + source, where, ident),
        ident)))
    if lake.exists("quarantine", source):
        schema, _ = resolve_schema(source, spec.sources[source], spec.validate_,
                                   project.root)
        lines = quarantine_matches(lake, source, spec.sources[source], schema,
                                   where, root=project.root,
                                   null_values=spec.validate_.null_values)
        plans.append(("quarantine", source, ["_source", "_line"], set(lines)))
    load_ids = set(project.catalog.load_ids(source))
    if lake.exists("training", name) and load_ids:
        training = lake.read("training", name)
        mine = training.filter(pc.is_in(training.column("_load_id"),
                                        value_set=pa.array(sorted(load_ids))))
        rows = _identities(_matching(mine, f"training/{name}", where, ["_row"]),
                           ["_row"])
        plans.append(("training", name, ["_row"], rows))
        if lake.exists("splits", name):
            plans.append(("splits", name, ["_row"], rows))
    # the label store: every label of an erased item (by the row key)
    key = getattr(spec.sources[source], "key", None) or spec.key
    if isinstance(key, str) and (lake.exists("labels", name)
                                 or lake.exists("predictions", name)):
        keys = {(str(r[key]),) for r in _matching(
            lake.read("sources", source), "sources/" + source, where, [key])
            if r[key] is not None}
        if lake.exists("labels", name):
            plans.append(("labels", name, ["item"], keys))
        if lake.exists("predictions", name):  # the logged inputs, and feedback
            log = lake.read("predictions", name)
            mine = [(r,) for r, it in zip(log.column("request_id").to_pylist(),
                                          log.column("item").to_pylist(),
                                          strict=True) if (it,) in keys]
            plans.append(("predictions", name, ["item"], keys))
            if lake.exists("feedback", name):
                plans.append(("feedback", name, ["request_id"], set(mine)))
    # samples (the run's, and those `mlsd sample --write` kept) hold copies of
    # source rows with their provenance: erased by the same identities
    for sample_name in lake.list("samples"):
        if set(ident) <= set(lake.dataset("samples", sample_name).schema.names):
            plans.append(("samples", sample_name, ident, plans[0][3]))
    # 2. delete by identity, all or nothing
    out: dict[str, Any] = {"source": source, "where": where}
    done: list[tuple[str, str, int]] = []
    labels = {"sources": "dataset", "quarantine": "quarantine",
              "training": "training", "splits": "splits", "labels": "labels",
              "predictions": "prediction_log", "feedback": "feedback"}
    try:
        for area, dataset, columns, identities in plans:
            before = lake.version(area, dataset)
            res = lake.erase(area, dataset, columns, identities)
            if res["version"] != before:
                done.append((area, dataset, before))
            if area == "samples":
                out.setdefault("samples", {})[dataset] = res
            else:
                out[labels[area]] = res
    except Exception:
        for area, dataset, version in reversed(done):
            lake.restore(area, dataset, version)
        raise
    if "training" in out and "splits" in out:
        out["training"]["splits"] = out.pop("splits")
    # the encoders' cache holds vectors of texts, the erased ones among them
    # (keyed by a hash: which are theirs is not known): emptied, re-made on use
    cache = project.root / ".mlsd" / "cache" / "embeddings"
    if cache.is_dir():
        import shutil

        out["embedding_cache"] = {"removed_files": sum(
            1 for p in cache.rglob("*") if p.is_file())}
        shutil.rmtree(cache)
    out.setdefault("quarantine", None)
    out.setdefault("training", None)
    # kept: applied again to every later load, listed by `mlsd lake erasures`,
    # and its superseded files removed by the next vacuum
    out["erasure_id"] = "e" + datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
    project.catalog.add_erasure(out["erasure_id"], source=source, predicate=where,
                                result={"datasets": {
                                    f"{area}/{dataset}": (
                                        out["samples"][dataset] if area == "samples"
                                        else out.get(labels[area]))
                                    for area, dataset, _, _ in plans}})
    return out


def lake_check(project: Project) -> list[dict[str, Any]]:
    """Every lake dataset's latest version checked against damage done outside
    mlsd: each file the version reads exists, with its recorded size, and
    holds the table's columns. One entry per dataset: ``ok`` and the problems."""
    from .lake import AREAS

    out = []
    for area in AREAS:
        for name in project.lake.list(area):
            problems = project.lake.damage(area, name)
            out.append({"dataset": f"{area}/{name}",
                        "version": project.lake.version(area, name),
                        "ok": not problems, "problems": problems})
    return out


@_one_at_a_time
def lake_repair(project: Project, *, reporter: Reporter | None = None
                ) -> list[dict[str, Any]]:
    """Repair the damaged datasets :func:`lake_check` finds: restore the last
    intact version (a new commit; history kept), then, for a source read from
    files, load it again from them, so rows newer than that version come back
    when the files still hold them. Each entry says what was done."""
    from .spec import SourceSpec

    def reloadable(area: str, name: str) -> bool:
        # the whole dataset is its files' content: they can write it again
        spec = project.spec.sources.get(name)
        return area in ("sources", "quarantine") and isinstance(spec, SourceSpec) \
            and spec.load == "overwrite"

    out, reload = [], []
    for entry in lake_check(project):
        if entry["ok"]:
            continue
        area, _, name = entry["dataset"].partition("/")
        doc = {"dataset": entry["dataset"], "problems": entry["problems"]}
        if reloadable(area, name):
            if name not in reload:
                reload.append(name)
            doc["action"] = "loaded again from its files"
        else:
            intact = project.lake.last_intact(area, name)
            if intact is None:
                doc["action"] = "none: no version is whole; load it again" + (
                    " (`mlsd ingest`)" if area in ("sources", "quarantine") else
                    " (`mlsd run --from table`)")
            else:
                project.lake.restore(area, name, intact)
                doc["action"] = f"restored version {intact}, the last whole one"
                doc["version"] = project.lake.version(area, name)
            if area in ("training", "splits"):
                doc["action"] += ("; `mlsd run --from table` rebuilds it from "
                                  "the sources")
        out.append(doc)
    if reload:
        for name in reload:  # empty versions: the load writes both again
            for area in ("sources", "quarantine"):
                if project.lake.exists(area, name):
                    project.lake.clear(area, name)
        loads = ingest(project, sources=reload, reporter=reporter)["sources"]
        for doc in out:
            for load in loads:
                if doc["dataset"] in (f"sources/{load['source']}",
                                      f"quarantine/{load['source']}"):
                    doc["action"] += (f" ({load['rows_stored']} rows stored, "
                                      f"{load['rows_quarantined']} quarantined)")
    return out


def erasures(project: Project) -> list[dict[str, Any]]:
    """Every erasure recorded by :func:`delete_rows`, oldest first: its id,
    source, predicate, time, and per dataset the rows deleted and the version
    it made."""
    out = []
    for e in project.catalog.erasures():
        datasets = e["result"].get("datasets", {})
        out.append({"erasure_id": e["erasure_id"], "source": e["source"],
                    "where": e["predicate"], "created_at": e["created_at"],
                    "datasets": {d: None if r is None else {
                        "deleted": r.get("deleted"), "version": r.get("version")}
                        for d, r in datasets.items()}})
    return out


def _identities(rows: list[dict[str, Any]], columns: list[str]) -> set[tuple]:
    return {tuple(r[c] for c in columns) for r in rows}


def _matching(table: pa.Table, label: str, where: str, columns: list[str]
              ) -> list[dict[str, Any]]:
    """The ``columns`` of the rows of ``table`` where ``where`` holds,
    evaluated in a locked DuckDB that sees this table only."""
    import duckdb

    from .engine._sandbox import matches, why

    try:
        mask = matches(table, where)
    except duckdb.Error as err:
        raise SpecError(f"--where {where!r} does not apply to {label}: "
                        f"{why(err)}") from None
    return table.filter(mask).select(columns).to_pylist()


@_one_at_a_time
def vacuum(project: Project, retention_hours: int | None = None
           ) -> list[dict[str, Any]]:
    """Remove old versions' files from every dataset of the lake."""
    from .connectors import prune_blobs
    from .lake import AREAS
    hours = project.spec.lake.retention_hours if retention_hours is None \
        else retention_hours
    out = []
    # an erasure is not history to keep: the files it replaced go now, however
    # recent (versions before it can then no longer be read, and say so)
    erased: dict[str, int] = {}
    for e in project.catalog.erasures():
        for dataset, res in e["result"].get("datasets", {}).items():
            files = (res or {}).get("superseded_files") or []
            area, _, name = dataset.partition("/")
            if files and project.lake.exists(area, name):
                erased[dataset] = erased.get(dataset, 0) + \
                    project.lake.remove_files(area, name, files)
    for area in AREAS:
        for name in project.lake.list(area):
            removed = project.lake.vacuum(area, name, retention_hours=hours)
            out.append({"dataset": f"{area}/{name}", "files_removed": len(removed)
                        + erased.get(f"{area}/{name}", 0),
                        "erased_files_removed": erased.get(f"{area}/{name}", 0),
                        "retention_hours": hours})
    blobs = project.lake.root / "blobs"
    if blobs.is_dir():
        out.append({"dataset": "blobs", "files_removed": len(
            prune_blobs(blobs, _blob_refs(project.lake))),
            "retention_hours": hours})
    return out


@_one_at_a_time
def gc(project: Project, *, keep_reports: int | None = None,
       dry_run: bool = False) -> dict[str, Any]:
    """Free disk space the project no longer needs: the reports of all but the
    last ``keep_reports`` runs (default ``report.keep``), and artifact folders
    the catalog does not know (a run that crashed before recording its model).
    Lake versions are ``vacuum``'s job (they follow ``lake.retention_hours``).
    """
    import shutil

    from .report import prune_reports

    keep = project.spec.report.keep if keep_reports is None else keep_reports
    if keep < 1:
        raise SpecError("--keep: keep at least the last run's report (1)")
    home = project.home
    reports = prune_reports(home, project.catalog, keep, dry_run=dry_run)
    known = {(home.parent / a["path"]).resolve()
             for a in project.catalog.artifacts()}
    orphans = []
    for kind_dir in sorted((home / "artifacts").glob("*")):
        for folder in sorted(p for p in kind_dir.iterdir() if p.is_dir()):
            if folder.resolve() in known:
                continue
            size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
            orphans.append({"path": str(folder.relative_to(home.parent)),
                            "bytes": size})
            if not dry_run:
                shutil.rmtree(folder)
    freed = sum(r["bytes"] for r in reports + orphans)
    return {"reports_removed": reports, "artifacts_removed": orphans,
            "bytes_freed": freed, "kept_reports": keep, "dry_run": dry_run}


def _blob_refs(lake: Lake) -> set[str]:
    """Content hashes that some readable table version refers to: the
    ``sha256`` column of folder sources, and hashes in quarantined records
    (a replay may still accept them)."""
    keep: set[str] = set()
    for name in lake.list("sources"):
        keep.update(v for v in lake.stored_values("sources", name, "sha256"
                                                  ).to_pylist() if v)
    for name in lake.list("quarantine"):
        for raw in lake.stored_values("quarantine", name, "raw").to_pylist():
            keep.update(_SHA256.findall(raw or ""))
    return keep


def export(project: Project, dataset: str, fmt: str, output: str | Path | None = None,
           *, version: int | None = None, force: bool = False) -> dict[str, Any]:
    """Write a lake dataset in any format mlsd reads (``mlsd export``).

    By default into ``exports/`` in the project. An output of your own may not
    be inside ``.mlsd/`` (the lake, the catalog, the models), nor the spec, a
    schema file or a file a source reads; an existing file is replaced only
    with ``force``.
    """
    from .connectors import FileConnector
    from .etl import EXTENSIONS, connector_for, export_dataset, parse_dataset
    from .formats import get_format
    from .lake import check_name, inside

    get_format(fmt)  # refuse an unknown format before reading anything
    area, name = parse_dataset(dataset)
    if output is None:
        output = inside(project.root, "exports",
                        f"{area}-{check_name(name)}{EXTENSIONS[fmt]}")
    target = Path(output).expanduser()
    target = (target if target.is_absolute() else Path.cwd() / target).resolve()
    root = project.root.resolve()
    protected = {root / ".mlsd": "mlsd's own folder (the lake, the catalog and "
                                 "the models)"}
    if root / ".mlsd" == target or root / ".mlsd" in target.parents:
        raise LakeError(f"--output {output} is inside {root / '.mlsd'}, "
                        f"{protected[root / '.mlsd']}: write elsewhere")
    own = {project.spec_path.resolve(): "the project's spec"}
    own.update({p.resolve(): "a schema file"
                for p in (root / "schemas").glob("*.yaml")})
    for source, spec in project.spec.sources.items():
        try:
            connector = connector_for(source, spec, root)
            if isinstance(connector, FileConnector):
                own.update({Path(p).resolve(): f"a file of source {source!r}"
                            for p in connector.paths()})
        except Exception:  # noqa: BLE001 - a source that does not resolve holds no file
            continue
    if target in own:
        raise LakeError(f"--output {output} is {own[target]}: refused, write "
                        f"the export elsewhere")
    return export_dataset(project.lake, dataset, fmt, target, version=version,
                          force=force)


def sql(project: Project, query: str) -> pa.Table:
    """Run a SQL query on DuckDB over the latest version of every source.

    Each source is a view named after it (quote names with dashes or dots:
    ``"my-source"``), so the lake reads like a warehouse. The query reads
    those views and nothing else: no file, network, extension or setting
    (:mod:`mlsd.engine._sandbox`), so it cannot change the lake.
    """
    import duckdb
    import pyarrow as pa

    from ._threads import usable_cores
    from .engine._sandbox import locked_connection, refused

    views = {name: project.lake.dataset("sources", name)
             for name in project.lake.list("sources")}
    con = locked_connection(views, threads=usable_cores())
    try:
        rel = con.sql(query)
        # a statement that returns no rows (CREATE TABLE in the connection's
        # own memory, gone when it closes) has no relation
        return rel.to_arrow_table() if rel is not None else pa.table({})
    except duckdb.Error as err:
        if refused(err):
            raise SpecError(f"the query is refused: mlsd sql reads the lake's "
                            f"views ({', '.join(views) or 'none yet'}) and nothing "
                            f"else; files, the network, extensions and settings "
                            f"are refused. DuckDB said: {err}") from None
        raise SpecError(f"the query failed: {err}") from None
    finally:
        con.close()


OUTPUT_FORMATS = (".parquet", ".csv", ".jsonl")
"""What ``mlsd predict --output`` writes, by the file's extension."""


def promote_model(project: Project | str | Path | None, model: str,
                  alias: str = "champion", *, reason: str | None = None
                  ) -> dict[str, Any]:
    """Point ``alias`` at ``model`` (an id, its start, or another alias);
    ``mlsd serve`` serves the ``champion`` when none is named."""
    from .models import promote

    return promote(Project.of(project).catalog, model, alias, reason=reason)


def rollback_model(project: Project | str | Path | None, alias: str = "champion",
                   *, reason: str | None = None) -> dict[str, Any]:
    """Undo the last promotion of ``alias``: it points at its previous model."""
    from .models import rollback

    return rollback(Project.of(project).catalog, alias, reason=reason)


def compare_models(project: Project | str | Path | None, a: str, b: str, *,
                   on: str | Path | None = None, replicates: int | None = None
                   ) -> dict[str, Any]:
    """Models ``a`` and ``b`` (ids, starts or aliases) on the same labelled
    rows: the test rows of ``b`` less any row ``a`` was fitted or tuned on, or
    the rows of the file ``on``; every metric with its interval, and the
    paired interval of ``b``'s margin over ``a``."""
    import pyarrow as pa

    from .models import ModelArtifact, compare, model_parts, read_labelled
    from .models._registry import time_column

    proj = Project.of(project)
    art_a = ModelArtifact.load(proj.find_model(a))
    art_b = ModelArtifact.load(proj.find_model(b))
    ev = proj.spec.evaluation
    reps = replicates if replicates is not None else max(ev.replicates, 200)
    rejected: list[dict[str, Any]] = []
    if on is not None:
        rows, rejected = read_labelled(Path(on), art_b)
        res = compare(a=art_a, b=art_b, rows=rows, seed=proj.spec.seed,
                      replicates=reps, level=ev.level, on=str(on),
                      time_column=time_column(proj.spec))
    else:
        rows = model_parts(proj.lake, art_b.manifest)["test"]
        parts_a = model_parts(proj.lake, art_a.manifest)
        seen = pa.concat_tables([parts_a["train"], parts_a["valid"]],
                                promote_options="permissive")
        res = compare(a=art_a, b=art_b, rows=rows, seen_by_a=seen,
                      seed=proj.spec.seed, replicates=reps, level=ev.level,
                      on=f"test rows of {art_b.model_id}",
                      time_column=time_column(proj.spec))
    res["rejected"] = len(rejected)
    res["rejected_rows"] = rejected[:20]
    return res


def export_model(project: Project | str | Path | None, model: str | None,
                 output: str | Path, *, fmt: str = "onnx") -> dict[str, Any]:
    """Write a model's learner as ONNX to ``output`` (its input: the feature
    vector; ``output``.json names the features), checked against native
    scoring on the model's test rows when its data can still be read."""
    from .models import ModelArtifact, export_onnx, model_parts
    from .models._registry import with_derived

    if fmt != "onnx":
        raise SpecError(f"--format {fmt}: expected onnx")
    proj = Project.of(project)
    art = ModelArtifact.load(proj.find_model(model))
    rows, note = None, None
    try:
        test = model_parts(proj.lake, art.manifest)["test"]
        rows = art.pipeline.apply(with_derived(art, test))
    except Exception as err:  # noqa: BLE001 - the data may be gone: said
        note = f"parity not measured: the model's test rows cannot be read ({err})"
    out = Path(output)
    if out.suffix != ".onnx":
        raise SpecError(f"--output {output}: the file name must end in .onnx")
    res = export_onnx(art.learner, art.pipeline.names(), out,
                      manifest=art.manifest, check_on=rows)
    res["model_id"] = art.model_id
    if note:
        res["parity_note"] = note
    return res


def track_run(project: Project | str | Path | None, run_id: str | None = None, *,
              uri: str | None = None, experiment: str | None = None
              ) -> dict[str, Any]:
    """Log a recorded run (default: the last that finished) to MLflow at
    ``uri`` (default: ``tracking.mlflow_uri``)."""
    from .report import log_run

    proj = Project.of(project)
    uri = uri or proj.spec.tracking.mlflow_uri
    if not uri:
        raise SpecError("no MLflow tracking URI: set tracking.mlflow_uri in "
                        "mlsd.yaml or pass --uri sqlite:///mlflow.db")
    runs = [r for r in proj.catalog.runs() if r["status"] == "done"
            and r.get("summary")]
    if run_id is not None:
        runs = [r for r in runs if r["run_id"].startswith(run_id)]
    if not runs or (run_id is not None and len(runs) > 1):
        raise SpecError(f"no finished run{' ' + run_id if run_id else ''} to log "
                        f"(or more than one matches): run ids are the report "
                        f"names in .mlsd/reports/")
    run = runs[-1]
    import json

    summary = json.loads(run["summary"])
    paths = summary.get("paths") or {}
    artifacts = [proj.root / paths[k] for k in ("report",) if paths.get(k)]
    if paths.get("model"):
        artifacts.append(proj.root / paths["model"] / "manifest.json")
    return log_run(uri, experiment or proj.spec.tracking.experiment or proj.spec.name,
                   run_id=run["run_id"],
                   spec=proj.spec.model_dump(mode="json", by_alias=True),
                   summary=summary, root=proj.root, artifacts=artifacts)


def score_file(model_dir: Path, input_path: str | Path, output_path: str | Path, *,
               chunk_rows: int = 50_000, reporter: Reporter | None = None,
               trust_unregistered: bool = False, engine=None) -> dict[str, Any]:
    """Batch scoring: read a file of raw rows, write their predictions.

    Rows are validated against the model's input schema exactly as at serving
    time; rows that fail go, with their reasons, to ``OUTPUT.rejected.parquet``
    (nothing is dropped silently). The output (.parquet, .csv or .jsonl) holds
    the key (when the input has it), the input file and line, and the
    prediction. A file that lacks most of the columns the model reads is
    refused, naming them; a result where most scored rows had no feature value
    carries a warning. With a Spark ``engine`` (:class:`mlsd.engine.SparkEngine`)
    the rows are read, validated and scored by Spark tasks (a large CSV file in
    spans), which write their parts next to the output; the output is the
    same.
    """
    import pyarrow as pa

    from .connectors import FileConnector
    from .etl import DataSchema
    from .models import ModelArtifact

    rep = reporter or Reporter()
    artifact = ModelArtifact.load(Path(model_dir),
                                  trust_unregistered=trust_unregistered)
    ischema = artifact.input_schema
    schema = DataSchema(dict(ischema["columns"]))
    input_path, output_path = Path(input_path), Path(output_path)
    if output_path.suffix.lower() not in OUTPUT_FORMATS:
        raise DataError(f"{output_path}: the output must end in "
                        f"{', '.join(OUTPUT_FORMATS)}")
    connector = FileConnector(path=str(input_path.resolve()), root=Path.cwd())
    reads = [c for c in artifact.pipeline.columns if c in schema.columns]
    have = set(connector.columns())
    missing = [c for c in reads if c not in have]
    if reads and len(missing) * 2 > len(reads):
        raise DataError(
            f"{input_path}: {len(reads) - len(missing)} of the {len(reads)} "
            f"columns model {artifact.model_id} reads are in this file (missing: "
            f"{', '.join(missing[:10])}{', ...' if len(missing) > 10 else ''}); "
            f"is it the right file? Its columns: {', '.join(sorted(have)[:15])}")
    rejected_path = output_path.with_suffix(".rejected.parquet")
    n_in = n_ok = n_bad = n_empty = 0
    sink = _ScoreSink(output_path)
    rej_writer = None
    scorer = _Scorer(Path(model_dir), trust_unregistered, reads, artifact)
    if engine is not None:
        scored = _scored_on_spark(engine, connector, list(schema.columns), ischema,
                                  scorer, chunk_rows, output_path)
    else:
        scored = (scorer(raw, info) for info, raw in connector.read(
            list(schema.columns), chunk_rows=chunk_rows, strict=False,
            required=ischema["required"]))
    try:
        with rep.stage("score") as st:
            for rows, table, rejected, empty in scored:
                n_in += rows
                n_empty += empty
                sink.write(table)
                n_ok += table.num_rows
                if rejected.num_rows:
                    if rej_writer is None:
                        import pyarrow.parquet as pq

                        from .etl import QUARANTINE_SCHEMA

                        rej_writer = pq.ParquetWriter(rejected_path, QUARANTINE_SCHEMA)
                    rej_writer.write_table(rejected if isinstance(rejected, pa.Table)
                                           else pa.Table.from_batches([rejected]))
                    n_bad += rejected.num_rows
                st.advance(rows)
    finally:
        sink.close()
        if rej_writer is not None:
            rej_writer.close()
    if not sink.written:
        raise DataError(f"{input_path}: no row to score")
    warnings = []
    if n_ok and n_empty * 2 > n_ok:
        warnings.append(
            f"{n_empty} of {n_ok} scored rows have no value in any column the model "
            f"reads ({', '.join(reads[:8])}): their predictions are all the same "
            f"guess")
    return {"model_version": artifact.model_id, "rows_in": n_in, "scored": n_ok,
            "rejected": n_bad, "rows_without_features": n_empty,
            "warnings": warnings, "output": str(output_path),
            "rejected_output": str(rejected_path) if n_bad else None}


class _Scorer:
    """One raw batch to (rows read, predictions table, rejected rows, scored
    rows without any feature value), by serving's validator and the model;
    the artifact is loaded once a process (Spark tasks call it too)."""

    _loaded: dict[tuple, Any] = {}  # in a Spark worker: the model it loaded

    def __init__(self, model_dir: Path, trust: bool, reads: list[str],
                 artifact=None):
        from .models._artifact import row_validator

        self.model_dir, self.trust, self.reads = model_dir, trust, reads
        # here: the artifact already loaded, and the validator serving uses
        self._here = None if artifact is None else (
            artifact, row_validator(artifact.input_schema))

    def __getstate__(self) -> dict[str, Any]:  # what a Spark task receives
        return {"model_dir": self.model_dir, "trust": self.trust,
                "reads": self.reads, "_here": None}

    def _model(self):
        if self._here is not None:
            return self._here
        key = (str(self.model_dir), self.trust)
        found = _Scorer._loaded.get(key)
        if found is None:  # loaded (digests checked) once a worker process
            from .models import ModelArtifact
            from .models._artifact import row_validator

            artifact = ModelArtifact.load(self.model_dir,
                                          trust_unregistered=self.trust)
            _Scorer._loaded.clear()  # one model at a time
            found = _Scorer._loaded[key] = (artifact,
                                            row_validator(artifact.input_schema))
        return found

    def __call__(self, raw, info) -> tuple[int, Any, Any, int]:
        import pyarrow as pa
        import pyarrow.compute as pc

        artifact, validator = self._model()
        out = validator.validate(raw, source=info.path, sha256=info.sha256,
                                 load_id=artifact.model_id)
        acc = out.accepted
        empty = 0
        present = [c for c in self.reads if c in acc.schema.names]
        if present and acc.num_rows:
            has_value = pc.is_valid(acc.column(present[0]))
            for c in present[1:]:
                has_value = pc.or_(has_value, pc.is_valid(acc.column(c)))
            empty = acc.num_rows - int(pc.sum(has_value).as_py() or 0)
        preds = artifact.decide(artifact.score(pa.Table.from_batches([acc])))
        key = artifact.input_schema.get("key")
        label_type = pa.array(artifact.manifest["classes"] or [0.0]).type
        cols: dict[str, Any] = {}
        if key and key in acc.schema.names:
            cols[key] = acc.column(key)
        cols["_source"] = acc.column("_source")
        cols["_line"] = acc.column("_line")
        if artifact.objectives is not None:  # the combined score first
            cols["score"] = pa.array([p["score"] for p in preds], pa.float64())
            for n in artifact.objectives.names:
                cols[n] = pa.array([p["objectives"][n] for p in preds], pa.float64())
        elif artifact.task == "binary":
            cols["score"] = pa.array([p["score"] for p in preds], pa.float64())
            cols["label"] = pa.array([p["label"] for p in preds], label_type)
        elif artifact.task == "multilabel":  # a score per label
            for c in artifact.manifest["classes"]:
                cols[f"score_{c}"] = pa.array([p["scores"][str(c)] for p in preds],
                                              pa.float64())
            sep = artifact.manifest.get("separator", "|")
            cols["labels"] = pa.array([sep.join(p["labels"]) for p in preds],
                                      pa.string())
        elif artifact.task == "multiclass":
            for c in artifact.manifest["classes"]:
                cols[f"score_{c}"] = pa.array([p["scores"][str(c)] for p in preds],
                                              pa.float64())
            cols["label"] = pa.array([p["label"] for p in preds], label_type)
        else:
            cols["prediction"] = pa.array([p["value"] for p in preds], pa.float64())
            if artifact.intervals is not None:
                for side in ("lower", "upper"):
                    cols[side] = pa.array([p[side] for p in preds], pa.float64())
        cols["model_version"] = pa.array([artifact.model_id] * acc.num_rows,
                                         pa.string())
        return raw.num_rows, pa.table(cols), out.rejected, empty


def _scored_on_spark(engine, connector, columns: list[str], ischema: dict,
                     scorer: _Scorer, chunk_rows: int, output_path: Path):
    """What :class:`_Scorer` gives for each batch of the input, computed by
    Spark tasks (a file, or a large CSV file's spans, a task), which write
    their parts in a scratch folder beside the output; in read order."""
    import json
    import shutil
    import tempfile

    import pyarrow as pa
    import pyarrow.parquet as pq

    from .etl._distributed import file_hashes, guarded, plan_units, run_units

    output_path.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".mlsd-score-", dir=output_path.parent))
    schema = pa.schema([("unit", pa.int64()), ("batch", pa.int64()),
                        ("rows", pa.int64()), ("empty", pa.int64()),
                        ("files", pa.string()), ("unsafe", pa.bool_()),
                        ("error", pa.string())])
    empty = {"rows": 0, "empty": 0, "files": None, "unsafe": False, "error": None}

    def work(unit, written: list[str]):
        u, info, span = unit
        for b, (_, raw) in enumerate(connector.read(
                columns, chunk_rows=chunk_rows, strict=False,
                required=ischema["required"], span=span)):
            rows, table, rejected, none = scorer(raw, info)
            names = [str(scratch / f"u{u:06d}-b{b:06d}.{kind}.parquet")
                     for kind in ("scored", "rejected")]
            pq.write_table(table, names[0])
            pq.write_table(pa.Table.from_batches([rejected]), names[1])
            written += names
            yield {**empty, "unit": u, "batch": b, "rows": rows, "empty": none,
                   "files": json.dumps(names)}

    try:
        infos = connector.files(file_hashes(engine))
        done, _ = run_units(engine, plan_units(engine, connector, infos),
                            guarded(work, empty), schema)
        for r in done:
            scored, rejected = json.loads(r["files"])
            yield (r["rows"], pq.read_table(scored), pq.read_table(rejected),
                   r["empty"])
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


class _ScoreSink:
    """Writes scored batches to .parquet, .csv or .jsonl, by the extension."""

    def __init__(self, path: Path):
        self.path = path
        self.kind = path.suffix.lower()
        self.written = False
        self._writer = None
        self._fh = None

    def write(self, table: pa.Table) -> None:
        if not self.written:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.kind == ".parquet":
            import pyarrow.parquet as pq

            if self._writer is None:
                self._writer = pq.ParquetWriter(self.path, table.schema)
            self._writer.write_table(table)
        elif self.kind == ".csv":
            import pyarrow.csv as pacsv

            if self._writer is None:
                self._writer = pacsv.CSVWriter(self.path, table.schema)
            self._writer.write_table(table)
        else:  # .jsonl: pyarrow writes no JSON; one object per line
            import json

            if self._fh is None:
                self._fh = self.path.open("w", encoding="utf-8")
            for row in table.to_pylist():
                self._fh.write(json.dumps(row, default=str) + "\n")
        self.written = True

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        if self._fh is not None:
            self._fh.close()


# labels ---------------------------------------------------------------------------

@_one_at_a_time
def import_labels(project: Project, path: str | Path, *, fmt: str | None = None,
                  item: str | None = None, label: str = "label",
                  annotator: str | None = "annotator", source: str | None = None,
                  kind: str = "human", confidence: str | None = None,
                  time: str | None = None) -> dict[str, Any]:
    """Store the labels of a file in the project's label store (see
    :func:`mlsd.trainingdata.labeling.import_file`; ``labels.imports`` does
    the same on every run)."""
    from .trainingdata.labeling._store import import_file

    return import_file(project.lake, project.spec.name, project.root, path,
                       key=project.spec.key, fmt=fmt, item=item, label=label,
                       annotator=annotator, source=source, kind=kind,
                       confidence=confidence, time=time,
                       separator=_label_separator(project))


def _label_separator(project: Project) -> str | None:
    p = project.spec.problem
    return p.separator if p.task == "multilabel" else None


def label_votes(project: Project, *, kinds: tuple[str, ...] = ("human",),
                excluded: bool = True):
    """The stored labels of ``kinds`` as a vote matrix (items x sources) with
    the items, sources and labels; labels.order fixes the labels' order, and
    labels.exclude's sources are left out (unless ``excluded`` is False)."""
    from .trainingdata.labeling._store import vote_matrix

    return vote_matrix(_human_labels(project, kinds=kinds, excluded=excluded),
                       order=project.spec.labels.order)


def _human_labels(project: Project, *, kinds: tuple[str, ...] = ("human",),
                  excluded: bool = True):
    """The stored labels of ``kinds`` (labels.exclude's sources left out
    unless ``excluded`` is False); refused when there are none."""
    from .trainingdata.labeling._store import read_labels

    table = read_labels(project.lake, project.spec.name, kinds=kinds,
                        exclude=project.spec.labels.exclude if excluded else ())
    if table.num_rows == 0:
        raise DataError(f"the label store holds no {' or '.join(kinds)} label yet: "
                        f"`mlsd label import FILE` first")
    return table


def label_agreement(project: Project) -> dict[str, Any]:
    """How far the annotators of the label store agree (see
    :func:`mlsd.trainingdata.labeling.agreement`); every annotator, those of
    labels.exclude too (the figures that got them excluded)."""
    from .trainingdata.labeling import agreement

    if project.spec.problem.task == "multilabel":  # label sets
        from .trainingdata.labeling._sets import set_agreement

        return set_agreement(_human_labels(project, excluded=False))
    M, items, sources, labels = label_votes(project, excluded=False)
    return agreement(M, items=items, annotators=sources, labels=labels,
                     ordinal=project.spec.labels.order is not None)


def aggregate_labels(project: Project, method: str | None = None
                     ) -> dict[str, Any]:
    """One label an item from the annotators' votes (``labels.aggregate``:
    majority or dawid_skene), with its confidence; Dawid-Skene also gives
    each annotator's estimated accuracy and confusion matrix."""
    import numpy as np

    from .trainingdata.labeling import dawid_skene, majority_vote

    method = method or project.spec.labels.aggregate
    if method not in ("majority", "dawid_skene"):
        raise SpecError(f"labels.aggregate: expected majority or dawid_skene, got "
                        f"{method!r}")
    if project.spec.problem.task == "multilabel":  # label sets, label by label
        from .trainingdata.labeling._sets import aggregate_sets

        table = _human_labels(project)
        found, detail = aggregate_sets(table, method, partial=False)
        out = {"method": method, "items": len(found), "multilabel": True,
               "annotators": sorted(set(table.column("source").to_pylist())),
               "rows": [{"item": it, "label": lb, "confidence": round(c, 4)}
                        for it, (lb, c) in sorted(found.items())]}
        if method == "dawid_skene":
            out["dawid_skene"] = {"per_label": detail}
        return out
    M, items, sources, labels = label_votes(project)
    k = len(labels)
    mv, mv_conf, tie = majority_vote(M, k)
    out: dict[str, Any] = {"method": method, "items": len(items),
                           "annotators": sources, "labels": labels,
                           "ties": int(tie.sum())}
    if method == "dawid_skene":
        ds = dawid_skene(M, k)
        chosen, conf = ds.labels, ds.confidence
        acc = ds.accuracy()
        out["dawid_skene"] = {
            "iterations": ds.iterations, "converged": ds.converged,
            "priors": {lb: round(float(p), 4) for lb, p in zip(labels, ds.priors,
                                                               strict=True)},
            "annotators": [{"annotator": s, "accuracy": round(float(a), 4),
                            "confusion": np.round(ds.confusion[j], 4).tolist()}
                           for j, (s, a) in enumerate(zip(sources, acc,
                                                          strict=True))]}
        out["changed_from_majority"] = int(np.sum((chosen != mv) & (mv >= 0)))
    else:
        chosen, conf = mv, mv_conf
    out["rows"] = [{"item": it, "label": labels[c] if c >= 0 else None,
                    "confidence": round(float(p), 4)}
                   for it, c, p in zip(items, chosen, conf, strict=True)]
    return out


@_one_at_a_time
def exclude_label_source(project: Project, source: str) -> dict[str, Any]:
    """Remove every label of ``source`` (a careless annotator, a wrong
    labeling function) from the label store; the next run builds the
    training table without them. (``labels.exclude`` in the spec ignores a
    source without removing its labels.)"""
    from .trainingdata.labeling._store import remove_source

    res = remove_source(project.lake, project.spec.name, source)
    return {"source": source, **res}



def unlabelled_rows(project: Project, *, every: bool = False) -> Any:
    """The stored rows of the training union that have no label under
    ``labels.policy`` (what `mlsd run` leaves out of the training table);
    ``every``: all of them, with their label."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from .etl import PROVENANCE
    from .trainingdata._stages import with_target

    spec, lake = project.spec, project.lake
    parts = []
    for name in spec.union:
        if lake.exists("sources", name):
            t = lake.read("sources", name)
            parts.append(t.select([c for c in t.column_names
                                   if c not in PROVENANCE or c == "_source"]))
    if not parts:
        raise DataError("no stored rows yet: `mlsd ingest` (or `mlsd run`) first")
    rows, _ = with_target(spec, lake, pa.concat_tables(parts,
                                                       promote_options="default"))
    if every:
        return rows
    return rows.filter(pc.is_null(rows.column(spec.problem.target)))


def next_to_label(project: Project, *, n: int = 50, strategy: str = "margin",
                  diverse: bool = False, model: str | None = None
                  ) -> dict[str, Any]:
    """The ``n`` unlabelled rows whose labels the current model would learn
    most from (``strategy``: least_confidence, margin, entropy, random; with
    ``diverse``, a k-center batch among the ten times ``n`` most uncertain),
    with the model's predictions: what `mlsd label next` writes."""
    import numpy as np

    from .models import ModelArtifact
    from .trainingdata.labeling._active import choose, uncertainty

    if n < 1:
        raise SpecError(f"--n: at least 1, got {n}")
    if strategy not in ("least_confidence", "margin", "entropy", "random"):
        raise SpecError(f"strategy: expected least_confidence, margin, entropy or "
                        f"random, got {strategy!r} (query by committee is in "
                        f"`mlsd label simulate`)")
    rows = unlabelled_rows(project)
    if rows.num_rows == 0:
        raise DataError("every stored row has a label: nothing to ask for")
    folder, how = project.which_model(model)
    art = ModelArtifact.load(folder)
    if art.task not in ("binary", "multiclass"):
        raise SpecError(f"choosing by uncertainty needs class probabilities; model "
                        f"{art.model_id} is {art.task}")
    out = art.score(rows)
    if strategy == "random":
        scores = np.random.default_rng(project.spec.seed).random(rows.num_rows)
    else:
        scores = uncertainty(out, strategy)
    X = art.pipeline.apply(rows) if diverse else None
    picked = choose(scores, min(n, rows.num_rows), X=X, diverse=diverse,
                    seed=project.spec.seed)
    decided = art.decide(out[picked])
    key = project.spec.key
    inputs = [c for c in art.input_schema["columns"] if c in rows.column_names]
    items = []
    P = out if out.ndim == 2 else np.column_stack([1 - out, out])
    for j, d in zip(picked.tolist(), decided, strict=True):
        row = {c: rows.column(c)[j].as_py() for c in inputs}
        items.append({"item": None if key is None else str(rows.column(key)[j]
                                                           .as_py()),
                      "uncertainty": round(float(scores[j]), 6),
                      "predicted": d["label"],
                      "confidence": round(float(P[j].max()), 6), "row": row})
    return {"model": art.model_id, "model_chosen": how, "strategy": strategy,
            "diverse": diverse, "unlabelled": rows.num_rows, "items": items,
            "target": art.manifest["target"]}


def export_to_label(project: Project, *, n: int | None = None,
                    labelled: bool = False, model: str | None = None,
                    predictions: bool = True) -> dict[str, Any]:
    """Stored rows to send to annotators (the unlabelled ones, or every row
    with ``labelled``; ``n`` of them drawn at random with the spec's seed),
    each with the current model's prediction as a pre-annotation when a model
    exists (``model``: which; ``predictions=False``: none): what `mlsd label
    export` writes as Label Studio tasks."""
    import numpy as np
    import pyarrow as pa

    from .models import ModelArtifact

    if n is not None and n < 1:
        raise SpecError(f"--n: at least 1, got {n}")
    rows = unlabelled_rows(project, every=labelled)
    if rows.num_rows == 0:
        raise DataError("every stored row has a label: nothing to export (--all "
                        "exports the labelled rows too)")
    total = rows.num_rows
    if n is not None and n < total:
        picked = np.sort(np.random.default_rng(project.spec.seed).choice(
            total, size=n, replace=False))
        rows = rows.take(pa.array(picked))
    art, how = None, None
    if predictions:
        try:
            folder, how = project.which_model(model)
        except (DataError, SpecError, ModelError):
            if model is not None:  # asked for by name: say what is wrong
                raise
        else:
            art = ModelArtifact.load(folder)
    decided: list[dict[str, Any]] = [{}] * rows.num_rows
    if art is not None:
        decided = art.decide(art.score(rows))
    key = project.spec.key
    inputs = ([c for c in art.input_schema["columns"] if c in rows.column_names]
              if art is not None else [c for c in rows.column_names
                                       if c not in (project.spec.problem.target,
                                                    "_source", "_label_from",
                                                    "_label_confidence")])
    items = []
    for j, d in enumerate(decided):
        predicted = d.get("labels", d.get("label"))
        conf = None
        if "labels" in d:  # label sets: the least sure label decision
            conf = min((max(p, 1 - p) for p in d["scores"].values()), default=None)
        elif "scores" in d:  # classes: the top one's probability
            conf = max(d["scores"].values())
        elif "score" in d and "label" in d:
            conf = max(d["score"], 1 - d["score"])
        items.append({"item": None if key is None else str(rows.column(key)[j]
                                                           .as_py()),
                      "predicted": predicted,
                      "confidence": None if conf is None else round(float(conf), 6),
                      "row": {c: rows.column(c)[j].as_py() for c in inputs}})
    return {"model": None if art is None else art.model_id, "model_chosen": how,
            "rows": total, "exported": len(items), "labelled": labelled,
            "items": items, "target": project.spec.problem.target}


def write_next(doc: dict[str, Any], path: Path, *, from_name: str = "label",
               to_name: str = "text") -> Path:
    """Items to label (``next_to_label``'s or ``export_to_label``'s) as Label
    Studio tasks (``.json``: each row's fields as data, the model's label, or
    labels for a label set, as a pre-annotation of the choices ``from_name``
    on the object ``to_name`` of the labeling config) or as rows (``.csv``,
    ``.jsonl``)."""
    import json

    path = Path(path)
    if path.suffix.lower() == ".json":
        tasks = []
        for it in doc["items"]:
            task: dict[str, Any] = {"data": {
                **{k: (v if isinstance(v, str | int | float | bool) or v is None
                       else str(v)) for k, v in it["row"].items()},
                **({"item": it["item"]} if it["item"] else {})}}
            got = it.get("predicted")
            if doc.get("model") and got is not None:
                choices = ([str(c) for c in got] if isinstance(got, list)
                           else [str(got)])
                task["predictions"] = [{
                    "model_version": doc["model"], "score": it["confidence"],
                    "result": [{"from_name": from_name, "to_name": to_name,
                                "type": "choices", "value": {"choices": choices}}]}]
            tasks.append(task)
        path.write_text(json.dumps(tasks, indent=1, default=str) + "\n",
                        encoding="utf-8")
        return path
    import pyarrow as pa

    def shown(v):
        return None if v is None else "|".join(map(str, v)) if isinstance(
            v, list) else str(v)
    flat = [{"item": it["item"],
             **({"uncertainty": it["uncertainty"]} if "uncertainty" in it else {}),
             "predicted": shown(it.get("predicted")),
             "confidence": it.get("confidence"), **it["row"]} for it in doc["items"]]
    if path.suffix.lower() == ".jsonl":
        path.write_text("".join(json.dumps(r, default=str) + "\n" for r in flat),
                        encoding="utf-8")
    else:
        import pyarrow.csv as pacsv

        pacsv.write_csv(pa.Table.from_pylist(flat), path)
    return path


def _last_run_rows(project: Project, classes: list):
    """The last run's training table, each row's split, its encoded labels
    and which rows have one."""
    import numpy as np

    from .models._train import labels_of

    spec, lake = project.spec, project.lake
    if not (lake.exists("training", spec.name) and lake.exists("splits", spec.name)):
        raise DataError("no training table and split yet: `mlsd run` first")
    table = lake.read("training", spec.name)
    splits = lake.read("splits", spec.name)
    where = dict(zip(splits.column("_row").to_pylist(),
                     splits.column("_split").to_pylist(), strict=True))
    part = np.array([where.get(r) for r in table.column("_row").to_pylist()])
    y, keep = labels_of(spec.problem, table.column(spec.problem.target).to_pylist(),
                        classes)
    return table, part, y, keep


def simulate_active(project: Project, *, strategies: tuple[str, ...] = (
        "least_confidence", "margin", "entropy", "committee", "random"),
        start: int = 20, batch: int = 20, rounds: int = 10,
        diverse: bool = False) -> dict[str, Any]:
    """Each strategy's learning curve against random picking, on the last
    run's training rows as if their labels were unknown: the pool is the
    train split (labels revealed when picked), the score the task's primary
    metric on the test split, the learner the spec's, refitted every round
    (see :func:`mlsd.trainingdata.labeling.simulate`)."""

    from .models import ModelArtifact
    from .models._stage import active_curves

    spec = project.spec
    art = ModelArtifact.load(project.which_model(None)[0])
    classes = art.manifest["classes"]
    table, part, y, keep = _last_run_rows(project, classes)
    X = art.pipeline.apply(table)
    train, test = keep & (part == "train"), keep & (part == "test")
    res = active_curves(spec, classes, {"train": X[train], "test": X[test]},
                        {"train": y[train], "test": y[test]},
                        strategies=strategies, start=start, batch=batch,
                        rounds=rounds, diverse=diverse)
    return {"model_features_from": art.model_id, **res}


@_one_at_a_time
def apply_label_functions(project: Project, *, python: list | None = None
                          ) -> dict[str, Any]:
    """Run the labeling functions (``labels.functions``, and ``python``:
    functions decorated with :func:`mlsd.trainingdata.labeling.
    labeling_function`) on every stored row of the training union, store
    their votes in the label store (kind ``function``) and measure them (see
    :func:`mlsd.trainingdata.labeling.store_function_votes`; a run whose
    policy reads ``{from: function}`` does the same)."""
    import pyarrow as pa

    from .trainingdata.labeling._functions import store_function_votes

    spec, lake = project.spec, project.lake
    parts = [lake.read("sources", n) for n in spec.union if lake.exists("sources", n)]
    if not parts:
        raise DataError("no stored rows yet: `mlsd ingest` (or `mlsd run`) first")
    return store_function_votes(lake, spec, pa.concat_tables(
        parts, promote_options="default"), python)


@_one_at_a_time
def pseudo_label(project: Project, *, method: str = "self_training",
                 threshold: float = 0.9, rounds: int = 3, copies: int = 0,
                 model: str | None = None) -> dict[str, Any]:
    """Pseudo-labels for the unlabelled rows (``method``: self_training or
    spreading; see :mod:`mlsd.trainingdata.labeling._semi`), stored in the
    label store as kind ``model`` (their source: the method and the model
    artifact whose features and classes they use; the store's earlier
    pseudo-labels are replaced). Fitted on the last run's train split only;
    ``copies`` perturbed copies of each row must agree with its pseudo-label
    (consistency). ``{from: model}`` in labels.policy then trains on them;
    the split leaves them out of valid and test."""
    import numpy as np
    import pyarrow as pa

    from .models import ModelArtifact
    from .models._artifact import derive_columns
    from .models._train import make_learner
    from .trainingdata.labeling._semi import (
        consistent,
        label_spreading,
        self_training,
        stack_rows,
    )
    from .trainingdata.labeling._store import replace_labels

    spec = project.spec
    if method not in ("self_training", "spreading"):
        raise SpecError(f"method: expected self_training or spreading, got "
                        f"{method!r}")
    if not 0.5 <= threshold <= 1.0:
        raise SpecError(f"threshold: between 0.5 and 1, got {threshold}")
    if spec.problem.task not in ("binary", "multiclass"):
        raise SpecError("pseudo-labels are for classification (binary, multiclass)")
    if not spec.key:
        raise SpecError("pseudo-labels are stored by the row key: set `key` on the "
                        "sources (or dataset.key)")
    lake = project.lake
    art = ModelArtifact.load(project.which_model(model)[0])
    classes = art.manifest["classes"]
    table, part, y, keep = _last_run_rows(project, classes)
    train = keep & (part == "train")
    if "_label_from" in table.column_names:  # never pseudo-labels as teachers
        train &= np.array([v != "model" for v in
                           table.column("_label_from").to_pylist()])
    derive = art.input_schema.get("derive") or {}

    def features(rows: pa.Table):
        return art.pipeline.apply(derive_columns(rows, derive) if derive else rows)

    X_l, y_l = features(table.filter(pa.array(train))), y[train]
    unl = unlabelled_rows(project)
    if unl.num_rows == 0:
        raise DataError("every stored row has a label: nothing to pseudo-label")
    X_u = features(unl)

    def fit(X, yy):
        return make_learner(spec.problem.task, spec.model, len(classes), spec.seed,
                            problem=spec.problem, classes=classes).fit(X, yy)

    if method == "self_training":
        idx, lab, conf, when = self_training(fit, X_l, y_l, X_u,
                                             threshold=threshold, rounds=rounds)
    else:
        idx, lab, conf = label_spreading(X_l, y_l, X_u, threshold=threshold)
        when = np.ones(len(idx), dtype=int)
    dropped = 0
    if copies and len(idx):
        from .models._robustness import NUMBER_KINDS, TEXT_KINDS
        from .spec._models import RobustnessSpec
        from .trainingdata import perturb

        rb = spec.augment.robustness or RobustnessSpec()
        picked = unl.take(pa.array(idx))
        nums = sorted({c for t in art.pipeline.transforms if t.kind in NUMBER_KINDS
                       for c in t.inputs if c in picked.column_names
                       and pa.types.is_floating(picked.schema.field(c).type)})
        texts = [c for t in art.pipeline.transforms if t.kind in TEXT_KINDS
                 for c in t.inputs if c in picked.column_names]
        final = fit(stack_rows(X_l, X_u[idx]), np.concatenate([y_l, lab]))
        mats = [features(perturb(
            picked, noise=rb.noise if nums else 0.0, noise_columns=nums or None,
            reference=table, text_column=texts[0] if texts else None,
            text_ops={"synonyms": 0.0, "swap": rb.swap, "delete": rb.delete}
            if texts else None, seed=spec.seed + c)) for c in range(copies)]
        ok = consistent(final.predict, mats, lab)
        dropped = int((~ok).sum())
        idx, lab, conf, when = idx[ok], lab[ok], conf[ok], when[ok]
    source = f"{method}:{art.model_id}"
    keys = unl.column(spec.key).to_pylist()
    rows = [{"item": str(keys[i]), "label": str(classes[c]), "kind": "model",
             "source": source, "confidence": round(float(p), 6),
             "labelled_at": None, "imported_from": f"mlsd label pseudo ({method})",
             "import_id": None} for i, c, p in zip(idx, lab, conf, strict=True)]
    # the store's earlier pseudo-labels are replaced
    version, _ = replace_labels(lake, spec.name, rows, kind="model", prefix="s")
    counts = {str(classes[c]): int((lab == c).sum()) for c in np.unique(lab)}
    return {"method": method, "source": source, "unlabelled": unl.num_rows,
            "pseudo_labelled": len(rows), "threshold": threshold,
            "by_label": counts, "by_round": {str(r): int((when == r).sum())
                                             for r in np.unique(when)},
            "inconsistent_dropped": dropped, "copies": copies,
            "teachers": int(train.sum()), "version": version}


def _read_any(project: Project, path: str | Path):
    """A file (any format mlsd reads) under the project, or given absolute."""
    from .etl import read_table

    path = Path(path)
    if not path.is_absolute():
        path = project.root / path
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    return path, read_table(path).table


@_one_at_a_time
def import_prediction_log(project: Project, path: str | Path, *,
                          request_id: str = "request_id", item: str | None = None,
                          model_version: str | None = "model_version",
                          time: str = "predicted_at",
                          outputs: list[str] | None = None) -> dict[str, Any]:
    """Append a file of logged predictions to the prediction log (lake area
    ``predictions``): request id, item key (default: the project's key),
    model version, time; the other columns as the raw inputs, ``outputs`` as
    the outputs. The same file twice is one write."""
    from .trainingdata.labeling._natural import log_rows

    path, table = _read_any(project, path)
    item = item or (project.spec.key if project.spec.key in table.column_names
                    else None)
    if model_version not in table.column_names:
        model_version = None
    rows = log_rows(table, request_id=request_id, item=item,
                    model_version=model_version, time=time, outputs=outputs)
    return _append(project, "predictions", path, table, rows,
                   {"request_id": request_id, "item": item, "time": time})


def _append(project: Project, area: str, path: Path, table, rows,
            options: dict[str, Any]) -> dict[str, Any]:
    """Append ``rows`` (read from ``table`` of the file ``path``) to a lake
    area, once per file and options."""
    from .trainingdata.labeling._store import file_digest

    version, written = project.lake.write(
        area, project.spec.name, rows, mode="append",
        write_id=area[0] + file_digest(path, options)[:16])
    return {"file": str(path), "rows": rows.num_rows,
            "skipped": table.num_rows - rows.num_rows, "version": version,
            "written": written}


@_one_at_a_time
def import_feedback(project: Project, path: str | Path, *,
                    request_id: str = "request_id", event: str = "event",
                    time: str = "at") -> dict[str, Any]:
    """Append a file of feedback events (request id, event, time) to lake area
    ``feedback``. The same file twice is one write."""
    from collections import Counter

    from .trainingdata.labeling._natural import feedback_rows

    path, table = _read_any(project, path)
    rows = feedback_rows(table, request_id=request_id, event=event, time=time)
    out = _append(project, "feedback", path, table, rows,
                  {"request_id": request_id, "event": event, "time": time})
    return {**out, "events": dict(sorted(Counter(
        rows.column("event").to_pylist()).items()))}


@_one_at_a_time
def natural_labels(project: Project, *, now: Any = None) -> dict[str, Any]:
    """Labels from feedback (``labels.natural``): see
    :func:`mlsd.trainingdata.labeling.store_natural` (a run whose policy reads
    ``{from: natural}`` does the same)."""
    from .trainingdata.labeling._natural import store_natural

    spec = project.spec
    if spec.labels.natural is None:
        raise SpecError("labels.natural is not set: name the window and the event "
                        "(or weights) that make a label")
    return store_natural(project.lake, spec.name, spec.labels.natural, now=now)


def pretrain_embeddings(project: Project, column: str, output: str | Path, *,
                        dim: int = 64, min_df: int = 2,
                        max_words: int = 50_000) -> dict[str, Any]:
    """Word vectors pretrained on the project's own text, labelled or not: the
    truncated SVD of the TF-IDF matrix of ``column`` over every stored row of
    the training union (latent semantic analysis: words used in the same
    texts get close vectors), written to ``output`` in the word2vec text
    format that ``encode: embedding`` reads. No label is read; the text of
    rows that will be tested is read too (transductive, as any unsupervised
    pretraining on the corpus)."""
    import pyarrow as pa

    spec, lake = project.spec, project.lake
    parts = [lake.read("sources", n).select([column]) for n in spec.union
             if lake.exists("sources", n)
             and column in lake.dataset("sources", n).schema.names]
    if not parts:
        raise DataError(f"no stored rows with a {column!r} column: `mlsd ingest` "
                        f"first, or name a text column")
    texts = [t for t in pa.concat_tables(parts).column(column).to_pylist() if t]
    if len(texts) < 10:
        raise DataError(f"{len(texts)} text(s) in {column!r}: too few to pretrain on")
    from ._vectors import lsa_word_vectors, write_vectors
    from .lake._paths import inside

    words, E, explained = lsa_word_vectors(texts, dim=dim, min_df=min_df,
                                           max_words=max_words, seed=spec.seed)
    k = E.shape[1]
    out = inside(project.root, *Path(output).parts)
    write_vectors(out, words, E)
    return {"file": str(out.relative_to(project.root.resolve())), "words": len(words),
            "dim": k, "texts": len(texts),
            "explained_variance": explained}


# monitoring -----------------------------------------------------------------------

def monitor(project: Project | str | Path | None, *, since: str | None = None,
            window: str | None = None, model: str | None = None,
            now: Any = None, report: bool = True) -> dict[str, Any]:
    """Served traffic against the model's training rows (see
    :mod:`mlsd.audit._monitor`): the prediction log of the last ``since``
    (monitor.since) for the model ``model`` (default: the one served), each
    input's drift, the prediction's, the same by ``window``, and the live
    metrics once natural labels arrive (labels.natural and /feedback).
    ``status`` is ``alert`` when a threshold (monitor.thresholds) is passed;
    with ``report``, an HTML report in .mlsd/reports/."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    from .audit._monitor import (
        monitor as measure,
    )
    from .audit._monitor import (
        reference_outputs,
        served_inputs,
        served_outputs,
    )
    from .models import ModelArtifact
    from .models._registry import model_parts
    from .spec._models import period_seconds
    from .trainingdata.labeling._store import _time

    project = Project.of(project)
    spec, lake = project.spec, project.lake
    settings = spec.monitor
    since = since or settings.since
    window = window or settings.window
    try:
        span, width = period_seconds(since), period_seconds(window)
    except ValueError as err:
        raise SpecError(f"--since {since!r} / --window {window!r}: {err}") from None
    end = _time(now) if now is not None else datetime.now(UTC)
    start = datetime.fromtimestamp(end.timestamp() - span, UTC)
    folder, how = project.which_model(model)
    art = ModelArtifact.load(folder)
    if not lake.exists("predictions", spec.name):
        raise DataError("the prediction log is empty: serve the model (`mlsd serve`, "
                        "serve.log on) or import a log (`mlsd label log FILE`)")
    log = lake.read("predictions", spec.name)
    at = log.column("predicted_at")
    keep = pc.and_(pc.and_(pc.greater_equal(at, pa.scalar(start, at.type)),
                           pc.less_equal(at, pa.scalar(end, at.type))),
                   pc.equal(log.column("model_version"), art.model_id))
    log = log.filter(keep).sort_by([("predicted_at", "ascending")])
    inputs = list(art.input_schema["columns"])
    parts = model_parts(lake, art.manifest)
    reference = parts["train"].select([c for c in inputs
                                       if c in parts["train"].column_names])
    served = served_inputs(log, art.input_schema).select(reference.column_names)
    times = np.array([t.timestamp() for t in log.column("predicted_at").to_pylist()],
                     dtype=float)
    labels = scores = None
    natural = spec.labels.natural
    if natural is not None and lake.exists("feedback", spec.name) and log.num_rows:
        from .trainingdata.labeling._natural import request_labels

        found = request_labels(log, lake.read("feedback", spec.name), natural,
                               now=end)
        labels, scores = _live_labels(art, log, found)
    test = art.manifest["metrics"]["model"].get("test", {})
    doc = measure(reference=reference, served=served, times=times,
                  served_answers=served_outputs(log, art.task),
                  reference_answers=reference_outputs(art, parts["test"]),
                  task=art.task, window_seconds=width, min_rows=settings.min_rows,
                  seed=spec.seed, thresholds=settings.thresholds, labels=labels,
                  scores=scores, test_metrics=test,
                  primary=art.manifest["metrics"].get("primary"),
                  threshold=art.manifest.get("threshold"))
    doc = {"model": art.model_id, "model_chosen": how, "task": art.task,
           "since": start.isoformat(), "until": end.isoformat(), "window": window,
           **doc}
    # the last verdict per model, for the service's /metrics gauges
    import json

    last = project.home / "monitor" / f"{art.model_id}.json"
    last.parent.mkdir(parents=True, exist_ok=True)
    tmp = last.with_suffix(".tmp")
    tmp.write_text(json.dumps({k: doc.get(k) for k in (
        "model", "status", "until", "rows", "inputs", "prediction", "live",
        "alerts")}, default=str), encoding="utf-8")
    tmp.replace(last)
    if report:
        from .report import render_monitor

        stamp = end.strftime("%Y%m%dT%H%M%S")
        path = render_monitor(doc, project.home / "reports" / f"monitor-{stamp}.html")
        doc["report"] = str(path.relative_to(project.root))
    return doc


def _live_labels(art, log, found: dict[str, str]):
    """The logged predictions' natural labels as the model's codes (-1, or
    NaN for a regression, where none yet) and the logged outputs as the
    model's raw outputs (a score, class probabilities, a value)."""
    import json

    import numpy as np

    from .trainingdata.labeling._store import label_text

    classes = art.manifest.get("classes") or []
    at = {label_text(c): i for i, c in enumerate(classes)}
    rids = log.column("request_id").to_pylist()
    outs = [json.loads(x) if x else {} for x in log.column("outputs").to_pylist()]
    if art.task == "regression":
        labels = np.array([float(found[r]) if r in found else np.nan for r in rids])
        return labels, np.array([o.get("value", np.nan) for o in outs], dtype=float)
    labels = np.array([at.get(label_text(found[r]), -1) if r in found else -1
                       for r in rids], dtype=np.int64)
    if art.task == "binary":
        return labels, np.array([o.get("score", np.nan) for o in outs], dtype=float)
    if art.task == "multiclass":
        return labels, np.array([[o.get("scores", {}).get(str(c), np.nan)
                                  for c in classes] for o in outs], dtype=float)
    return None, None  # label sets: no natural labels (one event, one label)
