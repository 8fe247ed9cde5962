"""Sampling as Spark jobs: every method, and the bias report's population
figures, over a Spark DataFrame of the train rows.

Each row's unit is :func:`._sampling.unit_expression` evaluated by DuckDB
inside the Spark tasks (``mapInArrow``), so a row gets the very number it
gets on DuckDB and the sample is the same rows; Spark then keeps the ``n``
smallest (or the ``n_h`` smallest of each stratum, by a window, or the ``n``
largest Efraimidis-Spirakis keys) and only the drawn rows come to the driver.
Predicates, weights, categories and keys are likewise DuckDB's expressions
and DuckDB's text of a value, computed in the tasks. Draws with replacement
and a reservoir bring one number a row to the driver (the row numbers, or the
weights) for numpy's seeded draws or the same reservoir, the same as on
DuckDB. A snowball walks the links as on DuckDB (the same function), each
level's rows found by key by Spark.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import DataError
from ..spec import SampleSpec
from ._sampling import (
    EXACT_QUANTILES,
    QUANTILES,
    STREAM_ROWS,
    Sample,
    _expression,
    _judgment,
    _q,
    _size,
    _snowball,
    _strata,
    allocate,
    finish,
    identity,
    importance_draws,
    inclusion_probabilities,
    quotas,
    run_sql,
    strata_sizes,
    stratified_weights,
    unit_expression,
    weighted_draws,
)

if TYPE_CHECKING:
    import pyarrow as pa

UNIT, WEIGHT_X, KEY, FLAG, TEXT = "__u", "__w", "__k", "__f", "__s"
SPARK_EXACT_QUANTILES = 100_000  # beyond: Spark's percentile_approx (1e-4 in rank)


class SparkPopulation:
    """The population as a Spark DataFrame, with its identity and order (as
    :class:`._sampling._Population` has them on DuckDB) and the bias
    report's figures computed by Spark."""

    def __init__(self, frame, *, key: str | None, seed: int, order: list[str],
                 schema: pa.Schema | None = None):
        names = list(frame.columns)
        self.schema, self.key = schema, key  # the population's lake types
        self.ident = identity(names, key)
        self.frame, self.names, self.columns = frame, names, names
        self.order, self.seed = order, seed
        self.rows = 0

    def units(self, weight: str | None = None, what: str = "weights"):
        """Every row's order columns and seeded unit (``__u``), computed by
        DuckDB in the tasks: the same number for the same row as on the
        driver. Only the identity columns go through Python. With ``weight``
        (a checked DuckDB expression over the row), also its value as a
        double (``__w``, null when missing) and, where it is above 0, the
        Efraimidis-Spirakis key ``ln(__u) / __w`` (``__k``), both computed
        by the same DuckDB expressions as on the driver; every column then
        goes to the tasks, since the expression may read any."""
        import pyarrow as pa

        expr = self.unit_sql
        if not weight:
            return self._computed(f"{expr} AS {UNIT}", [(UNIT, pa.float64())],
                                  every_column=False)
        return self._computed(
            f"{UNIT}, {WEIGHT_X}, CASE WHEN {WEIGHT_X} > 0 THEN ln({UNIT}) / "
            f"{WEIGHT_X} END AS {KEY}",
            [(UNIT, pa.float64()), (WEIGHT_X, pa.float64()), (KEY, pa.float64())],
            source=f"(SELECT *, {expr} AS {UNIT}, ({weight})::DOUBLE AS {WEIGHT_X} "
                   f"FROM b) AS b", what=what)

    def marks(self, where: str | None = None, text: str | None = None,
              what: str = "where"):
        """Every row's order columns with, computed by DuckDB in the tasks as
        on the driver: whether the checked expression ``where`` holds
        (``__f``; true without one) and the column ``text`` cast to VARCHAR
        (``__s``: DuckDB's text of a value, which Spark's cast does not
        always give)."""
        import pyarrow as pa

        parts = [f"coalesce(({where})::BOOLEAN, false) AS {FLAG}" if where
                 else f"true AS {FLAG}"]
        fields = [(FLAG, pa.bool_())]
        if text is not None:
            parts.append(f"CAST({_q(text)} AS VARCHAR) AS {TEXT}")
            fields.append((TEXT, pa.string()))
        return self._computed(", ".join(parts), fields, what=what,
                              every_column=where is not None or text is not None)

    def _computed(self, select: str, fields: list, *, every_column: bool = True,
                  source: str = "b", what: str | None = None):
        """``SELECT <order columns>, <select> FROM <source>`` run by DuckDB on
        each task's Arrow batches (``b``: the rows; every column of them, or
        only the order and identity columns); ``fields``: the computed
        columns' Arrow types. The query is first bound on the driver against
        no row of the population's types, so a spec expression DuckDB
        refuses is said at once (``sample.<what>: ...``), not as a failed
        Spark task."""
        import pyarrow as pa
        from pyspark.sql.pandas.types import from_arrow_schema

        order = self.order
        out = pa.schema([*(pa.field(c, pa.int64()) for c in order), *fields])
        cols = ", ".join(_q(c) for c in order)
        query = f"SELECT {cols}, {select} FROM {source}"
        given = self.frame if every_column else self.frame.select(
            *dict.fromkeys([*order, *self.ident]))
        if self.schema is not None:
            self.con.register("b", self.schema.empty_table().select(given.columns))
            try:
                run_sql(self.con, query, what, lambda rel: rel.fetchall())
            finally:
                self.con.unregister("b")

        def run(batches):
            import duckdb

            con = duckdb.connect(config={"threads": 1})
            try:
                for b in batches:
                    con.register("b", b)
                    t = con.sql(query).to_arrow_table()
                    con.unregister("b")
                    yield from t.cast(out).to_batches()
            finally:
                con.close()

        return given.mapInArrow(run, from_arrow_schema(out))

    @property
    def order_sql(self) -> str:
        return ", ".join(_q(c) for c in self.order)

    @property
    def unit_sql(self) -> str:
        return unit_expression(self.ident, f"{int(self.seed)}::BIGINT")

    @property
    def con(self):
        """A DuckDB connection of the driver's, for what is already there (a
        snowball's level and links), as :class:`._sampling._Population` has."""
        if getattr(self, "_con", None) is None:
            from ..engine._sandbox import locked_connection

            self._con = locked_connection({}, threads=1)
        return self._con

    def table(self, query: str, *, what: str | None = None) -> pa.Table:
        return run_sql(self.con, query, what, lambda rel: rel.to_arrow_table())

    def order_table(self) -> pa.Table:
        """Every row's order columns, in order, on the driver (one number a
        row): what the draws over every row's position need."""
        return self.frame.select(*self.order).toArrow().sort_by(
            [(c, "ascending") for c in self.order])

    def where_rows(self, where: str, what: str = "where") -> pa.Table:
        """The rows for which the checked expression ``where`` holds (DuckDB's
        verdict, in the tasks), in order."""
        from pyspark.sql import functions as F

        return self.rows_of(self.marks(where, what=what).where(F.col(FLAG))
                            .select(*self.order))

    def rows_with_keys(self, keys: list) -> pa.Table:
        """The rows whose key, as DuckDB writes it, is one of ``keys``."""
        from pyspark.sql import functions as F
        from pyspark.sql.types import StringType, StructField, StructType

        chosen = self.frame.sparkSession.createDataFrame(
            [(str(k),) for k in keys],
            schema=StructType([StructField(TEXT, StringType())]))
        return self.rows_of(self.marks(None, self.key, what="keys").join(
            F.broadcast(chosen), TEXT, "left_semi").select(*self.order))

    def close(self) -> None:
        if getattr(self, "_con", None) is not None:
            self._con.close()
            self._con = None

    def rows_of(self, chosen) -> pa.Table:
        """The rows whose order columns ``chosen`` (a small DataFrame) holds,
        to the driver, in the order as given."""
        from pyspark.sql import functions as F

        t = self.frame.join(F.broadcast(chosen), self.order, "left_semi").toArrow()
        t = t.select([c for c in self.names if c in t.column_names])
        return t.sort_by([(c, "ascending") for c in self.order])

    def numbers(self, kinds: dict[str, str]) -> dict[str, tuple]:
        from pyspark.sql import functions as F

        if not kinds:
            return {}
        # Spark's exact percentile keeps every distinct value per task: 12 s
        # against 2.6 s for its summary on a million rows of three columns
        # (local[2]); exact as DuckDB up to SPARK_EXACT_QUANTILES rows
        exact = self.rows <= min(EXACT_QUANTILES, SPARK_EXACT_QUANTILES)
        parts = []
        for c, kind in kinds.items():
            col = F.col(c)
            v = (F.unix_micros(col).cast("double") / 1e6) if kind == "time" \
                else col.cast("double")
            q = F.percentile(v, list(QUANTILES)) if exact else \
                F.percentile_approx(v, list(QUANTILES), 10_000)
            parts += [F.avg(v), F.stddev_pop(v), q,
                      F.avg(col.isNull().cast("int"))]
        r = self.frame.agg(*parts).collect()[0]
        values = [list(x) if isinstance(x, list | tuple) else x for x in r]
        return {c: tuple(values[4 * i:4 * i + 4]) for i, c in enumerate(kinds)}

    def distinct(self, columns: list[str]) -> dict[str, tuple[int, int]]:
        from pyspark.sql import functions as F

        if not columns:
            return {}
        parts = [x for c in columns for x in (
            F.countDistinct(c), F.max(F.col(c).isNull().cast("int")))]
        r = self.frame.agg(F.count(F.lit(1)), *parts).collect()[0]
        return {c: (int(r[1 + 2 * i]) + int(r[2 + 2 * i] or 0), int(r[0]))
                for i, c in enumerate(columns)}

    def most_common(self, c: str, limit: int) -> pa.Table:
        from pyspark.sql import functions as F

        counts = (self.frame.select(F.col(c).cast("string").alias("v"))
                  .groupBy("v").agg(F.count(F.lit(1)).alias("n"))
                  .orderBy(F.desc("n"), F.asc_nulls_last("v")).limit(limit))
        return counts.toArrow()


def draw_on_spark(frame, spec: SampleSpec, *, seed: int, key: str | None,
                  target: str | None, order: list[str], schema: pa.Schema,
                  report_columns: list[str] | None, edges=None) -> Sample:
    """:func:`._sampling.draw`, over a Spark DataFrame of the population
    (``schema``: its lake types; ``edges``: a snowball's link table)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F
    from pyspark.sql.types import LongType, StructField, StructType

    seed = spec.seed if spec.seed is not None else seed
    pop = SparkPopulation(frame, key=key, seed=seed, order=order, schema=schema)
    if spec.method == "stratified":  # the strata's sizes add up to the rows
        by = _strata(pop, spec, target)
        counts = frame.groupBy(by).agg(F.count(F.lit(1)).alias("n")).toArrow()
        sizes = strata_sizes(counts.column(by).to_pylist(),
                             counts.column("n").to_pylist())
        n_pop = sum(sizes.values())
    else:
        n_pop = int(frame.count())
    pop.rows = n_pop
    if n_pop == 0:
        raise DataError("sample: the population has no row")
    # quota and judgment take no size: theirs is the quotas', the choice's
    n = _size(spec, n_pop) if spec.n is not None or spec.fraction is not None else 0
    weights, notes = None, []
    if spec.method == "random" and spec.replace:
        rows, weights = _with_replacement(pop, n, n_pop)
    elif spec.method == "random":
        rows = pop.rows_of(pop.units().orderBy(UNIT).limit(n).select(*order))
        if n > n_pop:
            notes = [f"the population holds {n_pop} rows, fewer than {n}: all kept"]
    elif spec.method == "convenience":  # the first rows as given, where asked
        where = _expression(spec.where, "where", pop.names)
        rows = pop.rows_of(pop.marks(where).where(F.col(FLAG)).orderBy(*order)
                           .limit(n).select(*order))
        notes = [f"asked for {n} rows, {rows.num_rows} available"] if (
            rows.num_rows < n) else []
    elif spec.method == "quota":
        rows, notes = _quota(pop, spec, target)
    elif spec.method == "judgment":  # the same lookups as on DuckDB
        rows, _, notes = _judgment(pop, spec, n_pop)
    elif spec.method == "weighted" and spec.replace:
        rows, weights, notes = _weighted_with_replacement(pop, spec, n)
    elif spec.method == "weighted":
        rows, weights, notes = _weighted(pop, spec, n)
    elif spec.method == "importance":
        rows, weights, notes = _importance(pop, spec)
    elif spec.method == "reservoir":
        rows, notes = _reservoir(pop, spec)
    elif spec.method == "snowball":  # level by level: each level's rows by key
        try:
            rows, _, notes = _snowball(pop, spec, n_pop, edges=edges)
        finally:
            pop.close()
    else:
        alloc = allocate(sizes, n, spec.allocation)
        # the strata's column beside each unit (a join of narrow columns),
        # ranked by unit within its stratum
        rank = F.row_number().over(Window.partitionBy(by).orderBy(UNIT))
        ranked = pop.units().join(frame.select(*order, by), order).withColumn(
            "__i", rank)
        quota = frame.sparkSession.createDataFrame(
            list(alloc.items()), schema=StructType([
                StructField("__s", frame.schema[by].dataType),
                StructField("__k", LongType())]))
        chosen = ranked.join(F.broadcast(quota), ranked[by].eqNullSafe(quota["__s"])
                             ).where(F.col("__i") <= F.col("__k")).select(*order)
        rows = pop.rows_of(chosen)
        weights, notes = stratified_weights(spec, by, sizes, alloc, rows)
    return finish(pop, spec, rows, weights, notes, schema=schema, seed=seed,
                  key=key, report_columns=report_columns)


def _weighted(pop: SparkPopulation, spec: SampleSpec, n: int) -> tuple:
    """weighted, without replacement: the ``n`` rows of largest key
    ``ln(u) / w`` (Efraimidis-Spirakis), as :func:`._sampling._weighted` draws
    them on DuckDB: the same keys (computed by DuckDB in the tasks), the same
    rows, and with ``reweight`` the same weights, 1 / each drawn row's
    inclusion probability, from the weights of every row in order (the one
    column that comes to the driver, only then)."""
    import numpy as np
    import pyarrow as pa
    from pyspark.sql import functions as F

    expr = _expression(spec.weights, "weights", pop.names)
    units = pop.units(expr).persist()
    try:
        w = F.col(WEIGHT_X)
        _refuse_bad(pop, units, WEIGHT_X, "weights")
        counts = units.agg(F.sum(F.when(w > 0, 1).otherwise(0)).alias("pos"),
                           F.sum(F.coalesce(w, F.lit(0.0))).alias("total")
                           ).collect()[0]
        zero = pop.rows - int(counts["pos"] or 0)
        notes = [f"{zero} rows weigh 0 (or lack a weight) and cannot be drawn"] if (
            zero) else []
        if not counts["total"] or counts["total"] <= 0:
            raise DataError("sample.weights: every weight is 0")
        chosen = units.where(w > 0).orderBy(F.desc(KEY)).limit(n).select(*pop.order)
        rows = pop.rows_of(chosen)
        if not spec.reweights:
            return rows, None, notes
        _fits_the_driver(pop, 1, "weighted, reweighted")
        everyone = units.select(*pop.order, F.coalesce(w, F.lit(0.0)).alias(
            WEIGHT_X)).toArrow().sort_by([(c, "ascending") for c in pop.order])
    finally:
        units.unpersist()
    all_w = np.asarray(everyone.column(WEIGHT_X).to_numpy(), dtype=float)
    pi = inclusion_probabilities(all_w, min(n, int((all_w > 0).sum())))
    at = everyone.select(pop.order).append_column(
        "__p", pa.array(np.arange(everyone.num_rows)))
    pos = rows.select(pop.order).join(at, pop.order).sort_by(
        [(c, "ascending") for c in pop.order]).column("__p").to_numpy()
    weights = 1.0 / np.maximum(pi[pos], 1e-300)
    return rows, weights * (len(weights) / weights.sum()), notes


def _with_replacement(pop: SparkPopulation, n: int, n_pop: int) -> tuple:
    """random with replacement: the same draws as on DuckDB (``n`` seeded
    positions in the rows' order, numpy's generator on the driver), each
    drawn row once with its count as its weight; the positions become row
    numbers through the order column alone (one number a row)."""
    import numpy as np

    _fits_the_driver(pop, 1, "random with replacement")
    rng = np.random.default_rng(pop.seed)
    counts = np.bincount(rng.integers(0, n_pop, n), minlength=n_pop)
    order = pop.order_table()
    return _rows_at(pop, order, counts)


def _quota(pop: SparkPopulation, spec: SampleSpec, target: str | None) -> tuple:
    """quota: a fixed number of rows per category, first come (the rows'
    order), as :func:`._sampling._quota` keeps them: categories as DuckDB
    writes them (``CAST(... AS VARCHAR)``), counted among the rows ``where``
    keeps."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F
    from pyspark.sql.types import LongType, StringType, StructField, StructType

    by = _strata(pop, spec, target)
    where = _expression(spec.where, "where", pop.names)
    marked = pop.marks(where, by).where(F.col(FLAG)).drop(FLAG).persist()
    try:
        counts = marked.groupBy(TEXT).agg(F.count(F.lit(1)).alias("n")).toArrow()
        sizes = strata_sizes(counts.column(TEXT).to_pylist(),
                             counts.column("n").to_pylist())
        want, notes = quotas(spec, sizes)
        quota = pop.frame.sparkSession.createDataFrame(
            list(want.items()), schema=StructType([StructField("__q", StringType()),
                                                    StructField("__n", LongType())]))
        rank = F.row_number().over(Window.partitionBy(TEXT).orderBy(*pop.order))
        ranked = marked.withColumn("__i", rank)
        chosen = ranked.join(F.broadcast(quota), ranked[TEXT].eqNullSafe(
            quota["__q"])).where(F.col("__i") <= F.col("__n")).select(*pop.order)
        rows = pop.rows_of(chosen)
    finally:
        marked.unpersist()
    return rows, notes


PER_ROW_FACTOR = 3  # Arrow from Spark, its sorted copy, the numpy arrays


def _fits_the_driver(pop: SparkPopulation, numbers: int, method: str) -> None:
    """Refuse, before any is collected, ``numbers`` numbers a row (beside the
    order column) on a driver without the memory for them: the kernel would
    kill it without a word. Said with what draws without them."""
    from .._memory import available_bytes, readable

    room = available_bytes()
    need = PER_ROW_FACTOR * 8 * (len(pop.order) + numbers) * pop.rows
    if room is None or need <= room:
        return
    what = "row number" if not numbers else \
        f"row number and {'weight' if numbers == 1 else f'{numbers} weights'}"
    raise DataError(
        f"sample ({method}): this draw needs the {what} of every train row on the "
        f"driver, {pop.rows:,} rows, about {readable(need)}, and the driver has "
        f"{readable(room)} free: draw without replacement (random, stratified, or "
        f"weighted without reweight), which Spark ranks itself, or run the driver "
        f"where it has more memory")


def _refuse_bad(pop: SparkPopulation, frame, column: str, what: str) -> None:
    """A negative, infinite or NaN weight in ``column`` is an error naming its
    row, as on DuckDB (:func:`._sampling._positive_weights`)."""
    from pyspark.sql import functions as F

    v = F.col(column)
    found = frame.where(F.isnan(v) | (v < 0) | (F.abs(v) == float("inf"))
                        ).select(*pop.order, column).limit(1).collect()
    if found:
        at = found[0]
        row = pop.frame.where(F.expr(" AND ".join(
            f"`{c}` = {int(at[c])}" for c in pop.order))).toArrow().to_pylist()[0]
        raise DataError(f"sample.{what}: the weight of the row "
                        f"{ {c: row[c] for c in pop.ident} } is "
                        f"{at[column]}; weights must be finite and >= 0")


def _every_weight(pop: SparkPopulation, exprs: dict[str, str], method: str
                  ) -> tuple:
    """Every row's value of each weight expression (``what`` -> checked DuckDB
    SQL), computed by DuckDB in the tasks, checked (:func:`_refuse_bad`) and
    brought to the driver in the rows' order, a missing one as 0 (as
    :func:`._sampling._positive_weights` gives them): one number a row each,
    for the draws over every row's cumulative weight. Also the order columns."""
    import numpy as np
    import pyarrow as pa

    _fits_the_driver(pop, len(exprs), method)
    names = {what: f"__v{i}" for i, what in enumerate(exprs)}
    for what, sql in exprs.items():  # each bound alone: the error names it
        pop._computed(f"({sql})::DOUBLE AS __v", [("__v", pa.float64())], what=what)
    values = pop._computed(
        ", ".join(f"({sql})::DOUBLE AS {names[w]}" for w, sql in exprs.items()),
        [(c, pa.float64()) for c in names.values()]).persist()
    try:
        for what, c in names.items():
            _refuse_bad(pop, values, c, what)
        got = values.toArrow().sort_by([(c, "ascending") for c in pop.order])
    finally:
        values.unpersist()
    out = {what: np.nan_to_num(np.asarray(got.column(c).to_numpy(
        zero_copy_only=False), dtype=float), nan=0.0) for what, c in names.items()}
    return got.select(pop.order), out


def _rows_at(pop: SparkPopulation, order, counts, per=None) -> tuple:
    """The rows at the positions (in the rows' order, ``order``: the order
    columns of every row) whose count is above 0, each weighing its count
    times ``per`` (as :func:`._sampling._by_rank`)."""
    import numpy as np
    import pyarrow as pa

    pos = np.flatnonzero(counts)
    chosen = pop.frame.sparkSession.createDataFrame(
        order.take(pa.array(pos)).to_pylist(),
        schema=pop.frame.select(*pop.order).schema)
    w = counts[pos].astype(float) * (1.0 if per is None else per[pos])
    return pop.rows_of(chosen), w


def _weighted_with_replacement(pop: SparkPopulation, spec: SampleSpec, n: int
                               ) -> tuple:
    order, got = _every_weight(pop, {"weights": _expression(
        spec.weights, "weights", pop.names)}, "weighted with replacement")
    w = got["weights"]
    zero = int((w == 0).sum())
    notes = [f"{zero} rows weigh 0 (or lack a weight) and cannot be drawn"] if (
        zero) else []
    if w.sum() <= 0:
        raise DataError("sample.weights: every weight is 0")
    counts, per = weighted_draws(w, n, pop.seed, spec.reweights)
    rows, weights = _rows_at(pop, order, counts, per)
    if spec.reweights:
        weights = weights * (len(weights) / weights.sum())
    return rows, weights, notes


def _importance(pop: SparkPopulation, spec: SampleSpec) -> tuple:
    order, got = _every_weight(pop, {
        "proposal": _expression(spec.proposal, "proposal", pop.names) or "1",
        "density": _expression(spec.density, "density", pop.names)}, "importance")
    counts, ratio, notes = importance_draws(got["proposal"], got["density"],
                                            spec.n, pop.seed)
    rows, weights = _rows_at(pop, order, counts, ratio)
    return rows, weights * (counts.sum() / weights.sum()), notes


def _reservoir(pop: SparkPopulation, spec: SampleSpec) -> tuple:
    """reservoir: the rows :func:`._sampling._reservoir` keeps in one pass
    over the rows in their order. Which positions Algorithm L keeps does not
    depend on the rows' values, so the driver runs the same reservoir over
    the row numbers alone (A-ExpJ over the weights, with weights), in the
    batches DuckDB reads, one number a row, and brings back only the rows
    kept."""
    import numpy as np
    import pyarrow as pa

    from .._reservoir import Reservoir, WeightedReservoir

    if spec.weights:
        order, got = _every_weight(pop, {"weights": _expression(
            spec.weights, "weights", pop.names)}, "reservoir")
        w = got["weights"]
        res = WeightedReservoir(spec.n, seed=pop.seed)
        for start in range(0, order.num_rows, STREAM_ROWS):
            res.add(pa.array(range(start, min(start + STREAM_ROWS, order.num_rows)),
                    pa.int64()), w[start:start + STREAM_ROWS])
    else:
        _fits_the_driver(pop, 0, "reservoir")
        order = pop.order_table()
        res = Reservoir(spec.n, seed=pop.seed)
        for start in range(0, order.num_rows, STREAM_ROWS):
            res.add(pa.array(range(start, min(start + STREAM_ROWS, order.num_rows)),
                    pa.int64()))
    _, positions = res.result()
    counts = np.zeros(order.num_rows, dtype=int)
    counts[positions] = 1
    rows, _ = _rows_at(pop, order, counts)
    notes = [f"the stream held {res.seen} rows, fewer than {spec.n}: all kept"] if (
        res.seen < spec.n) else []
    return rows, notes
