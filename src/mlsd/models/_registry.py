"""The model registry: aliases (``champion``, ``challenger``) that point at
model versions, promotions and rollbacks kept as a history, and the comparison
of two models on the same test rows.

A model version is a model artifact the catalog records (its run, data and
metrics are in its manifest and lineage). An alias is a name a person or a
stage points at one of them; ``mlsd serve`` and ``mlsd predict`` score with
the ``champion`` when there is one. The catalog keeps every promotion and
rollback: a rollback undoes the last promotion still in force.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import DataError, ModelError
from ..lake import CHAMPION
from ..runtime import ArtifactRef, DatasetRef, RunContext, StageResult, stage

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

    from ..lake import Catalog, Lake
    from ._artifact import ModelArtifact

_ALIAS = re.compile(r"^[a-z][a-z0-9_-]{0,39}$")


def check_alias(name: str) -> str:
    """``name`` if it can be an alias: lower-case letters, digits, ``-`` and
    ``_``, starting with a letter, at most 40 characters."""
    if not isinstance(name, str) or not _ALIAS.match(name):
        raise ModelError(f"alias {name!r}: use lower-case letters, digits, '-' and "
                         f"'_', starting with a letter (for example champion)")
    return name


def _model(catalog: Catalog, model_id: str) -> dict[str, Any]:
    art = catalog.artifact(model_id)
    if art is None or art["kind"] != "model":
        raise ModelError(f"no model {model_id!r} (or more than one matches); "
                         f"`mlsd models` lists them")
    return art


def promote(catalog: Catalog, model_id: str, alias: str = CHAMPION, *,
            reason: str | None = None) -> dict[str, Any]:
    """Point ``alias`` at the model ``model_id`` (an id, a unique prefix or
    another alias); returns what changed."""
    check_alias(alias)
    target = catalog.alias(model_id) or model_id
    art = _model(catalog, target)
    clash = [a["artifact_id"] for a in catalog.artifacts("model")
             if a["artifact_id"].startswith(alias)]
    if clash:
        raise ModelError(f"alias {alias!r} is also the start of model id "
                         f"{clash[0]}: choose another name")
    before = catalog.push_alias(alias, art["artifact_id"], reason=reason)
    return {"alias": alias, "model_id": art["artifact_id"], "previous": before,
            "changed": before != art["artifact_id"]}


def rollback(catalog: Catalog, alias: str = CHAMPION, *,
             reason: str | None = None) -> dict[str, Any]:
    """Undo the last promotion of ``alias`` still in force."""
    check_alias(alias)
    if alias not in catalog.aliases():
        raise ModelError(f"no alias {alias!r}: `mlsd models aliases` lists them")
    moved = catalog.pop_alias(alias, reason=reason)
    if moved is None:
        raise ModelError(f"alias {alias!r} has had one model only "
                         f"({catalog.alias(alias)}): there is no earlier one to "
                         f"roll back to; promote another model instead")
    return {"alias": alias, "from": moved[0], "model_id": moved[1]}


def aliases(catalog: Catalog) -> list[dict[str, Any]]:
    """Every alias in force, with its model's primary test metric and the
    history of its promotions and rollbacks."""
    models = {a["artifact_id"]: a for a in catalog.artifacts("model")}
    out = []
    for name, entry in sorted(catalog.aliases().items()):
        md = models.get(entry["artifact_id"], {}).get("metadata", {})
        metrics = md.get("metrics") or {}
        primary = metrics.get("primary")
        out.append({
            "alias": name, "model_id": entry["artifact_id"], "since": entry["at"],
            "reason": entry["reason"], "metric": primary,
            "test": (metrics.get("model") or {}).get("test", {}).get(primary),
            "history": [{k: e[k] for k in ("action", "artifact_id", "at", "reason",
                                           "undone")}
                        for e in catalog.alias_history(name)]})
    return out


# comparing two models on the same rows ------------------------------------------

def _labels(artifact: ModelArtifact, values: list) -> tuple[np.ndarray, np.ndarray]:
    """The labels of ``values`` as the model encodes them, and which rows have
    one (a class the model does not know counts as no label)."""
    import numpy as np

    if artifact.task == "regression":
        y = np.array([np.nan if v is None else float(v) for v in values])
        return y, np.isfinite(y)
    index = {str(c): i for i, c in enumerate(artifact.manifest["classes"])}
    if artifact.task == "multilabel":
        from ._train import target_array

        return target_array("multilabel", values, index,
                            separator=artifact.manifest.get("separator", "|"))
    codes = np.array([index.get(str(v), -1) if v is not None else -1
                      for v in values])
    return codes, codes >= 0


def with_derived(artifact: ModelArtifact, table: pa.Table) -> pa.Table:
    """Rows as the lake stores them, with the derived columns ``artifact``
    reads and they lack, computed as the model's spec derives them."""
    from ._artifact import derive_columns

    derive = artifact.input_schema.get("derive") or {}
    missing = {n: e for n, e in derive.items() if n not in table.column_names}
    return derive_columns(table, missing) if missing else table


def _scored(artifact: ModelArtifact, table: pa.Table) -> np.ndarray:
    """The model's raw output on rows as the lake stores them."""
    table = with_derived(artifact, table)
    absent = [c for c in artifact.pipeline.columns if c not in table.column_names]
    if absent:
        raise DataError(f"the rows lack {', '.join(absent[:8])}, which model "
                        f"{artifact.model_id} reads: compare on rows that carry "
                        f"them (--on FILE)")
    return artifact.learner.predict(artifact.pipeline.apply(table))


def _row_hashes(table: pa.Table, columns: list[str]) -> np.ndarray:
    """One 64-bit hash per row over ``columns`` (rows equal on them hash
    alike): how a row is recognised in another dataset version."""

    from ..engine._sandbox import locked_connection

    cols = [c for c in columns if c in table.column_names]
    con = locked_connection({"t": table.select(cols)}, threads=1)
    try:
        quoted = ", ".join('"{}"'.format(c.replace('"', '""')) for c in cols)
        got = con.sql(f"SELECT hash({quoted}) AS h FROM t").to_arrow_table()
    finally:
        con.close()
    return got.column("h").to_numpy()


def model_parts(lake: Lake, manifest: dict[str, Any],
                columns: list[str] | None = None) -> dict[str, pa.Table]:
    """A model's train, valid and test rows, read from the dataset versions
    its lineage names (``columns`` of them, default all)."""
    import numpy as np
    import pyarrow as pa

    from ..trainingdata import ROW, SPLIT

    lin = manifest["lineage"]
    tr, sp = lin.get("training"), lin["split"]
    if not tr:
        raise ModelError(f"model {manifest['model_id']} does not record its training "
                         f"table: compare it on a file (--on FILE)")
    try:
        area, name = tr["dataset"].split("/", 1)
        if columns is not None:
            have = set(lake.dataset(area, name, tr["version"]).schema.names)
            columns = [c for c in dict.fromkeys([ROW, *columns]) if c in have]
        rows = lake.read(area, name, tr["version"], columns=columns)
        assigned = lake.read(*sp["dataset"].split("/", 1), sp["version"])
    except Exception as err:  # noqa: BLE001 - vacuumed or erased: said plainly
        raise ModelError(f"model {manifest['model_id']}'s data "
                         f"({tr['dataset']}@{tr['version']}) cannot be read any more "
                         f"({err}); compare on a file (--on FILE)") from None
    numbers = assigned.column(ROW).to_numpy()
    size = int(max(numbers.max(initial=-1), rows.column(ROW).to_numpy().max(
        initial=-1))) + 1
    split_of = np.full(size, "", dtype=object)  # by _row number
    split_of[numbers] = np.asarray(assigned.column(SPLIT).to_pylist(), dtype=object)
    labels = split_of[rows.column(ROW).to_numpy()]
    return {p: rows.filter(pa.array(labels == p)) for p in ("train", "valid", "test")}


def compare(*, a: ModelArtifact, b: ModelArtifact, rows: pa.Table,
            seen_by_a: pa.Table | None = None, seed: int = 0,
            replicates: int = 1000, level: float = 0.95,
            on: str = "test", time_column: str | None = None) -> dict[str, Any]:
    """Models ``a`` and ``b`` scored on the same ``rows`` (labelled raw rows):
    every metric of each, its bootstrap interval, and the paired interval of
    ``b``'s margin over ``a`` on the primary metric (drawn on the same rows, so
    it is an interval of the difference).

    ``seen_by_a``: rows ``a`` was fitted or tuned on; any of ``rows`` equal to
    one of them is left out (it would favour ``a``), and the count is said.
    ``time_column``: rows ordered by it are drawn in moving blocks, as the
    run's own intervals are under a time split.
    """
    import numpy as np

    from ._bootstrap import HIGHER, bootstrap_metrics, time_numbers
    from ._metrics import PRIMARY, task_metrics

    ma, mb = a.manifest, b.manifest
    if (ma["task"], ma["target"]) != (mb["task"], mb["target"]):
        raise ModelError(f"model {a.model_id} predicts {ma['target']!r} "
                         f"({ma['task']}) and {b.model_id} predicts {mb['target']!r} "
                         f"({mb['task']}): they cannot be compared")
    if ma["task"] != "regression" and [str(c) for c in ma["classes"]] != [
            str(c) for c in mb["classes"]]:
        raise ModelError(f"models {a.model_id} and {b.model_id} know different "
                         f"classes ({ma['classes']} and {mb['classes']}): their "
                         f"scores cannot be compared")
    target = ma["target"]
    if target not in rows.column_names:
        raise DataError(f"the rows to compare on have no {target!r} column (the "
                        f"label both models predict)")
    excluded = 0
    if seen_by_a is not None and seen_by_a.num_rows and rows.num_rows:
        cols = sorted({*a.input_schema["columns"], target}
                      & set(rows.column_names) & set(seen_by_a.column_names))
        seen = set(_row_hashes(seen_by_a, cols).tolist())
        fresh = np.array([h not in seen for h in _row_hashes(rows, cols).tolist()])
        excluded = int((~fresh).sum())
        if excluded:
            import pyarrow as pa

            rows = rows.filter(pa.array(fresh))
    y, keep = _labels(a, rows.column(target).to_pylist())
    unlabelled = int((~keep).sum())
    if unlabelled:
        import pyarrow as pa

        rows, y = rows.filter(pa.array(keep)), y[keep]
    if rows.num_rows < 2:
        raise DataError(f"{rows.num_rows} labelled row(s) left to compare on "
                        f"({excluded} seen by {a.model_id} in training left out): "
                        f"too few; compare on a labelled file (--on FILE)")
    task = ma["task"]
    primary, higher = PRIMARY[task]
    out_a, out_b = _scored(a, rows), _scored(b, rows)
    thr = {"a": ma.get("threshold"), "model": mb.get("threshold")}
    metrics = {"a": task_metrics(task, y, out_a, thr["a"]),
               "b": task_metrics(task, y, out_b, thr["model"])}
    names = [m for m in metrics["b"] if m in HIGHER]
    times = None
    if time_column and time_column in rows.column_names:
        times = time_numbers(rows.column(time_column))
    boot = bootstrap_metrics(task, y, {"model": out_b, "a": out_a}, thr,
                             primary=primary, names=names, seed=seed,
                             replicates=replicates, level=level, time_order=times)
    margin = boot["margins"].get("a") or {}
    iv = margin.get("interval")
    if iv is None:
        verdict = "undecided: too few rows for an interval"
    elif iv[0] > 0:
        verdict = f"{b.model_id} is better"
    elif iv[1] < 0:
        verdict = f"{a.model_id} is better"
    else:
        verdict = "no difference the rows can show"
    delta = None
    if metrics["a"].get(primary) is not None and metrics["b"].get(primary) is not None:
        d = metrics["b"][primary] - metrics["a"][primary]
        delta = round(d if higher else -d, 6)
    return {
        "a": a.model_id, "b": b.model_id, "task": task, "target": target,
        "on": on, "rows": rows.num_rows, "excluded_seen_by_a": excluded,
        "unlabelled": unlabelled, "primary": primary,
        "higher_is_better": higher,
        "metrics": {m: {"a": metrics["a"].get(m), "b": metrics["b"].get(m),
                        "a_interval": boot["intervals"]["a"].get(m),
                        "b_interval": boot["intervals"]["model"].get(m)}
                    for m in names},
        "margin": {"metric": primary, "b_over_a": delta, "interval": iv,
                   "level": level, "method": boot["method"]},
        "verdict": verdict}


def read_labelled(path: Path, artifact: ModelArtifact
                  ) -> tuple[pa.Table, list[dict[str, Any]]]:
    """Raw labelled rows from a file (CSV, JSONL, Parquet, ...) typed by the
    model's input schema (the label as text; regression: a number), and the
    rows that do not fit it, each with its line and reasons."""
    import pyarrow as pa

    from ..connectors import FileConnector
    from ..etl import DataSchema, Validator
    from ..spec import ValidateSpec

    target = artifact.manifest["target"]
    classes = artifact.manifest.get("classes") or []
    if artifact.task == "regression":
        kind = "float64"
    elif classes and all(isinstance(c, bool) for c in classes):
        kind = "bool"  # parsed as the load parsed it: "false", "0", "no"
    elif classes and all(isinstance(c, int) for c in classes):
        kind = "int64"
    else:
        kind = "string"
    schema = DataSchema({**artifact.input_schema["columns"], target: kind})
    connector = FileConnector(path=str(Path(path).resolve()), root=Path.cwd())
    if target not in set(connector.columns()):
        raise DataError(f"{path}: no {target!r} column (the label both models "
                        f"predict)")
    validator = Validator(schema=schema, rules=ValidateSpec())
    batches, rejected = [], []
    for info, raw in connector.read(list(schema.columns), strict=False):
        res = validator.validate(raw, source=info.path, sha256=info.sha256,
                                 load_id="compare")
        batches.append(res.accepted)
        rejected += [{"line": r["_line"], "reasons": [x["message"] for x in
                                                      r["reasons"]]}
                     for r in res.rejected.to_pylist()]
    if not batches:
        raise DataError(f"{path}: no row")
    return pa.Table.from_batches(batches), rejected


def time_column(spec) -> str | None:
    """The column a time split orders rows by (None: not a time split)."""
    split = spec.split
    return split.time if split.strategy in ("time", "time+group") else None


# the run's stage ------------------------------------------------------------------

def _settings(ctx: RunContext) -> dict[str, Any]:
    return {"registry": ctx.spec.registry, "evaluation": ctx.spec.evaluation,
            "seed": ctx.spec.seed}


@stage(name="register", writes={"registry": "memory"}, settings=_settings)
def register(ctx: RunContext, training: DatasetRef, splits: DatasetRef,
             model: ArtifactRef, audit: dict[str, Any]) -> StageResult:
    """Compare the run's new model with the model ``registry.compare_with``
    points at, on the new model's test rows less any the other saw; give the
    new model ``registry.alias``; with ``promote_if_better``, point the
    compared alias at it when it is better beyond doubt and the audit found
    nothing of high severity."""
    import pyarrow as pa

    from ..trainingdata import TEST, TRAIN, VALID, split_parts
    from ._artifact import ModelArtifact
    from ._stage import load_model

    reg = ctx.spec.registry
    catalog = ctx.project.catalog
    new = load_model(ctx, model)
    out: dict[str, Any] = {"compared": None, "alias": None, "promotion": None}
    notes = []
    other_id = catalog.alias(reg.compare_with) if reg.compare_with else None
    if other_id is not None and other_id != new.model_id:
        other = ModelArtifact.load(ctx.root / catalog.artifact(other_id)["path"])
        # what either model reads, the label and the time: no other column
        cols = list(dict.fromkeys([
            *other.input_schema["columns"], *new.input_schema["columns"],
            new.manifest["target"], *([t] if (t := time_column(ctx.spec)) else [])]))
        _, _, parts = split_parts(ctx, training, splits, cols)
        lin = other.manifest["lineage"]
        same = (lin.get("training") == {"dataset": training.dataset,
                                        "version": training.version}
                and (lin["split"]["dataset"], lin["split"]["version"])
                == (splits.dataset, splits.version))
        theirs = parts if same else model_parts(ctx.lake, other.manifest, cols)
        seen = pa.concat_tables([theirs[TRAIN], theirs[VALID]],
                                promote_options="permissive")
        ev = ctx.spec.evaluation
        res = compare(a=other, b=new, rows=parts[TEST], seen_by_a=seen,
                      seed=ctx.spec.seed, replicates=max(ev.replicates, 200),
                      level=ev.level, on=f"test rows of {new.model_id}",
                      time_column=time_column(ctx.spec))
        out["compared"] = {"alias": reg.compare_with, **res}
        notes.append(f"vs {reg.compare_with} {other_id}: {res['verdict']}")
    if reg.alias:
        out["alias"] = promote(catalog, new.model_id, reg.alias,
                               reason=f"run {ctx.run_id}")
        notes.append(f"alias {reg.alias}")
    if reg.promote_if_better and reg.compare_with:
        high = [f for f in audit.get("findings", []) if f.severity == "high"]
        iv = ((out["compared"] or {}).get("margin") or {}).get("interval")
        if high:
            why = (f"not promoted to {reg.compare_with}: the audit found "
                   f"{len(high)} high-severity finding(s)")
        elif other_id == new.model_id:
            why = f"already {reg.compare_with}"
        elif other_id is not None and (iv is None or iv[0] <= 0):
            why = (f"not promoted to {reg.compare_with}: the margin's interval "
                   f"{iv} does not lie above zero")
        else:
            done = promote(catalog, new.model_id, reg.compare_with,
                           reason=f"run {ctx.run_id}: "
                           + ("no model held the alias" if other_id is None
                              else f"margin interval {iv} above zero"))
            why = f"promoted to {reg.compare_with}"
            out["promotion"] = done
        notes.append(why)
        out["promotion_note"] = why
    return StageResult(outputs={"registry": out}, summary={"registry": out},
                       note="; ".join(notes) or "nothing to compare with")
