"""The training-data stages: the training table, then its split, as lake datasets.

``table`` gathers the labelled rows of the sources in ``dataset.union`` into
``training/NAME`` (one row order, numbered by ``_row``); ``split`` writes
``splits/NAME``: each row's id, ``_row`` and split. Later stages read both by
version (:func:`split_parts`), so a run can start again from either.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import DataError, SchemaError
from ..runtime import DatasetRef, RunContext, StageResult, digest, stage
from ._split import SPLIT, TEST, TRAIN, VALID

if TYPE_CHECKING:  # numpy and pyarrow load when a stage runs, not to check
    import numpy as np
    import pyarrow as pa

    from ..etl import DataSchema
    from ._split import SplitResult

ROW = "_row"
WEIGHT = "_weight"
TABLE_LAYOUT = "1"  # bump when the training table's layout changes


def union_schema(ctx: RunContext) -> DataSchema:
    """The schema shared by the sources of the training table, with the
    columns ``transform.derive`` adds (computed once per run)."""
    return ctx.memo("trainingdata.union_schema", lambda: _union_schema(ctx))


def _union_schema(ctx: RunContext) -> DataSchema:
    # the ETL's readers and DuckDB load only when a schema must be inferred or
    # a column derived: `mlsd spec check` on frozen schemas stays quick
    from ..etl import DataSchema, load_schema

    spec = ctx.spec
    cols: dict[str, str] = {}
    for name in spec.union:
        schema = load_schema(ctx.root, name)
        if schema is None:
            # not frozen here: the ingest stage freezes what it infers, and says so
            from ..etl import resolve_schema

            schema, _ = resolve_schema(name, spec.sources[name], spec.validate_,
                                       ctx.root, freeze=False)
        for c, t in schema.columns.items():
            if cols.setdefault(c, t) != t:
                raise SchemaError(
                    f"column {c!r} is {cols[c]} in one source and {t} in "
                    f"{name!r}; the sources of dataset.union must agree")
    if spec.transform.derive:
        from ..etl import Transformer, logical_type

        base = DataSchema(dict(cols))
        for f in Transformer(spec=spec.transform, schema=base).derived_fields():
            cols[f.name] = logical_type(f.type)
    for w in spec.windows:  # stream features: added by the table stage
        cols[w.name] = "int64" if w.agg == "count" else "float64"
    return DataSchema(cols)


def _check_table(ctx: RunContext) -> list[tuple[str, str]]:
    spec, cols = ctx.spec, union_schema(ctx).columns
    problems = []
    if spec.problem.target not in cols:
        problems.append(("problem.target", f"column {spec.problem.target!r} is not "
                         f"in the data"))
    if spec.key and spec.key not in cols:
        problems.append(("dataset.key", f"column {spec.key!r} is not in the data"))
    for i, f in enumerate(spec.features):
        w = f.stream_window()
        if w is None:
            continue
        ev = cols
        if w.events is not None:
            from ..etl import load_schema

            frozen = load_schema(ctx.root, w.events)
            ev = frozen.columns if frozen is not None else {}
            if frozen is None:
                problems.append((f"features[{i}].events", f"source {w.events!r} has "
                                 f"no schema yet (schemas/{w.events}.yaml): consume "
                                 f"or ingest it first"))
                continue
        for what, col, where in (("by", w.by, cols), ("time", w.time, cols),
                                 ("by", w.by, ev), ("time", w.time, ev),
                                 ("column", w.column, ev)):
            if col is not None and col not in where:
                place = "the data" if where is cols else f"source {w.events!r}"
                problems.append((f"features[{i}].{what}", f"column {col!r} is not "
                                 f"in {place}"))
        for where in (cols, ev):
            if w.time in where and where[w.time] != "timestamp":
                problems.append((f"features[{i}].time", f"{w.time!r} is "
                                 f"{_type_name(where[w.time])}, not a timestamp"))
        if w.column in ev and ev[w.column] not in ("int64", "float64", "bool"):
            problems.append((f"features[{i}].column", f"{w.agg} of {w.column!r} "
                             f"needs numbers; it is {_type_name(ev[w.column])}"))
    problems = list(dict.fromkeys(problems))
    target = spec.problem.target
    if spec.problem.task == "regression" and cols.get(target) not in (
            None, "int64", "float64"):
        problems.append((
            "problem.target", f"a regression target must be numbers, but "
            f"{target!r} is {_type_name(cols[target])} in {schema_files(ctx)}; "
            f"choose task multiclass, or fix the column's type there"))
    return problems


def _type_name(t: Any) -> str:
    return "a struct" if isinstance(t, dict) else t


def schema_files(ctx: RunContext) -> str:
    """Where the union's column types come from, and the command that infers
    them again, for messages about a type that does not fit its use."""
    from ..etl import schema_path

    names = ctx.spec.union
    where = ", ".join(f"schemas/{n}.yaml" for n in names)
    if not any(schema_path(ctx.root, n).is_file() for n in names):
        return f"{where} (inferred from the data)"
    redo = " and ".join(f"`mlsd schema infer {n}`" for n in names)
    return f"{where} ({redo} infers it again from the data)"


def _table_settings(ctx: RunContext) -> dict[str, Any]:
    spec = ctx.spec
    out = {"union": spec.union, "key": spec.key, "target": spec.problem.target,
           "columns": union_schema(ctx).columns}
    if spec.labels.from_store:  # the label store's version is an input too
        from .labeling._policy import policy_digest

        out["labels"] = policy_digest(ctx.lake, spec.name, spec.labels.policy,
                                      spec.labels.exclude)
        out["label_inputs"] = _label_inputs(ctx)
    elif ctx.lake.exists("labels", spec.name):  # its agreement is in the summary
        out["label_store"] = ctx.lake.version("labels", spec.name)
    return out


@stage(writes={"training": "dataset"}, relations={"sources": "union_into"},
       settings=_table_settings, check=_check_table)
def table(ctx: RunContext, sources: list[DatasetRef]) -> StageResult:
    """The training table: the labelled rows of the sources in ``dataset.union``,
    in a stable order (by key, else by file and line), as ``training/NAME``."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    from ..etl import PROVENANCE

    spec = ctx.spec
    schema = union_schema(ctx)
    by_name = {r.name: r for r in sources}
    missing = [n for n in spec.union if n not in by_name]
    if missing:
        from ..spec import BrokerSourceSpec

        brokers = [n for n in missing if isinstance(spec.sources[n], BrokerSourceSpec)]
        raise DataError(f"dataset.union: source(s) {missing} have no stored rows "
                        f"yet" + (f"; run `mlsd consume {brokers[0]}` first (it "
                                  f"stores a broker's messages, which runs read)"
                                  if brokers else " (every row was quarantined?)"))
    used = [by_name[n] for n in spec.union]
    windows = spec.windows
    if ctx.spark is not None and not windows and not spec.labels.from_store:
        return _table_on_spark(ctx, schema, used)
    engine = ctx.engine
    stored = [c for c in schema.columns if c not in {w.name for w in windows}]
    parts = [engine.to_arrow(engine.table("sources", r.name, r.version))
             .select([*stored, *PROVENANCE]) for r in used]
    rows = pa.concat_tables(parts, promote_options="default")
    own = [w for w in windows if w.events is None]
    if own:
        # stream features: each row's entity's earlier events, over every row
        # (labelled or not: all are events), point in time by construction
        from ..features._stream import batch_values

        rows = batch_values(rows, own)
    for source in dict.fromkeys(w.events for w in windows if w.events):
        # events of another source (clicks for orders): a point-in-time join
        from ..features._stream import joined_values

        if source not in by_name:
            raise DataError(f"features: events from source {source!r}, which has "
                            f"no stored rows yet")
        ref = by_name[source]
        mine = [w for w in windows if w.events == source]
        cols = list(dict.fromkeys(c for w in mine for c in (w.by, w.time, w.column)
                                  if c))
        events = engine.to_arrow(engine.table("sources", ref.name, ref.version)
                                 .select(cols))
        rows = joined_values(rows, events, mine)
        used.append(ref)
    prepared = prepare_labels(ctx, rows)
    rows, labels_info = with_target(spec, ctx.lake, rows)
    if labels_info is not None:
        labels_info["prepared"] = prepared
    target = spec.problem.target
    agreement = _store_agreement(ctx)
    labelled = pc.is_valid(rows.column(target))
    unlabelled = rows.num_rows - int(pc.sum(labelled).as_py() or 0)
    rows = rows.filter(labelled)
    if rows.num_rows == 0:
        raise DataError("no labelled row to train on: every row was quarantined or "
                        f"has no {target!r}")
    # a stable row order, whatever the file order: by key, else by source and line
    sort_keys = [(spec.key, "ascending")] if spec.key else [
        ("_source", "ascending"), ("_line", "ascending")]
    rows = rows.sort_by(sort_keys)
    rows = rows.append_column(ROW, pa.array(np.arange(rows.num_rows, dtype=np.int64)))
    inputs = [r.node for r in used]
    write_id = digest({"inputs": inputs, "target": target, "key": spec.key,
                      "columns": schema.columns, "layout": TABLE_LAYOUT,
                      "windows": [w.to_dict() for w in windows],
                      # what the policy gave, not what preparing it wrote
                      **({"labels": {k: v for k, v in labels_info.items()
                                     if k != "prepared"}} if labels_info else {})})
    name = spec.name
    version, _ = ctx.lake.write("training", name, rows, write_id=write_id)
    lineage = [{"dataset": r.dataset, "version": r.version,
                "rows": r.meta.get("rows_stored", r.rows),
                "load_id": r.meta.get("load_id"), "files": r.meta.get("files", [])}
               for r in used]
    ref = DatasetRef(area="training", name=name, version=version,
                     rows=rows.num_rows, write_id=write_id,
                     meta={"unlabelled": unlabelled, "sources": lineage,
                           # what the policy gave, not what preparing it wrote
                      **({"labels": {k: v for k, v in labels_info.items()
                                     if k != "prepared"}} if labels_info else {})})
    ctx.keep(ref, rows)
    return StageResult(
        outputs={"training": ref}, used={"sources": used},
        summary={"training": {"dataset": ref.dataset, "version": version,
                              "rows": rows.num_rows, "unlabelled": unlabelled,
                              "labels": labels_info, "engine": "duckdb"},
                 "label_agreement": agreement},
        note=f"{rows.num_rows} labelled rows -> {ref.dataset}@{version}"
             + (f" ({unlabelled} without a label left out)" if unlabelled else ""))


def _table_on_spark(ctx: RunContext, schema: DataSchema, used: list[DatasetRef]
                    ) -> StageResult:
    """The training table built by Spark (``engine: spark``): the sources'
    stored files read by Spark, unioned, the labelled rows kept, ordered as
    the local table is (by key, else by file and line; ties in union order)
    and numbered, then written by Spark tasks as the table's Parquet files and
    committed as one Delta transaction. Stream features and a label policy
    are built on the driver (the local path)."""
    import pyarrow as pa
    from pyspark.sql import functions as F
    from pyspark.sql.pandas.types import from_arrow_type

    from ..etl import PROVENANCE

    spec = ctx.spec
    engine = ctx.spark
    stored = list(schema.columns)
    # the local table's schema: the sources' own, promoted as concat_tables does
    own = [ctx.lake.files("sources", r.name, r.version)[0] for r in used]
    arrow = pa.unify_schemas([pa.schema([s.field(c) for c in [*stored, *PROVENANCE]
                                         if c in s.names]) for s in own],
                             promote_options="default")
    arrow = pa.schema([arrow.field(c) for c in [*stored, *PROVENANCE]]).append(
        pa.field(ROW, pa.int64()))
    frames = []
    for i, r in enumerate(used):
        f = engine.frame(ctx.lake, "sources", r.name, r.version)
        frames.append(f.select(*[
            F.col(c) if c in f.columns else F.lit(None).cast(
                from_arrow_type(arrow.field(c).type)).alias(c)
            for c in [*stored, *PROVENANCE]], F.lit(i).alias("__union")))
    rows = frames[0]
    for f in frames[1:]:
        rows = rows.unionByName(f)
    target = spec.problem.target
    counts = rows.agg(F.count(F.lit(1)).alias("all"),  # one pass for both
                      F.count(target).alias("labelled")).collect()[0]
    total, n = int(counts["all"]), int(counts["labelled"])
    labelled = rows.filter(F.col(target).isNotNull())
    if n == 0:
        raise DataError("no labelled row to train on: every row was quarantined or "
                        f"has no {target!r}")
    # the local order: a stable sort by key (ties in union order, then in
    # stored order: files by path, lines in order), else by file and line
    # (ties in union order)
    place = [F.asc_nulls_last("_source"), F.asc_nulls_last("_line")]
    order = ([F.asc_nulls_last(spec.key), F.asc("__union"), *place] if spec.key
             else [*place, F.asc("__union")])
    write_id = digest({"inputs": [r.node for r in used], "target": target,
                       "key": spec.key, "columns": schema.columns,
                       "layout": TABLE_LAYOUT, "windows": []})
    name = spec.name
    last = ctx.lake.last_write("training", name) if ctx.lake.exists(
        "training", name) else None
    if last is not None and last.get("mlsd.write_id") == write_id:
        version = ctx.lake.version("training", name)  # the same rows: no work
    else:
        parts = engine.write_parts(labelled.orderBy(*order),
                                   ctx.lake.location("training", name), arrow,
                                   row_column=ROW)
        version, _ = ctx.lake.commit_parts("training", name, parts, schema=arrow,
                                           write_id=write_id)
    unlabelled = total - n
    lineage = [{"dataset": r.dataset, "version": r.version,
                "rows": r.meta.get("rows_stored", r.rows),
                "load_id": r.meta.get("load_id"), "files": r.meta.get("files", [])}
               for r in used]
    ref = DatasetRef(area="training", name=name, version=version, rows=n,
                     write_id=write_id,
                     meta={"unlabelled": unlabelled, "sources": lineage})
    return StageResult(
        outputs={"training": ref}, used={"sources": used},
        summary={"training": {"dataset": ref.dataset, "version": version,
                              "rows": n, "unlabelled": unlabelled, "labels": None,
                              "engine": f"spark {engine.describe()}"},
                 "label_agreement": _store_agreement(ctx)},
        note=f"{n} labelled rows -> {ref.dataset}@{version} (built on Spark)"
             + (f" ({unlabelled} without a label left out)" if unlabelled else ""))


def _label_inputs(ctx: RunContext) -> dict[str, Any]:
    """What the run's label preparation reads: the imported files' contents,
    the labeling functions, the prediction log and feedback versions."""
    import hashlib

    spec, lake = ctx.spec, ctx.lake
    files = {}
    for imp in spec.labels.imports:
        path = ctx.root / imp.path
        files[imp.path] = (hashlib.sha256(path.read_bytes()).hexdigest()
                           if path.is_file() else None)
    return {"imports": [i.model_dump(mode="json") for i in spec.labels.imports],
            "files": files,
            "functions": {k: v.model_dump(mode="json")
                          for k, v in spec.labels.functions.items()},
            "natural": None if spec.labels.natural is None
            else spec.labels.natural.model_dump(mode="json"),
            "log": [lake.version(a, spec.name) for a in ("predictions", "feedback")]}


def prepare_labels(ctx: RunContext, rows: pa.Table) -> dict[str, Any] | None:
    """Before the policy reads the label store: the files of
    ``labels.imports`` imported, the labeling functions' votes refreshed when
    a rule reads ``function``, the natural labels when one reads ``natural``
    (windows judged at the run's start). None when the policy reads the
    column alone."""
    spec = ctx.spec
    if not spec.labels.from_store:
        return None
    from .labeling._functions import store_function_votes
    from .labeling._natural import store_natural
    from .labeling._store import import_file

    kinds = {r.from_ for r in spec.labels.policy}
    out: dict[str, Any] = {"imports": []}
    for imp in spec.labels.imports:
        res = import_file(ctx.lake, spec.name, ctx.root, imp.path, key=spec.key,
                          fmt=imp.format, item=imp.item, label=imp.label,
                          annotator=imp.annotator, source=imp.source,
                          kind=imp.kind, confidence=imp.confidence, time=imp.time,
                          separator=_separator(spec))
        out["imports"].append({k: res[k] for k in ("file", "rows", "items",
                                                   "sources", "written", "notes")})
    if "function" in kinds and spec.labels.functions:
        rep = store_function_votes(ctx.lake, spec, rows)
        out["functions"] = {k: rep.get(k) for k in (
            "covered", "functions", "merged", "dev_rows", "label_model_accuracy",
            "majority_accuracy", "stored_votes")}
    if "natural" in kinds and spec.labels.natural is not None and \
            ctx.lake.exists("predictions", spec.name):
        out["natural"] = store_natural(ctx.lake, spec.name, spec.labels.natural,
                                       now=ctx.started_at)
    return out


def _separator(spec) -> str | None:
    """The multilabel task's label separator (None for the other tasks)."""
    return spec.problem.separator if spec.problem.task == "multilabel" else None


def with_target(spec, lake, rows: pa.Table) -> tuple[pa.Table, dict | None]:
    """The union's rows with their target as ``labels.policy`` makes it (the
    column alone by default), and what each rule gave (None by default)."""
    if not spec.labels.from_store:
        return rows, None
    from .labeling._policy import apply_policy, policy_digest

    rows, by_rule = apply_policy(
        rows, target=spec.problem.target, key=spec.key, policy=spec.labels.policy,
        default_method=spec.labels.aggregate, lake=lake, name=spec.name,
        exclude=spec.labels.exclude, separator=_separator(spec))
    return rows, {**policy_digest(lake, spec.name, spec.labels.policy,
                                  spec.labels.exclude), "by_rule": by_rule}


def _store_agreement(ctx: RunContext) -> dict[str, Any] | None:
    """How far the annotators of the label store agree, for the report, when
    some item has votes from two of them (None otherwise)."""
    from .labeling._store import AREA, read_labels, vote_matrix

    spec = ctx.spec
    if not ctx.lake.exists(AREA, spec.name):
        return None
    table = read_labels(ctx.lake, spec.name, kinds=("human",))
    if table.num_rows == 0:
        return None
    if spec.problem.task == "multilabel":
        from .labeling._sets import set_agreement

        res = set_agreement(table)
        if res["annotators"] < 2 or not res["items_with_several_votes"]:
            return None
    else:
        M, items, sources, labels = vote_matrix(table, order=spec.labels.order)
        if len(sources) < 2 or not ((M >= 0).sum(axis=1) >= 2).any():
            return None
        from .labeling import agreement

        res = agreement(M, items=items, annotators=sources, labels=labels,
                        ordinal=spec.labels.order is not None)
    res["queue"] = res["queue"][:10]  # `mlsd label agreement --queue` has all
    res["excluded"] = list(spec.labels.exclude)
    return res


def training_table(ctx: RunContext, training: DatasetRef,
                   columns: list[str] | None = None) -> pa.Table:
    """The training table of ``training``, in its ``_row`` order; with
    ``columns``, only those of them it has (and ``_row``), read alone from the
    lake unless the whole table is in memory already."""
    import numpy as np
    import pyarrow as pa

    def ordered(t: pa.Table) -> pa.Table:
        rows = t.column(ROW).to_numpy()
        if len(rows) and not (np.diff(rows) > 0).all():
            t = t.take(pa.array(np.argsort(rows, kind="stable")))
        return t

    whole = ("trainingdata.table", training.node)
    if columns is None:
        def read() -> pa.Table:
            if ctx.spark is not None and ("dataset", training.node) not in ctx.cache:
                _fits_the_driver(ctx, training)
            return ordered(ctx.read(training))
        return ctx.memo(whole, read)
    if whole in ctx.cache or ("dataset", training.node) in ctx.cache:
        t = training_table(ctx, training)
        return t.select([c for c in dict.fromkeys([ROW, *columns])
                         if c in t.column_names])

    def narrow() -> pa.Table:
        have = set(ctx.lake.dataset(training.area, training.name,
                                    training.version).schema.names)
        wanted = [c for c in dict.fromkeys([ROW, *columns]) if c in have]
        if ctx.spark is not None:
            _fits_the_driver(ctx, training, wanted)
        return ordered(ctx.lake.read(training.area, training.name, training.version,
                                     columns=wanted))
    return ctx.memo(("trainingdata.table", training.node, tuple(columns)), narrow)


def _fits_the_driver(ctx: RunContext, training: DatasetRef,
                     columns: list[str] | None = None) -> None:
    """On a Spark run, refuse to read the training table (``columns`` of it,
    default all) on the driver past the memory it has free (the kernel would
    kill it without a word): its size once read is taken from the Parquet
    footers (each column chunk's uncompressed size), before any row is read."""
    import pyarrow.parquet as pq

    from .._memory import available_bytes, readable
    from ..lake._store import locate

    room = available_bytes()
    if room is None:
        return
    _, files = ctx.lake.files(training.area, training.name, training.version)
    wanted = None if columns is None else set(columns)
    need = 0
    for f in files:
        fs, path = locate(f)
        with fs.open_input_file(path) as source:
            meta = pq.ParquetFile(source).metadata
        for g in range(meta.num_row_groups):
            group = meta.row_group(g)
            if wanted is None:
                need += group.total_byte_size
                continue
            need += sum(group.column(i).total_uncompressed_size
                        for i in range(group.num_columns)
                        if group.column(i).path_in_schema.split(".")[0] in wanted)
    if need <= room:
        return
    shown = None if columns is None else [c for c in columns if c != ROW]
    what = "every row and column of the training table" if shown is None else (
        "the row numbers of the training table" if not shown else
        f"{len(shown)} columns of every row of the training table ("
        f"{', '.join(shown[:5])}{', ...' if len(shown) > 5 else ''})")
    raise DataError(
        f"{training.dataset}@{training.version}: this stage reads {what} on the "
        f"driver, about {readable(need)} once read, and the driver has "
        f"{readable(room)} free. On Spark, the sample, the features and the model "
        f"read far less; what still reads the raw columns is the audit and the "
        f"registry's comparison (and the model, for augmentation from raw rows or "
        f"slices in SQL): run `mlsd run --until train`, or the driver where it has "
        f"more memory")


def _check_split(ctx: RunContext) -> list[tuple[str, str]]:
    spec, cols = ctx.spec, union_schema(ctx).columns
    problems = [(f"split.{part}", f"column {col!r} is not in the data")
                for part in ("time", "group")
                if (col := getattr(spec.split, part)) and col not in cols]
    time = spec.split.time
    if spec.split.strategy in ("time", "time+group") and time in cols and cols[
            time] not in (
            "timestamp", "int64", "float64"):
        problems.append((
            "split.time", f"a time split orders rows by time, but {time!r} is "
            f"{_type_name(cols[time])} in {schema_files(ctx)}; declare it "
            f"timestamp there (its values as ISO 8601, 2024-01-31T12:00:00) or "
            f"split by another column"))
    elif (spec.split.gap is not None and time in cols and cols[time] != "timestamp"
          and isinstance(spec.split.gap, str)):
        problems.append((
            "split.gap", f"{spec.split.gap!r} is a duration, but {time!r} holds "
            f"numbers ({cols[time]}); give the gap in the column's own units"))
    return problems


def _split_settings(ctx: RunContext) -> dict[str, Any]:
    spec = ctx.spec
    return {"split": spec.split, "seed": spec.seed, "key": spec.key,
            "target": spec.problem.target}


CUTS_KEY = "mlsd.split_cuts"


def _recorded_cuts(ctx: RunContext, settings: str) -> dict[str, Any] | None:
    """The cuts the latest split recorded, if it was made with these settings."""
    import json

    if not ctx.lake.exists("splits", ctx.spec.name):
        return None
    info = ctx.lake.last_write("splits", ctx.spec.name) or {}
    try:
        doc = json.loads(info.get(CUTS_KEY) or "null")
    except ValueError:
        return None
    if not isinstance(doc, dict) or doc.get("settings") != settings:
        return None
    return doc.get("cuts") or None


def assigned_splits(ctx: RunContext, training: DatasetRef
                    ) -> tuple[str, SplitResult]:
    """Each row's split by the spec, with the cuts recorded by the last split
    of the same settings (once per run: the sample stage draws from the train
    side, the split stage writes it)."""
    from ._split import split_rows

    def make() -> tuple[str, SplitResult]:
        spec = ctx.spec
        settings = digest({**_split_settings(ctx),
                           "split": spec.split.model_dump(mode="json")})
        units = leaders = None
        if ctx.spark is not None:
            units, leaders = _split_hashes_on_spark(ctx, training)
        result = split_rows(rows_to_split(ctx, training), spec.split,
                            target=spec.problem.target, seed=spec.seed,
                            key=spec.key, cuts=_recorded_cuts(ctx, settings),
                            units=units, leaders=leaders)
        return settings, result
    return ctx.memo(("trainingdata.assigned", training.node), make)


def rows_to_split(ctx: RunContext, training: DatasetRef) -> pa.Table:
    """What the split reads of the training table, in ``_row`` order: all of
    it (kept for the stages after it); on Spark, whose jobs computed the
    hashes over every column, only the ids, target, time, group and label
    source columns."""
    if ctx.spark is None:
        return training_table(ctx, training)
    import numpy as np
    import pyarrow as pa

    from .labeling._policy import LABEL_FROM

    def read() -> pa.Table:
        spec = ctx.spec
        have = ctx.lake.files("training", training.name, training.version)[0].names
        wanted = [*([spec.key] if spec.key else ["_source", "_line"]), ROW,
                  spec.problem.target, spec.split.time, spec.split.group, LABEL_FROM]
        t = ctx.lake.read("training", training.name, training.version,
                          columns=[c for c in dict.fromkeys(wanted) if c in have])
        return t.take(pa.array(np.argsort(t.column(ROW).to_numpy(), kind="stable")))
    return ctx.memo(("trainingdata.split_table", training.node), read)


def _split_hashes_on_spark(ctx: RunContext, training: DatasetRef
                           ) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Spark jobs over the whole training table, for the split: each row's
    :func:`stable_unit` (of its id, or of its group) computed by tasks, and
    each row's duplicate leader (the first row, by ``_row``, holding the same
    values in every column but the key and provenance), by a window over those
    columns. In ``_row`` order; None where the strategy needs neither."""
    import numpy as np
    import pyarrow as pa
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    from ..etl import PROVENANCE
    from ._split import stable_unit

    spec, strategy = ctx.spec, ctx.spec.split.strategy
    if strategy not in ("random", "stratified", "group"):
        return None, None
    engine = ctx.spark
    frame = engine.frame(ctx.lake, "training", training.name, training.version)
    seed, key, group = spec.seed, spec.key, spec.split.group
    if strategy == "group":
        if group not in frame.columns:
            raise DataError(f"split.group: column {group!r} is not in the data")
        cols = [group]
    elif key:
        if key not in frame.columns:
            raise DataError(f"split: key column {key!r} is not in the data")
        if frame.filter(F.col(key).isNull()).limit(1).count():
            raise DataError(f"split: key column {key!r} has missing values")
        cols = [key]
    else:
        cols = ["_source", "_line"]
    out = pa.schema([(ROW, pa.int64()), ("u", pa.float64())])

    def units_of(batches):
        for b in batches:
            if strategy == "group" or key:
                values = b.column(cols[0]).to_pylist()
            else:  # as _row_ids: file and line
                values = [f"{s}:{n}" for s, n in zip(
                    b.column("_source").to_pylist(), b.column("_line").to_pylist(),
                    strict=True)]
            yield pa.RecordBatch.from_arrays(
                [b.column(ROW), pa.array(stable_unit(values, seed))], schema=out)

    from pyspark.sql.pandas.types import from_arrow_schema

    got = frame.select(ROW, *cols).mapInArrow(units_of, from_arrow_schema(out)
                                              ).toArrow().sort_by(ROW)
    units = got.column("u").to_numpy()
    leaders = None
    if strategy != "group":
        content = [c for c in frame.columns if c not in {*PROVENANCE, ROW, key}]
        if content:
            lead = frame.select(ROW, F.min(ROW).over(Window.partitionBy(*content))
                                .alias("leader")).toArrow().sort_by(ROW)
            leaders = lead.column("leader").to_numpy()
        else:
            leaders = np.arange(len(units))
    return units, leaders


def _time_text(value: float, is_timestamp: bool) -> str:
    from datetime import UTC, datetime

    if not is_timestamp:
        return f"{value:g}"
    return datetime.fromtimestamp(value / 1e6, UTC).isoformat()


@stage(writes={"splits": "dataset"},
       relations={"training": "split_into", "sample": "trains_on"},
       settings=_split_settings, check=_check_split)
def split(ctx: RunContext, training: DatasetRef, sample: list[DatasetRef]
          ) -> StageResult:
    """Give every row of the training table its split (train, valid, test) by
    the spec's deterministic strategy, as ``splits/NAME``: the row's key (or
    file and line), its ``_row``, ``_split`` and ``_weight``. The cuts (a
    stratified split's per-class hash cut points, a time split's cut-off
    times) are recorded with the split and reused while the split settings
    stay the same, so appended rows never move earlier ones. With a sample,
    the train split keeps the rows drawn (``unsampled``: the others), with
    their weights; valid and test are never sampled."""
    import json

    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    from ._split import GAP, LATE, UNSAMPLED, WEAK, WEAK_KINDS
    from .labeling._policy import LABEL_FROM

    spec = ctx.spec
    rows = rows_to_split(ctx, training)
    target = spec.problem.target
    settings, result = assigned_splits(ctx, training)
    splits = result.labels
    weights = np.ones(rows.num_rows)
    if sample:
        splits, weights = _train_on_sample(ctx, sample[0], splits)
    if LABEL_FROM in rows.column_names:  # weak labels train, never evaluate
        weak = np.isin(np.array(rows.column(LABEL_FROM).to_pylist(), dtype=object),
                       WEAK_KINDS)
        splits = np.where(weak & np.isin(splits, [VALID, TEST]), WEAK, splits)
    split_id = digest({"inputs": [training.node, *(r.node for r in sample)],
                       "settings": settings, "cuts": result.cuts})
    id_cols = [spec.key] if spec.key else ["_source", "_line"]
    split_table = rows.select([*id_cols, ROW]).append_column(
        SPLIT, pa.array(splits)).append_column(WEIGHT, pa.array(weights))
    version, _ = ctx.lake.write(
        "splits", spec.name, split_table, write_id=split_id,
        metadata={CUTS_KEY: json.dumps({"settings": settings, "cuts": result.cuts})})
    ref = DatasetRef(area="splits", name=spec.name, version=version,
                     rows=rows.num_rows, write_id=split_id)
    ctx.keep(ref, split_table)
    sizes = {p: int((splits == p).sum()) for p in (TRAIN, VALID, TEST)}
    left_out = {p: n for p in (GAP, LATE, UNSAMPLED, WEAK)
                if (n := int((splits == p).sum()))}
    time_range = cut_offs = None
    if spec.split.time and spec.split.strategy in ("time", "time+group"):
        time_range = {}
        for p in (TRAIN, VALID, TEST):
            mm = pc.min_max(rows.column(spec.split.time).filter(
                pa.array(splits == p))).as_py()
            time_range[p] = [str(mm["min"]), str(mm["max"])]
        is_ts = pa.types.is_timestamp(rows.column(spec.split.time).type)
        cut_offs = {k: _time_text(v, is_ts) for k, v in result.cuts.items()}
    classes = None
    if spec.problem.task == "multilabel":  # each label's rows per split
        from collections import Counter

        from ._labelsets import parse_labels

        per = {p: Counter() for p in (TRAIN, VALID, TEST)}  # one pass
        for v, sp_ in zip(rows.column(target).to_pylist(), splits, strict=True):
            if sp_ in per:
                per[sp_].update(parse_labels(v, spec.problem.separator) or ())
        names = sorted(set().union(*per.values()))[:50]
        classes = {lb: {p: per[p][lb] for p in per} for lb in names}
    elif spec.split.strategy == "stratified" or spec.problem.task != "regression":
        labels = np.array([str(v) for v in rows.column(target).to_pylist()],
                          dtype=object)
        classes = {c: {p: int(((labels == c) & (splits == p)).sum())
                       for p in (TRAIN, VALID, TEST)}
                   for c in sorted(set(labels.tolist()))[:50]}
    note = ", ".join(f"{p} {n}" for p, n in sizes.items())
    if left_out:
        note += "; left out " + ", ".join(f"{n} {p}" for p, n in left_out.items())
    if result.reused:
        note += " (cuts of the previous split kept)"
    return StageResult(
        outputs={"splits": ref},
        summary={"split": {
            "strategy": spec.split.strategy, "time": spec.split.time,
            "gap": spec.split.gap,
            "rows": rows.num_rows, "unlabelled": training.meta.get("unlabelled", 0),
            "sizes": sizes, "left_out": left_out, "positive_rate": None,
            "time_range": time_range, "cut_offs": cut_offs,
            "cuts_reused": result.reused, "duplicates_placed_together":
                result.duplicates, "classes": classes,
            "dataset": ref.dataset, "version": version}},
        note=note)


def _train_on_sample(ctx: RunContext, sample: DatasetRef, splits: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray]:
    """The train rows the sample did not draw become ``unsampled``; those it
    drew weigh their ``_weight``. Valid and test rows stay as they are."""
    import numpy as np

    from ._sampling import WEIGHT as SAMPLE_WEIGHT
    from ._split import UNSAMPLED

    drawn = ctx.read(sample).select([ROW, SAMPLE_WEIGHT])
    at = drawn.column(ROW).to_numpy()
    weights = np.ones(len(splits))
    in_sample = np.zeros(len(splits), dtype=bool)
    in_sample[at] = True
    weights[at] = drawn.column(SAMPLE_WEIGHT).to_numpy()
    splits = np.where((splits == TRAIN) & ~in_sample, UNSAMPLED, splits)
    weights[splits != TRAIN] = 1.0
    train = splits == TRAIN
    if train.any():  # weights of mean 1 over the train rows
        weights[train] *= train.sum() / weights[train].sum()
    return splits, weights


DRIVER_SAMPLE = "trainingdata.driver_sample"


def driver_sample(ctx: RunContext, training: DatasetRef, splits: DatasetRef
                  ) -> dict[str, Any] | None:
    """What the run says of the train rows the driver fits on when its memory
    holds the feature matrix of no more of them (a Spark run; see
    :func:`keep_driver_sample`), or None: the whole train split."""
    kept = ctx.cache.get((DRIVER_SAMPLE, training.node, splits.node))
    return None if kept is None else kept[0]


def keep_driver_sample(ctx: RunContext, training: DatasetRef, splits: DatasetRef,
                       rows: np.ndarray, info: dict[str, Any]) -> None:
    """From now on in this run, the train split of :func:`split_parts` is
    these rows (``_row`` numbers, sorted): the labels, weights and times the
    model reads stay aligned with the feature matrix made of them."""
    import pyarrow as pa

    ctx.cache[(DRIVER_SAMPLE, training.node, splits.node)] = (
        info, pa.array(rows, pa.int64()))


def split_parts(ctx: RunContext, training: DatasetRef, splits: DatasetRef,
                columns: list[str] | None = None
                ) -> tuple[pa.Table, np.ndarray, dict[str, pa.Table]]:
    """The training table, each row's split, and the rows of each split, read
    by version (once per run). With ``columns``, the tables hold only those
    columns (and ``_row``, and ``_weight`` when the split weighs rows): a
    stage that needs the labels but not the raw inputs reads no more than it
    needs (on a Spark run, the driver never holds the whole table for it).
    When the driver fits on a sample of the train split
    (:func:`driver_sample`), the train part holds those rows."""
    rows, labels, parts = _split_parts(ctx, training, splits, columns)
    kept = ctx.cache.get((DRIVER_SAMPLE, training.node, splits.node))
    if kept is not None:
        import pyarrow.compute as pc

        train = parts[TRAIN]
        parts = {**parts, TRAIN: train.filter(pc.is_in(train[ROW],
                                                       value_set=kept[1]))}
    return rows, labels, parts


def _split_parts(ctx: RunContext, training: DatasetRef, splits: DatasetRef,
                 columns: list[str] | None
                 ) -> tuple[pa.Table, np.ndarray, dict[str, pa.Table]]:
    key = ("trainingdata.parts", training.node, splits.node)
    if columns is None or key in ctx.cache:
        rows, labels, parts = ctx.memo(key, lambda: _parts(
            ctx, training, splits, training_table(ctx, training)))
        if columns is None:
            return rows, labels, parts

        def cut(t: pa.Table) -> pa.Table:
            return t.select([c for c in dict.fromkeys([ROW, *columns, WEIGHT])
                             if c in t.column_names])
        return cut(rows), labels, {p: cut(t) for p, t in parts.items()}
    return ctx.memo((*key, tuple(columns)), lambda: _parts(
        ctx, training, splits, training_table(ctx, training, columns)))


def _parts(ctx: RunContext, training: DatasetRef, splits: DatasetRef, rows: pa.Table
           ) -> tuple[pa.Table, np.ndarray, dict[str, pa.Table]]:
    import numpy as np
    import pyarrow as pa

    assigned = ctx.read(splits)
    order = assigned.column(ROW).to_numpy()
    if len(order) != rows.num_rows or not np.array_equal(
            np.sort(order), np.arange(rows.num_rows)):
        raise DataError(f"{splits.dataset}@{splits.version} does not split "
                        f"{training.dataset}@{training.version} (its _row numbers "
                        f"differ): run `mlsd run --from split`")
    labels = np.empty(rows.num_rows, dtype=object)
    labels[order] = np.asarray(assigned.column(SPLIT).to_pylist(), dtype=object)
    labels = labels.astype(str)
    parts = {p: rows.filter(pa.array(labels == p)) for p in (TRAIN, VALID, TEST)}
    if WEIGHT in assigned.column_names:
        weights = np.ones(rows.num_rows)
        weights[order] = assigned.column(WEIGHT).to_numpy()
        if not np.allclose(weights[labels == TRAIN], 1.0):
            parts[TRAIN] = parts[TRAIN].append_column(
                WEIGHT, pa.array(weights[labels == TRAIN]))
    return rows, labels, parts
