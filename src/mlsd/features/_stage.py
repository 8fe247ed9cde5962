"""The features stage: analyse the spec's features on the train split only."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..runtime import DatasetRef, RunContext, StageResult, stage
from ..trainingdata import (
    TRAIN,
    driver_sample,
    schema_files,
    split_parts,
    union_schema,
)

if TYPE_CHECKING:  # the stage's declaration loads without ibis and SciPy
    import pyarrow as pa
    import scipy.sparse as sp

    from ._pipeline import FeaturePipeline

NUMERIC_TYPES = ("int64", "float64", "bool")
NEEDS_NUMBERS = ("numeric", "bins", "fourier")


def feature_matrices(ctx: RunContext, pipeline: FeaturePipeline,
                     training: DatasetRef, splits: DatasetRef
                     ) -> dict[str, sp.csr_matrix]:
    """The input matrix of every split (train, valid, test), made by the
    pipeline's one ``apply`` (the train rows with their out-of-fold target
    encodings); computed once per run for the same state and dataset versions."""
    def make() -> dict[str, sp.csr_matrix]:
        parts = _parts_here(ctx, training, splits)
        fitted = pipeline
        if pipeline.supervised and not pipeline.has_training_state:
            fitted = _refit(ctx, pipeline, *_train_rows(ctx, training, splits, parts))
        if ctx.spark is not None:
            return _apply_on_spark(ctx, fitted, training, splits, parts)
        return {p: fitted.apply(t, training=p == TRAIN) for p, t in parts.items()}
    return ctx.memo(("features.matrices", pipeline.digest(), training.node,
                     splits.node), make)


def _apply_on_spark(ctx: RunContext, pipeline: FeaturePipeline,
                    training: DatasetRef, splits: DatasetRef,
                    parts: dict[str, pa.Table]) -> dict[str, sp.csr_matrix]:
    """Every split's matrix made by Spark tasks: the training table's files
    joined with the split by Spark, each task applying the fitted pipeline
    (shipped to it, out-of-fold statistics included: a training row's fold
    comes from its ``_row``) to its Arrow batches, split by split; the sparse
    rows come back as Arrow lists in files the tasks write (not through the
    JVM driver) and are put in ``_row`` order, the order of the local
    matrices. ``parts``: each split's row numbers. When the driver has not
    the memory for the train split's matrix, it reads that of a seeded random
    sample of the train rows that fits (:func:`_driver_share`), which the
    rest of the run then fits on (``keep_driver_sample``)."""
    import uuid

    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import scipy.sparse as sp

    from ..errors import DataError
    from ..trainingdata import ROW, SPLIT, keep_driver_sample

    spark = ctx.spark
    sizes = {p: t.num_rows for p, t in parts.items()}
    frame = _rows_with_split(ctx, training, splits,
                             list(dict.fromkeys([*pipeline.columns, ROW])))
    out = pa.schema([(ROW, pa.int64()), (SPLIT, pa.string()),
                     ("j", pa.large_list(pa.int32())),
                     ("x", pa.large_list(pa.float64()))])
    names = list(sizes)

    def apply(t: pa.Table) -> pa.Table:
        done = []
        for name in names:
            part = t.filter(pc.equal(t[SPLIT], name))
            if not part.num_rows:
                continue
            X = pipeline.apply(part, training=name == TRAIN).tocsr()
            X.sort_indices()
            indptr = pa.array(X.indptr.astype(np.int64))
            j = pa.array(X.indices.astype(np.int32))
            done.append(pa.table([
                part[ROW].combine_chunks(), part[SPLIT].combine_chunks(),
                pa.LargeListArray.from_arrays(indptr, j),
                pa.LargeListArray.from_arrays(indptr, pa.array(X.data))], schema=out))
        return pa.concat_tables(done) if done else None
    drawn: dict[str, Any] = {}

    def before_read(nbytes: int):
        share = _driver_share(ctx, nbytes, sizes)
        if share is None:
            return None
        fraction, room = share
        train = parts[TRAIN].column(ROW).to_numpy()
        n = max(1, int(fraction * len(train)))
        rows = np.sort(np.random.default_rng(ctx.spec.seed).choice(
            train, size=n, replace=False))
        drawn.update(rows=rows, nbytes=nbytes, room=room)
        kept = pa.array(rows, pa.int64())
        return lambda t: t.filter(pc.or_(pc.not_equal(t[SPLIT], TRAIN),
                                         pc.is_in(t[ROW], value_set=kept)))
    # through files in the lake's scratch folder, not a collect: the matrices
    # of millions of rows outgrow the JVM driver's heap
    got = spark.gather(frame, apply, out,
                       ctx.lake.scratch(f"features-{uuid.uuid4().hex[:12]}"),
                       before_read=before_read)
    if drawn:
        from .._memory import readable

        total = sum(sizes.values())
        sizes = {**sizes, TRAIN: len(drawn["rows"])}
        keep_driver_sample(ctx, training, splits, drawn["rows"], {
            "method": "random", "seed": ctx.spec.seed, "rows_kept": sizes[TRAIN],
            "of": len(parts[TRAIN]),
            "why": f"the feature matrices of all {total:,} rows take "
                   f"{readable(drawn['nbytes'])} in Spark's files, about "
                   f"{readable(READ_FACTOR * drawn['nbytes'])} once read; the "
                   f"driver has {readable(drawn['room'])} free"})
    width = len(pipeline.names())
    matrices = {}
    for name in names:
        part = got.filter(pc.equal(got[SPLIT], name))
        part = part.take(pc.sort_indices(part, [(ROW, "ascending")]))
        if part.num_rows != sizes[name]:
            raise DataError(f"features: Spark gave {part.num_rows} rows of the "
                            f"{name} split, which has {sizes[name]}")
        j = part["j"].combine_chunks()
        x = part["x"].combine_chunks()
        indptr = np.asarray(j.offsets) - j.offsets[0].as_py()
        matrices[name] = sp.csr_matrix(
            (np.asarray(x.flatten(), np.float64), np.asarray(j.flatten(), np.int32),
             indptr), shape=(part.num_rows, width))
    return matrices


READ_FACTOR = 2.0  # the tasks' files read, then the matrices made of them


def _driver_share(ctx: RunContext, nbytes: int, sizes: dict[str, int]
                  ) -> tuple[float, int] | None:
    """Whether the driver has the memory for the feature matrices Spark made
    (``nbytes`` in their files): None when it has; else the share of the train
    split whose matrix fits beside the whole valid and test splits' (the
    driver fits on such a sample, ``engine.sample_to_fit``) and the free
    memory it was weighed against. Refused with the sizes, before any is read
    (the kernel would kill the driver without a word), when valid and test
    alone do not fit, when the share would be under a thousandth, or when
    sampling to fit is switched off."""
    from .._memory import available_bytes, readable
    from ..errors import DataError

    room = available_bytes()
    need = READ_FACTOR * nbytes
    if room is None or need <= room:
        return None
    share = sizes.get(TRAIN, 0) / max(1, sum(sizes.values()))
    # the train split's part shrinks with a sample; valid and test stay whole
    fraction = (0.8 * room - need * (1 - share)) / max(need * share, 1.0)
    auto = ctx.spec.engine.sample_to_fit
    if auto and 0.001 <= fraction < 1 and int(fraction * sizes.get(TRAIN, 0)) >= 1:
        return fraction, room
    now = ctx.spec.sample
    if now is not None and now.fraction is not None:
        fraction *= now.fraction
    itself = "" if auto else "; `engine.sample_to_fit: true` draws a random one itself"
    advice = (f"draw a sample of the train split to fit on, e.g. `sample: {{method: "
              f"random, fraction: {float(f'{fraction:.2g}')}}}` in mlsd.yaml (or a "
              f"stratified one{itself}), or run the driver where it has more memory"
              if fraction >= 0.001 else
              "the valid and test splits alone are more than it can hold: run the "
              "driver where it has more memory")
    rows = sum(sizes.values())
    raise DataError(f"features: the matrices Spark made for the {rows:,} rows take "
                    f"{readable(nbytes)} in their files, about {readable(need)} "
                    f"once read on the driver, which has {readable(room)} free: "
                    f"{advice}")


def _target(ctx: RunContext):
    from ._base import Target

    p = ctx.spec.problem
    return Target(column=p.target, task=p.task, positive=p.positive)


def _refit(ctx: RunContext, pipeline: FeaturePipeline, engine, train
           ) -> FeaturePipeline:
    """A pipeline read from a model (no out-of-fold statistics, which are not
    saved) analysed again on the same training rows (``train`` on ``engine``:
    :func:`_train_rows`), for their out-of-fold values; the analysis is
    deterministic, so its state must be the saved one."""
    from ..errors import DataError
    from ._pipeline import FeaturePipeline

    fresh = FeaturePipeline.from_json(pipeline.to_json())
    fresh.analyze(engine, train, target=_target(ctx))
    if fresh.digest() != pipeline.digest():
        raise DataError("features: analysing the training rows again gave another "
                        "state than the model's; run `mlsd run --from features`")
    return fresh


def _check(ctx: RunContext) -> list[tuple[str, str]]:
    cols = union_schema(ctx).columns
    problems = []
    for i, f in enumerate(ctx.spec.features):
        where = "columns" if f.columns is not None else "column"
        absent = [c for c in f.inputs if c not in cols]
        if absent:
            problems.append((f"features[{i}].{where}",
                             f"{absent[0]!r} is not in the data"))
            continue
        types = {c: cols[c] for c in f.inputs}
        if f.kind == "time" and cols[f.column] != "timestamp":
            problems.append((f"features[{i}].encode", f"time parts need a "
                             f"timestamp, {f.column!r} is {cols[f.column]} in "
                             f"{schema_files(ctx)}"))
        elif f.kind == "embedding" and (why := _vectors_problem(ctx.root, f)):
            problems.append((f"features[{i}].vectors", why))
        elif f.kind == "periodic" and cols[f.column] not in (*NUMERIC_TYPES,
                                                              "timestamp"):
            problems.append((f"features[{i}].encode", f"periodic needs a number "
                             f"or a timestamp; {f.column!r} is {cols[f.column]}"))
        elif f.kind in NEEDS_NUMBERS and (bad := [c for c, t in types.items()
                                                  if t not in NUMERIC_TYPES]):
            hint = (" (a feature without `encode` must be numeric; use onehot, "
                    "hashing or target for categories)" if f.kind == "numeric"
                    else "")
            problems.append((f"features[{i}]", f"{bad[0]!r} is {types[bad[0]]} in "
                             f"{schema_files(ctx)}; {f.kind} needs numbers{hint}"))
    return problems


def _settings(ctx: RunContext) -> dict[str, Any]:
    s = ctx.spec
    out: dict[str, Any] = {"features": s.features, "policy": s.feature_policy}
    if any(f.kind == "target" for f in s.features):  # it learns from the label
        out["target"] = (s.problem.target, s.problem.task, s.problem.positive)
    vectors = [f.vectors for f in s.features if f.kind == "embedding"]
    if vectors:  # a changed vectors file or encoder folder is a new analysis
        from ._encoders import folder_hash
        from ._text import file_sha256

        out["vectors"] = {v: file_sha256(str(ctx.root / v))
                          if (ctx.root / v).is_file() else folder_hash(ctx.root / v)
                          if (ctx.root / v).is_dir() else None for v in vectors}
    return out


def _vectors_problem(root, f) -> str | None:
    """What is wrong with an embedding's ``vectors`` (None: nothing)."""
    path = root / f.vectors
    if path.is_file():
        return None
    if path.is_dir():
        from ..errors import MlsdError
        from ._encoders import encoder_format

        try:
            encoder_format(path)
        except MlsdError as err:
            return str(err)
        return None
    return (f"no file or folder {f.vectors!r} in the project (`mlsd features "
            f"pretrain --column {f.column} -o {f.vectors}` makes word vectors from "
            f"its own text)")


def missing_shares(engine, table, columns: list[str]) -> dict[str, float]:
    """The share of rows lacking each column (one engine aggregate)."""
    n = engine.aggregate(table, n=table.count())["n"] or 0
    if not n or not columns:
        return dict.fromkeys(columns, 0.0)
    s = engine.aggregate(table, **{f"m{i}": table[c].isnull().sum()
                                   for i, c in enumerate(columns)})
    return {c: int(s[f"m{i}"] or 0) / n for i, c in enumerate(columns)}


COST_ROWS = 200  # training rows timed through each feature's one-row apply


def feature_table(pipeline: FeaturePipeline, train, shares: dict[str, float]
                  ) -> list[dict[str, Any]]:
    """Per feature: kind, columns, model inputs, training missing share (its
    worst column) and online cost (median microseconds of its one-row apply
    over training rows): what a feature costs next to what it brings."""
    import statistics
    import time

    rows = train.slice(0, COST_ROWS).select(pipeline.columns).to_pylist()
    out = []
    for t, label in zip(pipeline.transforms, pipeline.labels(), strict=True):
        spent = []
        for r in rows:
            start = time.perf_counter()
            t.apply_row(r)
            spent.append(time.perf_counter() - start)
        out.append({"feature": label, "kind": t.kind, "columns": t.inputs,
                    "width": len(t.names()),
                    "missing": round(max(shares.get(c, 0.0) for c in t.inputs), 4),
                    "us_per_row": round(statistics.median(spent) * 1e6, 1)
                    if spent else None,
                    **({"notes": n} if (n := t.notes()) else {})})
    return out


def _train_rows(ctx: RunContext, training: DatasetRef, splits: DatasetRef, parts):
    """The engine the features are analysed on, and the train split's rows as
    its Ibis table, in ``_row`` order. On Spark: the training table's files
    and the split's, joined by Spark (Ibis's PySpark backend then runs the
    analyzers' expressions there); else the rows in memory on DuckDB."""
    if ctx.spark is None:
        return ctx.engine, ctx.engine.from_arrow(parts[TRAIN])
    from pyspark.sql import functions as F

    from ..trainingdata import ROW, SPLIT

    frame = _rows_with_split(ctx, training, splits)
    train = frame.where(F.col(SPLIT) == TRAIN).drop(SPLIT).orderBy(ROW)
    return ctx.spark.ibis, ctx.spark.ibis.from_frame(train)


def _parts_here(ctx: RunContext, training: DatasetRef, splits: DatasetRef
                ) -> dict[str, pa.Table]:
    """The rows of each split as the driver needs them: whole on DuckDB (the
    analysis and the apply run on them), the row numbers alone on Spark (which
    holds the rows; the driver needs only each split's size)."""
    return split_parts(ctx, training, splits,
                       None if ctx.spark is None else [])[2]


def _first_train_rows(ctx: RunContext, training: DatasetRef, splits: DatasetRef,
                      parts: dict[str, pa.Table], columns: list[str]) -> pa.Table:
    """The first :data:`COST_ROWS` train rows (``columns``), which the feature
    table times through each feature's one-row apply: from memory on DuckDB,
    from Spark (those rows alone) on Spark."""
    if ctx.spark is None:
        return parts[TRAIN].slice(0, COST_ROWS).select(columns)
    from pyspark.sql import functions as F

    from ..trainingdata import ROW, SPLIT

    frame = _rows_with_split(ctx, training, splits, [ROW, *columns])
    return (frame.where(F.col(SPLIT) == TRAIN).orderBy(ROW).limit(COST_ROWS)
            .select(*columns).toArrow())


def _split_missing(ctx: RunContext, training: DatasetRef, splits: DatasetRef,
                   parts: dict[str, pa.Table], name: str, columns: list[str]
                   ) -> dict[str, float]:
    """The missing share of ``columns`` in the split ``name``: on the rows in
    memory on DuckDB, by a Spark aggregate on Spark."""
    if ctx.spark is None:
        return missing_shares(ctx.engine, ctx.engine.from_arrow(parts[name]), columns)
    from pyspark.sql import functions as F

    from ..trainingdata import ROW, SPLIT

    frame = _rows_with_split(ctx, training, splits, [ROW, *columns])
    part = frame.where(F.col(SPLIT) == name).drop(SPLIT)
    return missing_shares(ctx.spark.ibis, ctx.spark.ibis.from_frame(part), columns)


def _rows_with_split(ctx: RunContext, training: DatasetRef, splits: DatasetRef,
                     columns: list[str] | None = None):
    """The training table's rows (``columns`` of them) with each one's split
    (``_split``), joined by Spark from both datasets' files."""
    from ..trainingdata import ROW, SPLIT

    spark = ctx.spark
    rows = spark.frame(ctx.lake, training.area, training.name, training.version,
                       columns=columns)
    chosen = spark.frame(ctx.lake, splits.area, splits.name, splits.version,
                         columns=[ROW, SPLIT])
    return rows.join(chosen, ROW)


@stage(writes={"features": "memory"}, settings=_settings, check=_check)
def features(ctx: RunContext, training: DatasetRef, splits: DatasetRef
             ) -> StageResult:
    """Analyse every feature of the spec on the train split only (means,
    vocabularies, hash sizes, target encodings) and apply the fitted pipeline to
    every split."""
    from ._pipeline import FeaturePipeline, transform_for

    spec = ctx.spec
    parts = _parts_here(ctx, training, splits)
    engine, table = _train_rows(ctx, training, splits, parts)
    keep, dropped = list(spec.features), []
    limit = spec.feature_policy.drop_missing_above
    shares = missing_shares(engine, table,
                            list(dict.fromkeys(c for f in keep for c in f.inputs)))
    if limit is not None:
        from ._pipeline import feature_labels

        names = feature_labels([(f.label, f.kind) for f in spec.features])
        for f, name in zip(spec.features, names, strict=True):
            worst = max(f.inputs, key=lambda c: shares[c])
            if shares[worst] > limit:
                keep.remove(f)
                dropped.append({"feature": name, "column": worst,
                                "missing": round(shares[worst], 4),
                                "why": f"{shares[worst]:.1%} of training rows lack "
                                       f"{worst!r} (feature_policy."
                                       f"drop_missing_above: {limit})"})
        if not keep:
            from ..errors import SpecError

            raise SpecError(f"feature_policy.drop_missing_above: {limit} leaves out "
                            f"every feature")
    pipeline = FeaturePipeline(transforms=[transform_for(f, ctx.root) for f in keep])
    pipeline.analyze(engine, table, target=_target(ctx))
    engine.forget(table)
    X = feature_matrices(ctx, pipeline, training, splits)
    drawn = driver_sample(ctx, training, splits)
    table = feature_table(pipeline, _first_train_rows(
        ctx, training, splits, parts, pipeline.columns), shares)
    # the missing share of each column in every split (train decides; valid and
    # test show whether serving will see the same gaps)
    by_split = {TRAIN: shares}
    for name in parts:
        if name != TRAIN:
            by_split[name] = _split_missing(ctx, training, splits, parts, name,
                                            list(shares))
    for row in table:
        row["missing_by_split"] = {name: round(max(v[c] for c in row["columns"]), 4)
                                   for name, v in by_split.items()}
    note = f"{X[TRAIN].shape[1]} inputs from {len(pipeline.columns)} columns"
    if engine is not ctx.engine:
        note += f", analysed and applied on {ctx.spark.name} {ctx.spark.describe()}"
    if dropped:
        note += f"; left out {', '.join(d['feature'] for d in dropped)} (missing)"
    if drawn is not None:
        note += (f"; the driver's memory holds the matrix of {drawn['rows_kept']:,} "
                 f"of the {drawn['of']:,} train rows, which the model is fitted on")
    return StageResult(
        outputs={"features": pipeline}, note=note,
        summary={"features": {
            "inputs": int(X[TRAIN].shape[1]), "dropped": dropped, "table": table,
            "analysed_on": "duckdb" if ctx.spark is None else
            f"{ctx.spark.name} {ctx.spark.describe()}",
            "applied_on": "driver" if ctx.spark is None else
            f"{ctx.spark.name} {ctx.spark.describe()}",
            "notes": pipeline.notes(),
            "driver_sample": drawn,
            "missing_share": {c: round(v, 4) for c, v in shares.items()},
            "missing_by_split": {name: {c: round(x, 4) for c, x in v.items()}
                                 for name, v in by_split.items()}}})
