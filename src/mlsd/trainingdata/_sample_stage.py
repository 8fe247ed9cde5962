"""The sample stage: draw the rows to train on, as ``samples/NAME``."""

from __future__ import annotations

from typing import Any

from ..errors import SpecError
from ..runtime import DatasetRef, RunContext, StageResult, digest, stage
from ._split import TRAIN
from ._stages import ROW, _split_settings, assigned_splits, training_table, union_schema


def _settings(ctx: RunContext) -> dict[str, Any]:
    # a sample is drawn from the train side of the split: it depends on it
    if ctx.spec.sample is None:
        return {"sample": None}
    return {"sample": ctx.spec.sample, **_split_settings(ctx)}


def _check(ctx: RunContext) -> list[tuple[str, str]]:
    s = ctx.spec.sample
    if s is None:
        return []
    cols = union_schema(ctx).columns
    problems = []
    for part in ("by", "link"):
        col = getattr(s, part)
        if col and col not in cols:
            problems.append((f"sample.{part}", f"column {col!r} is not in the data"))
    if (s.keys is not None or s.method == "snowball") and not ctx.spec.key:
        problems.append(("sample.keys" if s.keys is not None else "sample.method",
                         "rows are chosen by key: declare `dataset.key` (or the "
                         "sources' `key`)"))
    if s.edges is not None:
        from ..errors import LakeError
        from ..etl._export import parse_dataset

        try:
            area, name = parse_dataset(s.edges.dataset)
        except LakeError as err:
            problems.append(("sample.edges.dataset", str(err)))
        else:
            if area == "sources" and name in ctx.spec.sources:
                pass  # loaded by this run's ingest
            elif not ctx.lake.exists(area, name):
                problems.append(("sample.edges.dataset", f"{s.edges.dataset!r} is "
                                 f"not in the lake"))
    return problems


def _edges(ctx: RunContext) -> tuple[Any, dict[str, Any] | None]:
    s = ctx.spec.sample
    if s.edges is None:
        return None, None
    from ..etl._export import parse_dataset

    area, name = parse_dataset(s.edges.dataset)
    version = ctx.lake.version(area, name)
    if version is None:
        raise SpecError(f"sample.edges.dataset: {s.edges.dataset!r} has no stored "
                        f"version")
    return ctx.lake.dataset(area, name, version), {"dataset": f"{area}/{name}",
                                                   "version": version}


@stage(writes={"sample": "dataset"}, relations={"training": "sampled_from"},
       settings=_settings, check=_check)
def sample(ctx: RunContext, training: DatasetRef) -> StageResult:
    """Draw the rows to train on from the train side of the split, by the
    spec's ``sample`` method, as ``samples/NAME`` with each row's weight and a
    bias report (nothing without a ``sample:`` section). Valid and test rows
    are never sampled."""
    import numpy as np
    import pyarrow as pa

    from ._sampling import draw
    from ._sampling_spark import draw_on_spark

    spec = ctx.spec
    if spec.sample is None:
        return StageResult(outputs={"sample": []})
    _, assigned = assigned_splits(ctx, training)
    edges, edges_ref = _edges(ctx)
    if ctx.spark is not None:
        # Spark jobs over the training table's files: only the drawn rows
        # (and for some methods one number a row) come to the driver
        train_rows = np.flatnonzero(assigned.labels == TRAIN)
        drawn = draw_on_spark(
            _train_frame(ctx, training, train_rows), spec.sample, seed=spec.seed,
            key=spec.key, target=spec.problem.target, order=[ROW],
            schema=ctx.lake.files("training", training.name, training.version)[0],
            report_columns=_report_columns(ctx),
            edges=None if edges is None else edges.to_table())
        drawn_on = f"spark {ctx.spark.describe()}"
    else:
        population = training_table(ctx, training).filter(
            pa.array(assigned.labels == TRAIN))
        train_rows = population.column(ROW).to_numpy()
        drawn = draw(population, spec.sample, seed=spec.seed, key=spec.key,
                     target=spec.problem.target, order=[ROW], edges=edges,
                     report_columns=_report_columns(ctx))
        drawn_on = "duckdb"
    write_id = digest({"inputs": [training.node], "settings": drawn.settings,
                       "seed": drawn.seed, "edges": edges_ref,
                       "train_rows": digest([int(r) for r in train_rows])})
    version, _ = ctx.lake.write("samples", spec.name, drawn.rows, write_id=write_id)
    info = drawn.summary()
    lineage = {k: info[k] for k in ("method", "settings", "seed", "population",
                                     "rows", "effective_size")}
    ref = DatasetRef(area="samples", name=spec.name, version=version,
                     rows=drawn.rows.num_rows, write_id=write_id,
                     meta={**lineage, "edges": edges_ref})
    ctx.keep(ref, drawn.rows)
    note = (f"{spec.sample.method}: {drawn.rows.num_rows} of the "
            f"{drawn.population} train rows -> {ref.dataset}@{version}")
    if info["warnings"]:
        note += f"; {len(info['warnings'])} bias warning(s)"
    return StageResult(
        outputs={"sample": [ref]}, note=note,
        summary={"sample": {**info, "drawn_on": drawn_on, "dataset": ref.dataset,
                            "version": version,
                            "input": {"dataset": training.dataset,
                                      "version": training.version,
                                      "split": "train"},
                            "edges": edges_ref}})


def _train_frame(ctx: RunContext, training: DatasetRef, train_rows):
    """The train side of the split as a Spark DataFrame: the training table's
    files joined with the train rows' numbers (the split is not stored yet:
    the sample comes before it)."""
    import pyarrow as pa
    from pyspark.sql import functions as F

    spark = ctx.spark
    rows = spark.frame(ctx.lake, "training", training.name, training.version)
    train = spark.session.createDataFrame(pa.table({ROW: pa.array(
        train_rows, pa.int64())}), schema=f"{ROW} long")
    return rows.join(F.broadcast(train) if len(train_rows) < 1_000_000 else train,
                     ROW, "left_semi").select(*rows.columns)


def _report_columns(ctx: RunContext) -> list[str]:
    """The columns the bias report compares: the target, the strata, then
    the features' inputs (at most 40)."""
    spec = ctx.spec
    cols = [spec.problem.target, *([spec.sample.by] if spec.sample.by else []),
            *(c for f in spec.features for c in f.inputs)]
    return list(dict.fromkeys(cols))[:40]
