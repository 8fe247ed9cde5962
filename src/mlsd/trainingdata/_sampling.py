"""Sampling: draw rows from a table, by any of the course's methods, with a
bias report.

:func:`draw` runs on DuckDB over an Arrow table or a pyarrow dataset (a lake
version), so a population larger than memory is scanned, not loaded: the
probability methods rank rows by a seeded hash of their identity and keep the
top ones (a top-n that DuckDB does with a heap), the per-stratum and per-quota
methods number rows within their group, the reservoir streams the rows through
:mod:`._reservoir`. Expressions the spec gives (``where``, ``weights``,
``proposal``, ``density``) run in the locked connection of
:mod:`mlsd.engine._sandbox`: they read the rows and nothing else.

Every sample is returned with its rows, each row's training weight (``_weight``:
how many times it was drawn, times the weight that undoes unequal chances when
the method reweights), the effective sample size of those weights, and
:func:`bias_report`: per column, the sample against the population.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import DataError, SpecError
from ..spec import SampleSpec

if TYPE_CHECKING:
    import duckdb
    import numpy as np
    import pyarrow as pa

WEIGHT, DEPTH, POS = "_weight", "_depth", "_pos"
BOOKKEEPING = ("_row", "_source", "_source_sha256", "_line", "_load_id", WEIGHT,
               DEPTH, POS)
STREAM_ROWS = 65_536
MARGIN_SD = 6.0  # stratified: candidates below the share plus this many deviations


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@dataclass
class Sample:
    """The rows a sampling method drew, with their weights and bias report."""

    rows: pa.Table
    method: str
    settings: dict[str, Any]
    seed: int
    population: int
    ess: float
    notes: list[str] = field(default_factory=list)
    report: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """What the run summary and lineage keep of the sample."""
        import numpy as np

        w = self.rows.column(WEIGHT).to_numpy() if self.rows.num_rows else \
            np.empty(0)
        return {"method": self.method, "settings": self.settings, "seed": self.seed,
                "population": self.population, "rows": self.rows.num_rows,
                "drawn": float(w.sum()) if self.method in ("random", "weighted",
                                                          "importance") else None,
                "effective_size": round(self.ess, 1),
                "weights": {"min": round(float(w.min()), 4),
                            "max": round(float(w.max()), 4)} if len(w) else None,
                "probability": self.method in PROBABILITY,
                "notes": self.notes, **self.report}


PROBABILITY = ("random", "stratified", "weighted", "reservoir", "importance")


class _Population:
    """The population registered in a locked DuckDB connection, with the SQL
    for its identity, its order as given, and a seeded uniform per row."""

    def __init__(self, source: Any, *, key: str | None, seed: int,
                 order: list[str] | None, threads: int):
        import pyarrow as pa

        from ..engine._sandbox import locked_connection

        names = list(source.schema.names)
        if isinstance(source, pa.Table) and not {"_row", "_source"} & set(names):
            # an in-memory table: its own order is the order as given
            import numpy as np

            source = source.append_column(POS, pa.array(
                np.arange(source.num_rows, dtype=np.int64)))
            names.append(POS)
        self.names = names
        self.source = source
        self.key = key
        self.ident = ident = identity(names, key)
        self.order = order or ([c for c in ("_row",) if c in names]
                               or [c for c in ("_source", "_line") if c in names]
                               or ([POS] if POS in names else ident))
        self.seed = seed
        self.rows = 0  # set by draw() once counted
        self.con: duckdb.DuckDBPyConnection = locked_connection(
            {"population": source}, threads=threads)
        self.columns = [c for c in names if c != POS]

    @property
    def order_sql(self) -> str:
        return ", ".join(_q(c) for c in self.order)

    @property
    def unit_sql(self) -> str:
        """A seeded uniform in (0, 1) from the row's identity: 53 bits of
        DuckDB's 64-bit hash of (the identity's hash XOR the seed's). Hashing
        the mix again matters: ``hash(id, seed)`` combines its arguments so
        weakly that, across seeds, some ids come first far more often."""
        return unit_expression(self.ident, f"{int(self.seed)}::BIGINT")

    def count(self) -> int:
        """The population's rows: from the table's own metadata when it has
        it, else one count."""
        if hasattr(self.source, "count_rows"):
            return int(self.source.count_rows())
        if hasattr(self.source, "num_rows"):
            return int(self.source.num_rows)
        return int(self.one("SELECT count(*) FROM population")[0])

    def _run(self, query: str, what: str | None, fetch):
        return run_sql(self.con, query, what, fetch)

    def one(self, query: str, *, what: str | None = None) -> tuple | None:
        """The first row of a query (None when it has none)."""
        rows = self._run(query, what, lambda rel: rel.fetchall())
        return rows[0] if rows else None

    def table(self, query: str, *, what: str | None = None) -> pa.Table:
        return self._run(query, what, lambda rel: rel.to_arrow_table())

    def reader(self, query: str, *, what: str | None = None
               ) -> pa.RecordBatchReader:
        return self._run(query, what, lambda rel: rel.to_arrow_reader(STREAM_ROWS))

    def numbers(self, kinds: dict[str, str]) -> dict[str, tuple]:
        """Mean, spread, quantiles and missing share of every numeric and
        time column (``kinds``) of the population, in one scan."""
        if not kinds:
            return {}
        qs = ", ".join(str(q) for q in QUANTILES)
        # exact quantiles sort each column: beyond a million rows, DuckDB's
        # t-digest (within a fraction of a percent in rank) does for a report
        quantile = "quantile_cont" if self.rows <= EXACT_QUANTILES else \
            "approx_quantile"
        parts = []
        for c, kind in kinds.items():
            col = _q(c)
            v = f"epoch_us({col})::DOUBLE / 1e6" if kind == "time" else \
                f"{col}::DOUBLE"
            parts += [f"avg({v})", f"stddev_pop({v})", f"{quantile}({v}, [{qs}])",
                      f"avg(({col} IS NULL)::INT)"]
        r = self.one(f"SELECT {', '.join(parts)} FROM population")
        return {c: tuple(r[4 * i:4 * i + 4]) for i, c in enumerate(kinds)}

    def distinct(self, columns: list[str]) -> dict[str, tuple[int, int]]:
        """Each column's distinct values (missing counts as one) and the
        rows, in one scan."""
        if not columns:
            return {}
        parts = [f"count(DISTINCT {_q(c)}) + max(({_q(c)} IS NULL)::INT)"
                 for c in columns]
        r = self.one(f"SELECT count(*), {', '.join(parts)} FROM population")
        return {c: (int(r[1 + i]), int(r[0])) for i, c in enumerate(columns)}

    def most_common(self, c: str, limit: int) -> pa.Table:
        """A column's ``limit`` most common values as text (``v``, missing as
        null) with their rows (``n``); ties by value."""
        return self.table(f"SELECT CAST({_q(c)} AS VARCHAR) AS v, count(*) AS n FROM "
                          f"population GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT {limit}")

    def where_rows(self, where: str, what: str = "where") -> pa.Table:
        """The rows for which the checked expression ``where`` holds, in order."""
        return self.table(f"SELECT * FROM population WHERE {where} ORDER BY "
                          f"{self.order_sql}", what=what)

    def rows_with_keys(self, keys: list) -> pa.Table:
        """The rows whose key, as text, is one of ``keys``, in order."""
        _keys_table(self, keys)
        return self.table(f"SELECT * FROM population WHERE CAST({_q(self.key)} AS "
                          f"VARCHAR) IN (SELECT k FROM chosen) ORDER BY "
                          f"{self.order_sql}")

    def close(self) -> None:
        self.con.close()


def run_sql(con, query: str, what: str | None, fetch):
    """``fetch`` of ``query`` on ``con``; DuckDB's refusal of a spec
    expression said as ``sample.<what>: ...`` (one line) when ``what`` names
    the setting it came from."""
    import duckdb

    from ..engine._sandbox import why

    try:
        return fetch(con.sql(query))
    except duckdb.Error as err:
        if what:
            raise SpecError(f"sample.{what}: {why(err)}") from None
        raise


def identity(names: list[str], key: str | None) -> list[str]:
    """The columns that name a row: the key, else its file and line (which
    stay when rows are added), else ``_row``, else its position."""
    if key and key not in names:
        raise DataError(f"sample: key column {key!r} is not in the data")
    if key:
        return [key]
    for ident in (["_source", "_line"], ["_row"], [POS]):
        if set(ident) <= set(names):
            return ident
    raise DataError("sample: the rows have no identity (no key, `_row`, or source "
                    "and line): give `key`")


def unit_expression(columns: list[str], seed_sql: str) -> str:
    """The SQL of a uniform in (0, 1) from ``columns`` and a seed expression
    (see :attr:`_Population.unit_sql`)."""
    cols = ", ".join(_q(c) for c in columns)
    return (f"((hash(xor(hash({cols}), hash({seed_sql}))) >> 11)::DOUBLE + 0.5) "
            f"/ 9007199254740992.0")


def _expression(text: str | None, what: str, names: list[str]) -> str | None:
    """A spec expression checked to be one SQL expression (a bare column name
    is quoted)."""
    from ..engine._sandbox import check_expression

    if text is None:
        return None
    if text in names:
        return _q(text)
    problem = check_expression(text)
    if problem:
        raise SpecError(f"sample.{what}: {text!r} is not one SQL expression: "
                        f"{problem}")
    return f"({text})"


def _size(spec: SampleSpec, population: int) -> int:
    if spec.n is not None:
        return spec.n
    return max(1, int(round(spec.fraction * population)))


def draw(source: Any, spec: SampleSpec, *, seed: int, key: str | None = None,
         target: str | None = None, order: list[str] | None = None,
         edges: Any = None, threads: int = 2, report_columns: list[str] | None = None
         ) -> Sample:
    """Draw a sample of ``source`` by ``spec.method``.

    Parameters
    ----------
    source : pa.Table or pyarrow.dataset.Dataset
        The population (a lake version: ``Lake.dataset(area, name, version)``).
    spec : SampleSpec
        The method and its settings (``spec.seed`` overrides ``seed``).
    seed : int
        The same seed and population give the same sample.
    key : str, optional
        The row key: identity of the rows (judgment and snowball match it).
        Without it, rows are known by ``_row``, by source and line, or by
        their position in an in-memory table.
    target : str, optional
        The label column: the default strata of a stratified sample.
    order : list of str, optional
        The order "as given" (convenience, quota, reservoir); by default
        ``_row``, else source and line, else the table's own order.
    edges : pa.Table or pyarrow.dataset.Dataset, optional
        The link table of a snowball sample with ``edges``.
    report_columns : list of str, optional
        Columns of the bias report (default: every data column, at most 40;
        an empty list: no report).

    Examples
    --------
    >>> import pyarrow as pa
    >>> from mlsd.spec import SampleSpec
    >>> t = pa.table({"id": range(1000), "c": ["a"] * 990 + ["b"] * 10})
    >>> s = draw(t, SampleSpec(method="stratified", n=100, by="c",
    ...                        allocation="equal"), seed=1, key="id")
    >>> sorted(s.rows.group_by("c").aggregate([("c", "count")]).to_pylist(),
    ...        key=lambda r: r["c"])
    [{'c': 'a', 'c_count': 90}, {'c': 'b', 'c_count': 10}]
    """
    seed = spec.seed if spec.seed is not None else seed
    pop = _Population(source, key=key, seed=seed, order=order, threads=threads)
    try:
        n_pop = pop.rows = pop.count()
        if n_pop == 0:
            raise DataError("sample: the population has no row")
        rows, weights, notes = _METHODS[spec.method](pop, spec, n_pop, target=target,
                                                    edges=edges)
        return finish(pop, spec, rows, weights, notes, schema=source.schema,
                      seed=seed, key=key, report_columns=report_columns)
    finally:
        pop.close()


def finish(pop: Any, spec: SampleSpec, rows: pa.Table, weights: Any,
           notes: list[str], *, schema: pa.Schema, seed: int, key: str | None,
           report_columns: list[str] | None) -> Sample:
    """The drawn rows as a :class:`Sample`: the population's column types,
    each row's weight, the effective size and the bias report (``pop``: the
    population's figures, on DuckDB or on Spark)."""
    import numpy as np
    import pyarrow as pa

    if rows.num_rows == 0:
        raise DataError(f"sample ({spec.method}): no row was drawn"
                        + (f" ({'; '.join(notes)})" if notes else ""))
    keep = [c for c in rows.column_names if c != POS and not c.startswith("__")]
    rows = _as_population(rows.select(keep), schema)
    if weights is None:
        weights = np.ones(rows.num_rows)
    rows = rows.append_column(WEIGHT, pa.array(np.asarray(weights, dtype=float)))
    w = rows.column(WEIGHT).to_numpy()
    ess = float(w.sum() ** 2 / (w ** 2).sum())
    cols = [c for c in pop.columns if c not in BOOKKEEPING and c != key][
        :40] if report_columns is None else report_columns
    report = bias_report(pop, rows, cols, ess=ess)
    settings = spec.model_dump(mode="json", by_alias=True, exclude_none=True,
                               exclude_defaults=True)
    return Sample(rows=rows, method=spec.method, settings=settings, seed=seed,
                  population=pop.rows, ess=ess, notes=notes, report=report)


def _as_population(rows: pa.Table, schema: pa.Schema) -> pa.Table:
    """The drawn rows with the population's own column types (DuckDB hands
    back a UTC timestamp as ``Etc/UTC``, which Delta refuses)."""
    import pyarrow as pa

    fields = [schema.field(c) if c in schema.names else rows.schema.field(c)
              for c in rows.column_names]
    return rows.cast(pa.schema(fields))


# -- the methods ------------------------------------------------------------------
def _first(pop: _Population, spec: SampleSpec, n_pop: int, **_) -> tuple:
    """convenience: the first rows as given (among those ``where`` keeps)."""
    where = _expression(spec.where, "where", pop.names)
    n = _size(spec, n_pop)
    rows = pop.table(f"SELECT * FROM population {f'WHERE {where}' if where else ''} "
                     f"ORDER BY {pop.order_sql} LIMIT {n}", what="where")
    notes = [f"asked for {n} rows, {rows.num_rows} available"] if (
        rows.num_rows < n) else []
    return rows, None, notes


def _random(pop: _Population, spec: SampleSpec, n_pop: int, **_) -> tuple:
    """random: simple random sample, without or with replacement."""
    n = _size(spec, n_pop)
    if not spec.replace:
        rows = pop.table(f"SELECT * FROM (SELECT * FROM population ORDER BY "
                         f"{pop.unit_sql} LIMIT {n}) ORDER BY {pop.order_sql}")
        notes = [f"the population holds {n_pop} rows, fewer than {n}: all kept"] if (
            n > n_pop) else []
        return rows, None, notes
    import numpy as np

    rng = np.random.default_rng(pop.seed)
    counts = np.bincount(rng.integers(0, n_pop, n), minlength=n_pop)
    return _by_rank(pop, counts, f"ORDER BY {pop.order_sql}")


def _by_rank(pop: _Population, counts: np.ndarray, order: str,
             weights: np.ndarray | None = None) -> tuple:
    """The rows whose position in ``order`` has a count above 0, each with its
    count times its weight."""
    import numpy as np
    import pyarrow as pa

    pos = np.flatnonzero(counts)
    w = counts[pos].astype(float) * (1.0 if weights is None else weights[pos])
    picks = pa.table({"__r": pa.array(pos, pa.int64()), "__w": pa.array(w)})
    pop.con.register("picks", picks)
    rows = pop.table(f"SELECT p.*, picks.__w FROM (SELECT *, row_number() OVER "
                     f"({order}) - 1 AS __r FROM population) p JOIN picks USING "
                     f"(__r) ORDER BY __r")
    weights_out = rows.column("__w").to_numpy()
    return rows, weights_out, []


def _strata(pop: _Population, spec: SampleSpec, target: str | None) -> str:
    by = spec.by or target
    if not by:
        raise SpecError("sample.by: name the column of the strata (the target is "
                        "the default, and none was given)")
    if by not in pop.names:
        raise SpecError(f"sample.by: column {by!r} is not in the data")
    return by


def allocate(sizes: dict[Any, int], n: int, allocation: str) -> dict[Any, int]:
    """Rows per stratum: ``n`` shared in proportion to the sizes (largest
    remainders, so the total is exactly ``n``), or equally, each stratum
    capped at its size and what it cannot take shared among the others."""
    import numpy as np

    keys = list(sizes)
    size = np.array([sizes[k] for k in keys], dtype=float)
    n = int(min(n, size.sum()))
    if allocation == "proportional":
        exact = n * size / size.sum()
        out = np.floor(exact).astype(int)
        rest = n - out.sum()
        out[np.argsort(-(exact - out), kind="stable")[:rest]] += 1
    else:
        out = np.zeros(len(keys), dtype=int)
        left = n
        open_ = np.ones(len(keys), dtype=bool)
        while left > 0 and open_.any():
            share = max(left // int(open_.sum()), 1)
            for i in np.flatnonzero(open_):
                take = min(share, int(size[i]) - out[i], left)
                out[i] += take
                left -= take
                if out[i] >= size[i]:
                    open_[i] = False
                if left == 0:
                    break
    return {k: int(v) for k, v in zip(keys, out, strict=True)}


def _literal(value: Any) -> str | None:
    """A SQL literal of a plain value (None when it is not plain)."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    return None


def _case(column: str, keys: list, values: list[float], most: int = 64
          ) -> str | None:
    """``CASE column WHEN key THEN value ... END`` over plain keys (None when
    there are more than ``most`` or one is not plain)."""
    if len(keys) > most:
        return None
    parts = []
    for k, v in zip(keys, values, strict=True):
        lit = _literal(k)
        if lit is None:
            return None
        cond = f"{column} IS NULL" if k is None else f"{column} = {lit}"
        parts.append(f"WHEN {cond} THEN {float(v)!r}")
    return "(CASE " + " ".join(parts) + " ELSE -1.0 END)"


def _smallest_per_group(pop: _Population, by: str, sizes: dict, alloc: dict
                        ) -> pa.Table:
    """Per value of ``by``, the ``alloc[value]`` rows of smallest seeded hash,
    in the order as given.

    The hash is uniform, so those rows lie below about ``n_h / N_h``: one scan
    keeps the rows under that share plus ``MARGIN_SD`` standard deviations of
    its sampling error, and only they are ranked, in numpy (sorting the whole
    population by hash, or a window over it, costs several scans). A group
    whose margin fell short is ranked whole; the result is the same either
    way."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    keys = list(sizes)
    n_h = np.array([alloc[k] for k in keys], dtype=float)
    big_n = np.array([sizes[k] for k in keys], dtype=float)
    share = n_h / big_n
    cut = np.where(n_h >= big_n, 2.0,
                   share + MARGIN_SD * np.sqrt(share * (1 - share) / big_n)
                   + 8.0 / big_n)
    scored = f"SELECT p.*, {pop.unit_sql} AS __u FROM population p"
    # one constant cut when the strata's are alike (proportional allocation);
    # else a CASE over the strata, or a join when they are many or not plain
    # (a join on every row costs several scans)
    case = None if cut.max() <= 1.5 * cut.min() else _case(_q(by), keys,
                                                           cut.tolist())
    if case is None and cut.max() > 1.5 * cut.min():
        pop.con.register("cuts", pa.table({"s": pa.array(keys),
                                           "__t": pa.array(cut)}))
        cand = pop.table(f"SELECT x.* FROM ({scored}) x JOIN cuts c ON x.{_q(by)} "
                         f"IS NOT DISTINCT FROM c.s WHERE x.__u < c.__t "
                         f"ORDER BY {pop.order_sql}")
    else:
        cand = pop.table(f"SELECT * FROM ({scored}) WHERE __u < "
                         f"{case or repr(float(cut.max()))} ORDER BY {pop.order_sql}")
    # the exact n_h smallest of each stratum, among the candidates
    codes = pc.fill_null(pc.index_in(cand.column(by), value_set=pa.array(
        keys, cand.schema.field(by).type), skip_nulls=False), -1)
    codes = np.asarray(codes.to_numpy(zero_copy_only=False), dtype=np.int64)
    u = cand.column("__u").to_numpy()
    want = n_h.astype(np.int64)
    have = np.bincount(codes[codes >= 0], minlength=len(keys))
    if len(keys) <= 64:  # a selection per stratum: no sort at all
        parts = []
        for g in np.flatnonzero(want > 0):
            idx = np.flatnonzero(codes == g)
            if len(idx) > want[g]:
                idx = idx[np.argpartition(u[idx], want[g] - 1)[:want[g]]]
            parts.append(idx)
        chosen = np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)
    else:
        order = np.lexsort((u, codes))
        sorted_codes = codes[order]
        starts = np.searchsorted(sorted_codes, np.arange(len(keys)))
        valid = sorted_codes >= 0
        rank = np.arange(len(order)) - starts[np.where(valid, sorted_codes, 0)]
        chosen = order[valid & (rank < want[np.where(valid, sorted_codes, 0)])]
    rows = cand.take(np.sort(chosen)).drop_columns(["__u"])
    short = [k for k, h, w in zip(keys, have, want, strict=True) if h < w]
    if not short:
        return rows
    # beyond the margin (rare): those strata are ranked whole
    pop.con.register("short", pa.table({"s": pa.array(short),
                                        "__k": pa.array([alloc[k] for k in short],
                                                        pa.int64())}))
    whole = pop.table(
        f"SELECT c.* EXCLUDE (__u, __i, __k) FROM (SELECT x.*, row_number() OVER "
        f"(PARTITION BY x.{_q(by)} ORDER BY x.__u) AS __i, s.__k FROM ({scored}) x "
        f"JOIN short s ON x.{_q(by)} IS NOT DISTINCT FROM s.s) c WHERE c.__i <= "
        f"c.__k")
    keep = pc.invert(pc.fill_null(pc.is_in(rows.column(by), value_set=pa.array(
        short, rows.schema.field(by).type)), False))
    if None in short:
        keep = pc.and_(keep, pc.is_valid(rows.column(by)))
    merged = pa.concat_tables([rows.filter(keep), whole.select(rows.column_names)])
    return merged.sort_by([(c, "ascending") for c in pop.order])


def _stratified(pop: _Population, spec: SampleSpec, n_pop: int, *, target=None,
                **_) -> tuple:
    """stratified: per stratum, the rows with the smallest seeded hash."""
    by = _strata(pop, spec, target)
    counts = pop.table(f"SELECT {_q(by)} AS s, count(*) AS n FROM population "
                       f"GROUP BY 1")
    sizes = strata_sizes(counts.column("s").to_pylist(), counts.column("n").to_pylist())
    alloc = allocate(sizes, _size(spec, n_pop), spec.allocation)
    rows = _smallest_per_group(pop, by, sizes, alloc)
    weights, notes = stratified_weights(spec, by, sizes, alloc, rows)
    return rows, weights, notes


def strata_sizes(values: list, counts: list) -> dict[Any, int]:
    """Rows per stratum, the strata in their values' order (missing last):
    the allocation's remainders then break ties alike on every engine."""
    return dict(sorted(zip(values, counts, strict=True),
                       key=lambda kv: (kv[0] is None, kv[0] if kv[0] is not None
                                       else 0)))


def stratified_weights(spec: SampleSpec, by: str, sizes: dict, alloc: dict,
                       rows: pa.Table) -> tuple[Any, list[str]]:
    """A stratified sample's training weights (when it reweights) and notes."""
    import numpy as np

    weights = None
    if spec.reweights:  # N_h / n_h: each drawn row stands for its stratum's rows
        s = rows.column(by).to_pylist()
        weights = np.array([sizes[v] / alloc[v] for v in s])
        weights *= len(weights) / weights.sum()
    small = [k for k in sizes if spec.allocation == "equal"
             and alloc[k] == sizes[k] and alloc[k] < max(alloc.values())]
    notes = []
    if small:
        listed = ", ".join(f"{k} ({sizes[k]})" for k in small[:12])
        notes.append(f"{len(small)} strata hold fewer rows than an equal share and "
                     f"are kept whole: {listed}{', ...' if len(small) > 12 else ''}")
    drawn = sum(alloc.values())
    if len(sizes) > drawn:  # a column of many values: an identifier, a number
        notes.append(f"{by!r} has {len(sizes)} strata for {drawn} drawn rows, fewer "
                     f"than one row a stratum, so the allocation is mostly "
                     f"rounding: stratify by a column of fewer values (a category, "
                     f"or a binned number)")
    if spec.allocation == "equal" and not spec.reweights:
        notes.append(f"the shares of {by!r} differ from the population's by "
                     f"design (equal allocation; reweight: true would give each "
                     f"row its stratum's weight)")
    return weights, notes


def _positive_weights(pop: _Population, expr: str, what: str, where: str = ""
                      ) -> tuple[np.ndarray, int]:
    """Every row's weight in the order as given; rows with a missing weight
    count as 0; a negative or infinite weight is an error naming its row."""
    import numpy as np

    ident = ", ".join(_q(c) for c in pop.ident)
    bad = pop.one(f"SELECT {ident}, {expr} FROM population WHERE {expr} < 0 OR "
                  f"isinf({expr}::DOUBLE) OR isnan({expr}::DOUBLE) LIMIT 1",
                  what=what)
    if bad is not None:
        raise DataError(f"sample.{what}: the weight of the row "
                        f"{dict(zip(pop.ident, bad[:-1], strict=True))} is "
                        f"{bad[-1]}; weights must be finite and >= 0")
    w = pop.table(f"SELECT coalesce({expr}::DOUBLE, 0) AS w FROM population "
                  f"ORDER BY {pop.order_sql}", what=what).column("w").to_numpy()
    return np.asarray(w, dtype=float), int((w == 0).sum())


def inclusion_probabilities(w: np.ndarray, n: int) -> np.ndarray:
    """Approximate inclusion probabilities of a successive (Efraimidis and
    Spirakis) sample of ``n`` rows with weights ``w``: ``1 - exp(-w t)`` with
    ``t`` such that they sum to ``n`` (Rosén's order-sampling approximation)."""
    import numpy as np

    w = np.asarray(w, dtype=float)
    pos = w > 0
    if n >= pos.sum():
        return pos.astype(float)
    lo, hi = 0.0, 1.0
    while (-np.expm1(-w * hi)).sum() < n:
        hi *= 2.0
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        if (-np.expm1(-w * mid)).sum() < n:
            lo = mid
        else:
            hi = mid
    return -np.expm1(-w * hi)


def weighted_draws(w: np.ndarray, n: int, seed: int, reweights: bool
                   ) -> tuple[np.ndarray, np.ndarray | None]:
    """``n`` seeded draws with replacement, chances in proportion to ``w``
    (every row's weight, in the rows' order): each row's count, and with
    ``reweights`` the rows of the population each draw stands for."""
    import numpy as np

    total = w.sum()
    rng = np.random.default_rng(seed)
    draws = np.searchsorted(np.cumsum(w), rng.random(n) * total, side="right")
    counts = np.bincount(np.minimum(draws, len(w) - 1), minlength=len(w))
    # each draw stands for total / (n w_i) rows of the population
    per = total / (n * np.where(w > 0, w, 1.0)) if reweights else None
    return counts, per


def importance_draws(q: np.ndarray, p: np.ndarray, n: int, seed: int
                     ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """``n`` seeded draws from the proposal ``q``, each row's weight
    density / proposal (both over every row, in the rows' order): the
    counts, the ratios and what the draw cannot reach."""
    import numpy as np

    if q.sum() <= 0 or p.sum() <= 0:
        raise DataError("sample: the proposal and the density need a row of "
                        "positive weight each")
    uncovered = int(((p > 0) & (q == 0)).sum())
    notes = []
    if uncovered:
        notes.append(f"{uncovered} rows have density > 0 but proposal 0: they can "
                     f"never be drawn, and estimates miss their share "
                     f"({p[(p > 0) & (q == 0)].sum() / p.sum():.1%} of the density)")
    rng = np.random.default_rng(seed)
    draws = np.searchsorted(np.cumsum(q), rng.random(n) * q.sum(), side="right")
    counts = np.bincount(np.minimum(draws, len(q) - 1), minlength=len(q))
    ratio = (p / p.sum()) / np.where(q > 0, q / q.sum(), 1.0)
    return counts, ratio, notes


def _weighted(pop: _Population, spec: SampleSpec, n_pop: int, **_) -> tuple:
    """weighted: rows drawn with chances in proportion to their weights."""
    import numpy as np

    expr = _expression(spec.weights, "weights", pop.names)
    w, zero = _positive_weights(pop, expr, "weights")
    notes = [f"{zero} rows weigh 0 (or lack a weight) and cannot be drawn"] if (
        zero) else []
    n = _size(spec, n_pop)
    total = w.sum()
    if total <= 0:
        raise DataError("sample.weights: every weight is 0")
    if spec.replace:
        counts, per = weighted_draws(w, n, pop.seed, spec.reweights)
        rows, weights, _ = _by_rank(pop, counts, f"ORDER BY {pop.order_sql}", per)
        if spec.reweights:
            weights = weights * (len(weights) / weights.sum())
        return rows, weights, notes
    # without replacement: the n largest keys log(u) / w (Efraimidis-Spirakis)
    pos_order = pop.table(
        f"SELECT __r FROM (SELECT row_number() OVER (ORDER BY {pop.order_sql}) - 1 "
        f"AS __r, {pop.unit_sql} AS __u, coalesce({expr}::DOUBLE, 0) AS __w FROM "
        f"population) WHERE __w > 0 ORDER BY ln(__u) / __w DESC LIMIT {n}",
        what="weights").column("__r").to_numpy()
    counts = np.zeros(len(w), dtype=int)
    counts[pos_order] = 1
    per = None
    if spec.reweights:
        per = 1.0 / np.maximum(inclusion_probabilities(w, min(n, int((w > 0).sum()))),
                               1e-300)
    rows, weights, _ = _by_rank(pop, counts, f"ORDER BY {pop.order_sql}", per)
    if spec.reweights:
        weights = weights * (len(weights) / weights.sum())
    return rows, weights, notes


def _reservoir(pop: _Population, spec: SampleSpec, n_pop: int, **_) -> tuple:
    """reservoir: one pass over the rows as they come (Algorithm L, or A-ExpJ
    with weights), keeping only the ``n`` rows drawn so far."""
    from .._reservoir import Reservoir, WeightedReservoir

    expr = _expression(spec.weights, "weights", pop.names)
    extra = f", coalesce({expr}::DOUBLE, 0) AS __w" if expr else ""
    reader = pop.reader(f"SELECT *{extra} FROM population", what="weights")
    if expr:
        res = WeightedReservoir(spec.n, seed=pop.seed)
        for batch in reader:
            res.add(batch, batch.column("__w").to_numpy(zero_copy_only=False))
    else:
        res = Reservoir(spec.n, seed=pop.seed)
        res.extend(reader)
    rows, _ = res.result()
    notes = [f"the stream held {res.seen} rows, fewer than {spec.n}: all kept"] if (
        res.seen < spec.n) else []
    return rows, None, notes


def _importance(pop: _Population, spec: SampleSpec, n_pop: int, **_) -> tuple:
    """importance: draw from the proposal, weigh each draw by density /
    proposal (self-normalised)."""

    q_expr = _expression(spec.proposal, "proposal", pop.names) or "1"
    p_expr = _expression(spec.density, "density", pop.names)
    q, _ = _positive_weights(pop, q_expr, "proposal")
    p, _ = _positive_weights(pop, p_expr, "density")
    counts, ratio, notes = importance_draws(q, p, spec.n, pop.seed)
    rows, weights, _ = _by_rank(pop, counts, f"ORDER BY {pop.order_sql}", ratio)
    weights = weights * (counts.sum() / weights.sum())
    return rows, weights, notes


def _keys_table(pop: _Population, keys: list) -> None:
    import pyarrow as pa

    pop.con.register("chosen", pa.table({"k": pa.array([str(k) for k in keys],
                                                       pa.string())}))


def _judgment(pop: _Population, spec: SampleSpec, n_pop: int, **_) -> tuple:
    """judgment: the rows an expert chose, by key or by a predicate."""
    notes = []
    if spec.keys is not None:
        if not pop.key:
            raise SpecError("sample.keys: the rows have no key; declare "
                            "`dataset.key` (or use `where`)")
        rows = pop.rows_with_keys(spec.keys)
        found = {str(v) for v in rows.column(pop.key).to_pylist()}
        missing = [k for k in spec.keys if str(k) not in found]
        if missing:
            notes.append(f"{len(missing)} chosen key(s) are not in the data: "
                         f"{missing[:5]}")
    else:
        rows = pop.where_rows(_expression(spec.where, "where", pop.names))
    return rows, None, notes


def quotas(spec: SampleSpec, sizes: dict) -> tuple[dict, list[str]]:
    """The rows wanted of each category (``sizes``: the rows each has, as
    text) and the notes on those that have fewer."""
    if spec.quota is not None:
        want = {str(k): int(v) for k, v in spec.quota.items()}
    else:
        want = dict.fromkeys(sizes, spec.per_category)
    notes = [f"category {k!r}: {sizes.get(k, 0)} rows for a quota of {v}"
             for k, v in want.items() if sizes.get(k, 0) < v][:10]
    return want, notes


def _quota(pop: _Population, spec: SampleSpec, n_pop: int, *, target=None,
           **_) -> tuple:
    """quota: a fixed number of rows per category, first come."""
    import pyarrow as pa

    by = _strata(pop, spec, target)
    where = _expression(spec.where, "where", pop.names)
    counts = pop.table(f"SELECT CAST({_q(by)} AS VARCHAR) AS s, count(*) AS n FROM "
                       f"population {f'WHERE {where}' if where else ''} GROUP BY 1",
                       what="where")
    # in the categories' order (GROUP BY's varies): the notes name the same
    # ten first on every run and engine
    sizes = strata_sizes(counts.column("s").to_pylist(), counts.column("n").to_pylist())
    want, notes = quotas(spec, sizes)
    pop.con.register("quota", pa.table({"s": pa.array(list(want), pa.string()),
                                        "__k": pa.array(list(want.values()),
                                                        pa.int64())}))
    rows = pop.table(
        f"SELECT p.* FROM (SELECT *, row_number() OVER (PARTITION BY CAST("
        f"{_q(by)} AS VARCHAR) ORDER BY {pop.order_sql}) AS __i FROM population "
        f"{f'WHERE {where}' if where else ''}) p JOIN quota q ON CAST(p.{_q(by)} "
        f"AS VARCHAR) IS NOT DISTINCT FROM q.s WHERE p.__i <= q.__k "
        f"ORDER BY {pop.order_sql}",
        what="where")
    return rows, None, notes


def _snowball(pop: _Population, spec: SampleSpec, n_pop: int, *, edges=None,
              **_) -> tuple:
    """snowball: from the seed rows, follow links breadth-first (as a crawler
    does) until ``n`` rows or ``max_depth`` steps."""
    import numpy as np
    import pyarrow as pa

    if not pop.key:
        raise SpecError("sample: a snowball follows links to row keys; declare "
                        "`dataset.key`")
    k = _q(pop.key)
    if spec.link and spec.link not in pop.names:
        raise SpecError(f"sample.link: column {spec.link!r} is not in the data")
    if spec.edges is not None:
        if edges is None:
            raise SpecError("sample.edges: the link table was not given")
        pop.con.register("edges", edges)
        for c in (spec.edges.from_, spec.edges.to):
            if c not in edges.schema.names:
                raise SpecError(f"sample.edges: column {c!r} is not in "
                                f"{spec.edges.dataset}")
    n = spec.n or n_pop
    levels: list[pa.Table] = []
    seen: set[str] = set()
    frontier = pop.rows_with_keys(spec.keys) if spec.keys is not None else \
        pop.where_rows(_expression(spec.where, "where", pop.names))
    depth, total, dangling = 0, 0, 0
    while frontier.num_rows:
        ids = [str(v) for v in frontier.column(pop.key).to_pylist()]
        fresh = np.array([i not in seen for i in ids])
        frontier = frontier.filter(pa.array(fresh))
        ids = [i for i, f in zip(ids, fresh, strict=True) if f]
        if not ids:
            break
        seen.update(ids)
        if total + frontier.num_rows > n:  # the last step: a seeded share of it
            pop.con.register("level", frontier)
            # DuckDB's time zone name (Etc/UTC) back to the level's own
            frontier = pop.table(f"SELECT * FROM level ORDER BY {pop.unit_sql} "
                                 f"LIMIT {n - total}").cast(frontier.schema)
        levels.append(frontier.append_column(DEPTH, pa.array(
            np.full(frontier.num_rows, depth, dtype=np.int64))))
        total += frontier.num_rows
        if total >= n or (spec.max_depth is not None and depth >= spec.max_depth):
            break
        pop.con.register("level", frontier.select([pop.key] + (
            [spec.link] if spec.link else [])))
        if spec.link:
            link_type = frontier.schema.field(spec.link).type
            flat = (f"unnest({_q(spec.link)})" if pa.types.is_list(link_type)
                    or pa.types.is_large_list(link_type) else _q(spec.link))
            targets = f"SELECT DISTINCT CAST({flat} AS VARCHAR) AS t FROM level"
        else:
            e = spec.edges
            targets = (f"SELECT DISTINCT CAST(e.{_q(e.to)} AS VARCHAR) AS t FROM edges "
                       f"e JOIN level l ON CAST(e.{_q(e.from_)} AS VARCHAR) = "
                       f"CAST(l.{k} AS VARCHAR)")
        nxt = pop.table(f"SELECT t FROM ({targets}) WHERE t IS NOT NULL")
        wanted = [t for t in nxt.column("t").to_pylist() if t not in seen]
        if not wanted:
            break
        frontier = pop.rows_with_keys(wanted)
        dangling += len(wanted) - frontier.num_rows
        depth += 1
    notes = []
    if not levels:
        return pa.table({c: [] for c in pop.names}), None, ["no seed row matched"]
    if dangling:
        notes.append(f"{dangling} links lead to keys that are not in the data")
    if total < n and spec.n:
        notes.append(f"the links reached {total} rows, fewer than {n}")
    return pa.concat_tables(levels, promote_options="default"), None, notes


_METHODS = {"convenience": _first, "random": _random, "stratified": _stratified,
            "weighted": _weighted, "reservoir": _reservoir,
            "importance": _importance, "judgment": _judgment, "quota": _quota,
            "snowball": _snowball}


# -- the bias report ------------------------------------------------------------
QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
MAX_CATEGORIES = 1000  # beyond this, only the 20 most common are compared
Z = 3.0  # a difference beyond 3 standard errors of a random sample is flagged
EXACT_QUANTILES = 1_000_000  # rows up to which population quantiles are exact


def _kind(t: pa.DataType) -> str | None:
    import pyarrow as pa

    if pa.types.is_integer(t) or pa.types.is_floating(t):
        return "numeric"
    if pa.types.is_timestamp(t):
        return "time"
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_boolean(
            t) or pa.types.is_dictionary(t):
        return "categorical"
    return None


def bias_report(pop: _Population, rows: pa.Table, columns: list[str], *,
                ess: float) -> dict[str, Any]:
    """Per column, the sample against the population: category shares, or
    mean, spread and quantiles. A difference larger than a simple random
    sample of the same (effective) size would show 3 times in 1,000 is
    flagged, and so is every category of the population the sample lacks,
    with the number of rows a random sample would have held."""
    import numpy as np

    weights = rows.column(WEIGHT).to_numpy()
    weighted = not np.allclose(weights, weights[0])
    n_eff = max(ess, 1.0)
    out, warnings = [], []
    schema = rows.schema
    kinds = {c: _kind(schema.field(c).type) for c in columns if c in schema.names}
    kinds = {c: k for c, k in kinds.items() if k is not None}
    numbers = pop.numbers({c: k for c, k in kinds.items() if k != "categorical"})
    distinct = pop.distinct([c for c, k in kinds.items() if k == "categorical"])
    for c, kind in kinds.items():
        entry = (_numeric_bias(numbers[c], rows, c, weights, n_eff, kind)
                 if kind != "categorical"
                 else _categorical_bias(pop, rows, c, weights, n_eff, *distinct[c]))
        entry.update(column=c, kind=kind)
        warnings += [f"{c}: {f}" for f in entry["flags"]]
        out.append(entry)
    return {"bias": out, "warnings": warnings, "weighted": bool(weighted)}


def _numeric_bias(stats: tuple, rows: pa.Table, c: str, w: np.ndarray,
                  n_eff: float, kind: str) -> dict[str, Any]:
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    p_mean, p_sd, p_q, p_missing = stats
    arr = rows.column(c)
    if kind == "time":
        arr = pc.divide(pc.cast(pc.cast(arr, pa.timestamp("us", arr.type.tz)),
                                pa.int64()).cast(pa.float64()), 1e6)
    x = np.asarray(arr.to_numpy(zero_copy_only=False), dtype=float)
    ok = ~np.isnan(x)
    s_missing = float(1 - ok.mean())
    flags = []
    sample: dict[str, Any] = {"missing": round(s_missing, 4)}
    if ok.any():
        xs, ws = x[ok], w[ok]
        order = np.argsort(xs, kind="stable")
        cum = np.cumsum(ws[order]) / ws.sum()
        sample.update(mean=float(np.average(xs, weights=ws)),
                      quantiles=[float(xs[order][min(np.searchsorted(cum, q),
                                                     len(xs) - 1)])
                                 for q in QUANTILES])
    pop_entry = {"mean": p_mean, "sd": p_sd, "quantiles": p_q,
                 "missing": round(float(p_missing or 0), 4)}
    if p_mean is not None and "mean" in sample and p_sd:
        se = p_sd / np.sqrt(n_eff)
        z = (sample["mean"] - p_mean) / se
        sample["z"] = round(float(z), 2)
        sample["smd"] = round(float((sample["mean"] - p_mean) / p_sd), 3)
        if abs(z) > Z:
            flags.append(f"mean {_fmt(sample['mean'], kind)} in the sample against "
                         f"{_fmt(p_mean, kind)} in the population ({z:+.1f} "
                         f"standard errors of a random sample)")
    p_m = pop_entry["missing"]
    se_m = np.sqrt(max(p_m * (1 - p_m), 1e-12) / n_eff)
    if abs(s_missing - p_m) > Z * se_m and abs(s_missing - p_m) > 1e-9:
        flags.append(f"{s_missing:.1%} missing in the sample against {p_m:.1%} in "
                     f"the population")
    if kind == "time":
        for d in (pop_entry, sample):
            d["quantiles"] = [_fmt(v, kind) for v in d.get("quantiles") or []]
            if d.get("mean") is not None:
                d["mean"] = _fmt(d["mean"], kind)
            d.pop("sd", None)
    else:
        for d in (pop_entry, sample):
            for k in ("mean", "sd"):
                if d.get(k) is not None:
                    d[k] = _round(d[k])
            d["quantiles"] = [_round(v) for v in d.get("quantiles") or []]
    return {"population": pop_entry, "sample": sample, "flags": flags}


def _round(v: float) -> float:
    return float(f"{v:.4g}")


def _fmt(v: float, kind: str) -> str:
    if kind == "time":
        from datetime import UTC, datetime

        return datetime.fromtimestamp(v, UTC).isoformat(timespec="seconds")
    return f"{v:.4g}"


def _categorical_bias(pop: _Population, rows: pa.Table, c: str, w: np.ndarray,
                      n_eff: float, distinct: int, total: int) -> dict[str, Any]:
    import numpy as np

    if distinct > max(MAX_CATEGORIES, total // 2):
        # an identifier or free text: shares of values seen once say nothing
        return {"population": {"categories": int(distinct), "rows": int(total)},
                "sample": {"rows": rows.num_rows}, "shares": [], "vanished": [],
                "vanished_count": 0, "compared": "nothing (an identifier or free "
                "text: most values occur once)", "total_variation": None,
                "flags": []}
    limit = MAX_CATEGORIES if distinct <= MAX_CATEGORIES else 20
    counts = pop.most_common(c, limit)
    values = rows.column(c).to_pylist()
    s_share: dict[Any, float] = {}
    for v, wi in zip(values, w, strict=True):
        key = None if v is None else (str(v).lower() if isinstance(v, bool)
                                      else str(v))
        s_share[key] = s_share.get(key, 0.0) + wi
    s_total = float(w.sum())
    flags, shares, vanished = [], [], []
    n_drawn = len(values)
    for v, cnt in zip(counts.column("v").to_pylist(), counts.column("n").to_pylist(),
                      strict=True):
        p = cnt / total
        s = s_share.get(v, 0.0) / s_total
        se = np.sqrt(p * (1 - p) / n_eff)
        z = (s - p) / se if se > 0 else 0.0
        name = "(missing)" if v is None else v
        if v not in s_share and (limit == MAX_CATEGORIES or p * n_drawn >= 1):
            # of a column of many values, only a common one missing says much
            vanished.append(name)
            flags.append(f"{name!r} ({p:.2%} of the population, "
                         f"{p * n_drawn:.1f} rows expected in a random sample of "
                         f"{n_drawn}) is absent from the sample")
        elif abs(z) > Z and min(p, 1 - p) * n_eff >= 5:
            # the normal approximation of a share holds from 5 expected rows
            flags.append(f"{name!r}: {s:.1%} of the sample against {p:.1%} of the "
                         f"population ({z:+.1f} standard errors of a random sample)")
        if len(shares) < 20:
            shares.append({"value": name, "population": round(p, 4),
                           "sample": round(s, 4), "z": round(float(z), 2)})
    tvd = 0.5 * sum(abs(d["sample"] - d["population"]) for d in shares)
    return {"population": {"categories": int(distinct), "rows": int(total)},
            "sample": {"categories": len(s_share), "rows": n_drawn},
            "shares": shares, "vanished": vanished[:20],
            "vanished_count": len(vanished), "compared":
                "all categories" if limit == MAX_CATEGORIES else "the 20 most common",
            "total_variation": round(tvd, 4), "flags": flags[:10]}
