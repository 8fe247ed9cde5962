"""The whole run, stage after stage, recording lineage: what ``mlsd run`` does.

ingest -> validate -> lake -> split -> features -> train -> audit -> report. Each
stage reads what the one before it wrote, by name and version, and the catalog
records every edge, so the model can be traced back to its source files and rows.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from . import __version__
from .audit import audit_pair, audit_splits
from .connectors import FileConnector, prune_blobs
from .engine import DuckDBEngine
from .errors import DataError, ModelError, SchemaError, SpecError
from .etl import (
    PROVENANCE,
    QUARANTINE_SCHEMA,
    DataSchema,
    LoadResult,
    Transformer,
    Validator,
    load_source,
    logical_type,
    resolve_schema,
)
from .features import FeaturePipeline
from .lake import Catalog, Lake, check_name, dataset_node, inside
from .models import ModelArtifact, encode_target, explain, target_array, train
from .report import render_report
from .spec import ProjectSpec, ValidateSpec, find_spec_file, load_spec, spec_hash
from .trainingdata import SPLIT, TEST, TRAIN, VALID, assign_splits

DEFAULT_METRICS = {
    "binary": ["pr_auc", "roc_auc", "recall", "precision", "f1", "accuracy"],
    "multiclass": ["macro_f1", "accuracy", "balanced_accuracy", "log_loss"],
    "regression": ["rmse", "mae", "r2"],
}
_SHA256 = re.compile(r"\b[0-9a-f]{64}\b")


class Reporter:
    """Receives progress from the pipeline; the default says nothing.

    The command line passes one that draws Rich progress bars on stderr.
    """

    @contextmanager
    def stage(self, name: str, total: int | None = None) -> Iterator[Reporter]:
        yield self

    def advance(self, n: int = 1) -> None:
        """Count ``n`` more units of work in the current stage."""

    def note(self, text: str) -> None:
        """A one-line remark about the current stage."""


class Project:
    """A project folder: its spec, lake, catalog and artifact folders."""

    def __init__(self, *, spec_path: Path):
        self.spec_path = Path(spec_path).resolve()
        self.root = self.spec_path.parent
        self.spec: ProjectSpec = load_spec(self.spec_path)
        self.home = self.root / ".mlsd"
        self.lake = Lake(root=self.home)
        self.catalog = Catalog(path=self.home / "catalog.db")

    @classmethod
    def find(cls, start: str | Path | None = None, spec: str | Path | None = None
             ) -> Project:
        """The project of ``spec`` (a file), or of the nearest ``mlsd.yaml``."""
        if spec is not None:
            path = Path(spec)
            if not path.is_file():
                raise SpecError(f"{path}: no such spec file")
            return cls(spec_path=path)
        return cls(spec_path=find_spec_file(start))

    def model_path(self, model_id: str) -> Path:
        return inside(self.home, "artifacts", "models", model_id)

    def latest_model(self) -> Path:
        models = self.catalog.artifacts("model")
        if not models:
            raise ModelError("no model yet in this project: run `mlsd run` first")
        return self.root / models[-1]["path"]

    def find_model(self, model_id: str | None) -> Path:
        if model_id is None:
            return self.latest_model()
        art = self.catalog.artifact(model_id)
        if art is None or art["kind"] != "model":
            raise ModelError(f"no model {model_id!r} (or more than one matches); "
                             f"`mlsd models` lists them")
        return self.root / art["path"]


def ingest(project: Project, *, sources: list[str] | None = None,
           reporter: Reporter | None = None) -> dict[str, Any]:
    """Load sources into the lake (all by default): extract, validate, commit.

    Returns the per-source results (rows read, stored, quarantined, reasons,
    the dataset version, and whether anything new was loaded).
    """
    rep = reporter or Reporter()
    spec, catalog = project.spec, project.catalog
    names = sources or list(spec.sources)
    unknown = [n for n in names if n not in spec.sources]
    if unknown:
        raise SpecError(f"unknown source(s) {unknown}; sources are "
                        f"{', '.join(spec.sources)}")
    started_at = datetime.now(UTC)
    run_id = "i" + started_at.strftime("%Y%m%dT%H%M%S%f")
    catalog.start_run(run_id, spec_hash=spec_hash(spec), code_version=__version__)
    results = []
    try:
        for name in names:
            results.append(_load_one(project, name, run_id, rep))
    except BaseException as err:
        catalog.finish_run(run_id, status="failed", summary={"error": str(err)})
        raise
    summary = {"run_id": run_id, "sources": [r.to_dict() for r in results]}
    catalog.finish_run(run_id, status="done", summary=summary)
    return summary


def _load_one(project: Project, name: str, run_id: str, rep: Reporter
              ) -> LoadResult:
    spec = project.spec
    with rep.stage(f"ingest {name}") as st:
        res = load_source(name, spec.sources[name], spec.validate_,
                          root=project.root, lake=project.lake,
                          catalog=project.catalog, run_id=run_id,
                          on_rows=st.advance, transform=spec.transform)
        st.note(f"{res.rows_in} read, {res.rows_stored} stored, "
                f"{res.rows_quarantined} quarantined"
                + (" (nothing new: no new version)" if res.skipped else ""))
    return res


def replay_quarantine(project: Project, source: str) -> dict[str, Any]:
    """Re-validate a source's quarantined rows with its current schema and rules;
    rows that pass join the dataset, the others stay with their reasons."""
    from .etl import replay

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


def delete_rows(project: Project, source: str, where: str) -> dict[str, Any]:
    """Erase the rows of a source matching ``where`` (say, one person's data)
    from its dataset and from its quarantine, where each rejected record is
    parsed again to evaluate the predicate. Old versions keep the rows until
    ``mlsd lake vacuum``."""
    from .etl import quarantine_matches

    spec = project.spec
    if source not in spec.sources:
        raise SpecError(f"unknown source {source!r}; sources are "
                        f"{', '.join(spec.sources)}")
    lake = project.lake
    out = {"source": source, "where": where}
    out["dataset"] = lake.delete("sources", source, where)
    if lake.exists("quarantine", source):
        schema, _ = resolve_schema(source, spec.sources[source], spec.validate_,
                                   project.root)
        lines = quarantine_matches(lake, source, spec.sources[source], schema,
                                   where, root=project.root,
                                   null_values=spec.validate_.null_values)
        if lines:
            pred = " OR ".join(
                "(_source = '{}' AND _line = {})".format(s.replace("'", "''"), n)
                for s, n in lines)
            out["quarantine"] = lake.delete("quarantine", source, pred)
        else:
            out["quarantine"] = {"deleted": 0,
                                 "version": lake.version("quarantine", source)}
    return out


def vacuum(project: Project, retention_hours: int | None = None
           ) -> list[dict[str, Any]]:
    """Remove old versions' files from every dataset of the lake."""
    hours = project.spec.lake.retention_hours if retention_hours is None \
        else retention_hours
    out = []
    for area in ("sources", "quarantine", "splits"):
        for name in project.lake.list(area):
            removed = project.lake.vacuum(area, name, retention_hours=hours)
            out.append({"dataset": f"{area}/{name}", "files_removed": len(removed),
                        "retention_hours": hours})
    blobs = project.lake.root / "blobs"
    if blobs.is_dir():
        out.append({"dataset": "blobs", "files_removed": len(
            prune_blobs(blobs, _blob_refs(project.lake))),
            "retention_hours": hours})
    return out


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


def sql(project: Project, query: str) -> pa.Table:
    """Run a SQL query on DuckDB over the latest version of every source.

    Each source is a view named after it (quote names with dashes or dots:
    ``"my-source"``), so the lake reads like a warehouse.
    """
    engine = DuckDBEngine(lake=project.lake)
    con = engine.con.con
    for name in project.lake.list("sources"):
        con.register(name, project.lake.dataset("sources", name))
    try:
        return con.sql(query).to_arrow_table()
    except Exception as err:  # DuckDB raises its own error classes
        raise SpecError(f"the query failed: {err}") from None


def union_schema(project: Project, sources: list[str]) -> DataSchema:
    """The schema shared by the sources of the training table."""
    spec = project.spec
    cols: dict[str, str] = {}
    for name in sources:
        schema, _ = resolve_schema(name, spec.sources[name], spec.validate_,
                                   project.root)
        for c, t in schema.columns.items():
            if cols.setdefault(c, t) != t:
                raise SchemaError(
                    f"column {c!r} is {cols[c]} in one source and {t} in "
                    f"{name!r}; the sources of dataset.union must agree")
    base = DataSchema(dict(cols))
    for f in Transformer(spec=spec.transform, schema=base).derived_fields():
        cols[f.name] = logical_type(f.type)
    return DataSchema(cols)


def input_schema(spec: ProjectSpec, schema: DataSchema) -> dict[str, Any]:
    """The raw fields a prediction request carries: every column but the target."""
    target = spec.problem.target
    derived = dict(spec.transform.derive)
    cols = {c: t for c, t in schema.columns.items() if c != target
            and c not in derived}
    return {"columns": cols, "derive": derived,
            "required": [c for c in spec.validate_.required if c in cols],
            "key": spec.key, "target": target,
            "null_values": list(spec.validate_.null_values)}


def _check_columns(spec: ProjectSpec, schema: DataSchema) -> None:
    cols = schema.columns
    problems = []
    if spec.problem.target not in cols:
        problems.append(f"problem.target: column {spec.problem.target!r} is not in "
                        f"the data")
    for i, f in enumerate(spec.features):
        if f.column not in cols:
            problems.append(f"features[{i}].column: {f.column!r} is not in the data")
        elif f.kind == "time" and cols[f.column] != "timestamp":
            problems.append(f"features[{i}].encode: time parts need a timestamp, "
                            f"{f.column!r} is {cols[f.column]}")
        elif f.kind == "numeric" and cols[f.column] not in ("int64", "float64",
                                                             "bool"):
            problems.append(f"features[{i}]: {f.column!r} is {cols[f.column]}; a "
                            f"feature without `encode` must be numeric (use "
                            f"onehot or hashing for categories)")
    for part in ("time", "group"):
        col = getattr(spec.split, part)
        if col and col not in cols:
            problems.append(f"split.{part}: column {col!r} is not in the data")
    if spec.key and spec.key not in cols:
        problems.append(f"dataset.key: column {spec.key!r} is not in the data")
    if problems:
        raise SpecError("mlsd.yaml does not fit the data:\n  " + "\n  ".join(problems),
                        problems=[(p.split(":")[0], p) for p in problems])


def _hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()
                          ).hexdigest()


def run(project: Project | str | Path | None = None, *,
        reporter: Reporter | None = None) -> dict[str, Any]:
    """Run the whole pipeline on a project; return the run summary.

    Parameters
    ----------
    project : Project, or a path to a project folder or spec file
        By default, the project of the current folder.
    reporter : Reporter, optional
        Receives progress (the command line draws it with Rich).
    """
    if not isinstance(project, Project):
        p = Path(project) if project is not None else None
        project = (Project.find(spec=p) if p is not None and p.is_file()
                   else Project.find(start=p))
    rep = reporter or Reporter()
    catalog = project.catalog
    started = time.perf_counter()
    started_at = datetime.now(UTC)
    run_id = "r" + started_at.strftime("%Y%m%dT%H%M%S%f")
    s_hash = spec_hash(project.spec)
    catalog.start_run(run_id, spec_hash=s_hash, code_version=__version__)
    try:
        summary = _run(project, rep, run_id, s_hash, started_at)
    except BaseException as err:
        catalog.finish_run(run_id, status="failed", summary={"error": str(err)})
        raise
    summary["seconds"] = round(time.perf_counter() - started, 3)
    catalog.finish_run(run_id, status="done", summary=summary)
    return summary


def _run(project: Project, rep: Reporter, run_id: str, s_hash: str,
         started_at: datetime) -> dict[str, Any]:
    spec, lake, catalog = project.spec, project.lake, project.catalog

    # 1. ingest + validate + lake --------------------------------------------------
    loads = [_load_one(project, name, run_id, rep) for name in spec.sources]
    by_name = {r.source: r for r in loads}

    # 2. the training table: the union of the sources' versions --------------------
    schema = union_schema(project, spec.union)
    _check_columns(spec, schema)
    engine = DuckDBEngine(lake=lake, threads=spec.model.threads)
    with rep.stage("read training table"):
        parts = []
        for name in spec.union:
            t = engine.to_arrow(engine.table("sources", name, by_name[name].version))
            parts.append(t.select([*schema.columns, *PROVENANCE]))
        table = pa.concat_tables(parts, promote_options="default")
    target = spec.problem.target
    labelled = pc.is_valid(table.column(target))
    unlabelled = table.num_rows - int(pc.sum(labelled).as_py() or 0)
    table = table.filter(labelled)
    if table.num_rows == 0:
        raise DataError("no labelled row to train on: every row was quarantined or "
                        f"has no {target!r}")
    # a stable row order, whatever the file order: by key, else by source and line
    sort_keys = [(spec.key, "ascending")] if spec.key else [
        ("_source", "ascending"), ("_line", "ascending")]
    table = table.sort_by(sort_keys)

    # 3. split ---------------------------------------------------------------------
    with rep.stage("split"):
        splits = assign_splits(table, spec.split, target=target, seed=spec.seed,
                               key=spec.key)
        inputs = [dataset_node("sources", n, by_name[n].version) for n in spec.union]
        split_id = _hash({"inputs": inputs, "split": spec.split.model_dump(),
                          "seed": spec.seed, "key": spec.key, "target": target})
        id_cols = [spec.key] if spec.key else ["_source", "_line"]
        split_table = table.select(id_cols).append_column(SPLIT, pa.array(splits))
        split_name = check_name(spec.name)
        split_version, _ = lake.write("splits", split_name, split_table,
                                      write_id=split_id)
        split_node = catalog.add_dataset_version(
            "splits", split_name, split_version, write_id=split_id,
            rows=table.num_rows, run_id=run_id)
        for node in inputs:
            catalog.add_edge(node, split_node, "split_into", run_id)
    parts = {p: table.filter(pa.array(splits == p)) for p in (TRAIN, VALID, TEST)}
    sizes = {p: parts[p].num_rows for p in parts}

    # 4. features: analyze on train only, apply to every split ---------------------
    with rep.stage("features"):
        pipeline = FeaturePipeline.from_spec(spec.features)
        pipeline.analyze(engine, engine.from_arrow(parts[TRAIN]))
        X = {p: pipeline.apply(parts[p]) for p in parts}
        names = pipeline.names()

    # 5. train the model and the baselines -----------------------------------------
    with rep.stage("train"):
        classes, index = encode_target(spec.problem,
                                       parts[TRAIN].column(target).to_pylist())
        y, keep = {}, {}
        for p in parts:
            y[p], keep[p] = target_array(spec.problem.task,
                                         parts[p].column(target).to_pylist(), index)
            if not keep[p].all():
                X[p], y[p] = X[p][keep[p]], y[p][keep[p]]
        result = train(spec.problem, spec.model, X=X, y=y, classes=classes,
                       names=names, blocks=pipeline.block_slices(), seed=spec.seed)

    # 6. audit ---------------------------------------------------------------------
    with rep.stage("audit"):
        findings = audit_splits(table, splits, feature_columns=pipeline.columns,
                                key=spec.key, group=spec.split.group,
                                allow_shared=spec.audit.allow_shared)
        # the same audit `mlsd audit` makes, on train (+ valid) against test,
        # over the columns the model reads
        audit_cols = list(dict.fromkeys(
            [*pipeline.columns, target, *([spec.split.time] if spec.split.time
                                          else []),
             *([spec.split.group] if spec.split.group else []),
             *[c for c in spec.audit.allow_shared if c in table.column_names]]))
        fit_rows = pa.concat_tables([parts[TRAIN], parts[VALID]]).select(audit_cols)
        pair_audit = audit_pair(
            fit_rows, parts[TEST].select(audit_cols), target=target,
            task=spec.problem.task, time_column=spec.split.time,
            group=spec.split.group, allow_shared=spec.audit.allow_shared,
            seed=spec.seed)
        # SHAP values of the run's own model, on validation rows
        explanation = explain(result.learner, X[VALID], X[TRAIN], names,
                              pipeline.block_slices(), seed=spec.seed)
        seen = {(f.check, tuple(f.columns)) for f in pair_audit.findings}
        findings = pair_audit.findings + [
            f for f in findings if (f.check, tuple(f.columns)) not in seen]

    # 7. the model artifact and its lineage ----------------------------------------
    lineage_datasets = []
    for name in spec.union:
        r = by_name[name]
        lineage_datasets.append({"dataset": r.dataset, "version": r.version,
                                 "rows": r.rows_stored, "load_id": r.load_id,
                                 "files": r.files})
    feature_json = pipeline.to_json()
    digest = _hash({"features": feature_json, "metrics": result.metrics,
                    "inputs": inputs})[:10]
    model_id = f"m{started_at.strftime('%Y%m%d%H%M%S')}-{digest}"
    folder = project.model_path(model_id)
    time_range = None
    if spec.split.strategy == "time":
        time_range = {}
        for p in parts:
            col = parts[p].column(spec.split.time)
            mm = pc.min_max(col).as_py()
            time_range[p] = [str(mm["min"]), str(mm["max"])]
    positive_rate = None
    if spec.problem.task == "binary":
        positive_rate = {p: float(np.mean(y[p] == 1)) if len(y[p]) else 0.0
                         for p in parts}
    manifest = {
        "model_id": model_id, "kind": spec.model.kind, "task": spec.problem.task,
        "target": target, "classes": classes, "n_classes": len(classes) or 1,
        "threshold": result.threshold, "threshold_objective":
        spec.problem.threshold if spec.problem.task == "binary" else None,
        "threads": spec.model.threads, "params": spec.model.params,
        "created_at": started_at.isoformat(), "metrics": result.metrics,
        "beats_baselines": result.beats_baselines, "n_features": len(names),
        "lineage": {"run_id": run_id, "spec_hash": s_hash, "code_version":
                    __version__, "datasets": lineage_datasets,
                    "split": {"dataset": f"splits/{split_name}",
                              "version": split_version, **sizes}},
    }
    ModelArtifact.save(folder, manifest=manifest, pipeline=pipeline,
                       learner=result.learner,
                       input_schema=input_schema(spec, schema))
    rel = folder.relative_to(project.root).as_posix()
    model_node = catalog.add_artifact(model_id, kind="model", path=rel, run_id=run_id,
                                      metadata={k: manifest[k] for k in (
                                          "kind", "task", "target", "threshold",
                                          "metrics", "lineage")})
    for node in inputs:
        catalog.add_edge(node, model_node, "trained_on", run_id)
    catalog.add_edge(split_node, model_node, "split_by", run_id)

    # 8. the report ----------------------------------------------------------------
    report_path = inside(project.home, "reports", f"{run_id}.html")
    totals = {k: sum(getattr(r, k) for r in loads)
              for k in ("rows_in", "rows_stored", "rows_quarantined")}
    reasons: dict[str, int] = {}
    for r in loads:
        for k, v in r.reasons.items():
            reasons[k] = reasons.get(k, 0) + v
    metric_names = list(dict.fromkeys(spec.problem.metrics
                                      + DEFAULT_METRICS[spec.problem.task]))
    summary: dict[str, Any] = {
        "run_id": run_id, "project": spec.name, "started_at": started_at.isoformat(),
        "seconds": 0.0, "spec_hash": s_hash, "code_version": __version__,
        "sources": [r.to_dict() for r in loads], "totals": totals,
        "top_reasons": sorted(reasons.items(), key=lambda kv: -kv[1])[:5],
        "split": {"strategy": spec.split.strategy, "time": spec.split.time,
                  "rows": table.num_rows, "unlabelled": unlabelled, "sizes": sizes,
                  "positive_rate": positive_rate, "time_range": time_range,
                  "dataset": f"splits/{split_name}", "version": split_version},
        "model": {**{k: manifest[k] for k in (
            "model_id", "kind", "task", "target", "classes", "threshold",
            "threshold_objective", "n_features", "metrics", "beats_baselines")}},
        "importance": result.importance[:10],
        "shap": None if explanation is None else {
            k: explanation[k] for k in ("explainer", "rows_used", "background_rows")
        } | {"by_column": explanation["by_column"][:15]},
        "audit": [f.to_dict() for f in findings],
        "audit_design": pair_audit.design,
        "lineage": {"datasets": lineage_datasets},
        "metric_names": metric_names,
        "paths": {"model": rel, "report": report_path.relative_to(
            project.root).as_posix(), "feature_state": f"{rel}/features.json"},
    }
    with rep.stage("report"):
        summary["seconds"] = round((datetime.now(UTC) - started_at).total_seconds(), 3)
        render_report(summary, curves=result.curves, importance=result.importance,
                      path=report_path, audit=pair_audit.to_dict(),
                      explanation=explanation)
        report_node = catalog.add_artifact(f"report-{run_id}", kind="report",
                                           path=summary["paths"]["report"],
                                           run_id=run_id, metadata={})
        catalog.add_edge(model_node, report_node, "reported_in", run_id)
    return summary


def score_file(model_dir: Path, input_path: str | Path, output_path: str | Path, *,
               chunk_rows: int = 50_000, reporter: Reporter | None = None
               ) -> dict[str, Any]:
    """Batch scoring: read a CSV/JSONL file of raw rows, write their predictions.

    Rows are validated against the model's input schema exactly as at serving
    time; rows that fail go, with their reasons, to ``OUTPUT.rejected.parquet``
    (nothing is dropped silently). The output holds the key (when the input has
    it), the input file and line, and the prediction.
    """
    rep = reporter or Reporter()
    artifact = ModelArtifact.load(Path(model_dir))
    ischema = artifact.input_schema
    schema = DataSchema(dict(ischema["columns"]))
    rules = ValidateSpec(required=ischema["required"],
                         null_values=ischema.get("null_values", ["", "NA", "null"]))
    validator = Validator(schema=schema, rules=rules)
    input_path, output_path = Path(input_path), Path(output_path)
    if output_path.suffix.lower() != ".parquet":
        raise DataError(f"{output_path}: the output must be a .parquet file")
    connector = FileConnector(path=str(input_path.resolve()), root=Path.cwd())
    key = ischema.get("key")
    label_type = pa.array(artifact.manifest["classes"] or [0.0]).type
    rejected_path = output_path.with_suffix(".rejected.parquet")
    n_in = n_ok = n_bad = 0
    writer = rej_writer = None
    try:
        with rep.stage("score") as st:
            for info, raw in connector.read(list(schema.columns), chunk_rows=chunk_rows,
                                            strict=False, required=ischema["required"]):
                out = validator.validate(raw, source=info.path, sha256=info.sha256,
                                         load_id=artifact.model_id)
                n_in += raw.num_rows
                acc = out.accepted
                preds = artifact.decide(artifact.score(pa.Table.from_batches([acc])))
                cols: dict[str, Any] = {}
                if key and key in acc.schema.names:
                    cols[key] = acc.column(key)
                cols["_source"] = acc.column("_source")
                cols["_line"] = acc.column("_line")
                if artifact.task == "binary":
                    cols["score"] = pa.array([p["score"] for p in preds], pa.float64())
                    cols["label"] = pa.array([p["label"] for p in preds], label_type)
                elif artifact.task == "multiclass":
                    for c in artifact.manifest["classes"]:
                        cols[f"score_{c}"] = pa.array([p["scores"][str(c)]
                                                       for p in preds], pa.float64())
                    cols["label"] = pa.array([p["label"] for p in preds], label_type)
                else:
                    cols["prediction"] = pa.array([p["value"] for p in preds],
                                                  pa.float64())
                cols["model_version"] = pa.array([artifact.model_id] * acc.num_rows,
                                                 pa.string())
                table = pa.table(cols)
                if writer is None:
                    output_path.parent.mkdir(parents=True, exist_ok=True)
                    writer = pq.ParquetWriter(output_path, table.schema)
                writer.write_table(table)
                n_ok += acc.num_rows
                if out.rejected.num_rows:
                    if rej_writer is None:
                        rej_writer = pq.ParquetWriter(rejected_path, QUARANTINE_SCHEMA)
                    rej_writer.write_batch(out.rejected)
                    n_bad += out.rejected.num_rows
                st.advance(raw.num_rows)
    finally:
        if writer is not None:
            writer.close()
        if rej_writer is not None:
            rej_writer.close()
    if writer is None:
        raise DataError(f"{input_path}: no row to score")
    return {"model_version": artifact.model_id, "rows_in": n_in, "scored": n_ok,
            "rejected": n_bad, "output": str(output_path),
            "rejected_output": str(rejected_path) if n_bad else None}
