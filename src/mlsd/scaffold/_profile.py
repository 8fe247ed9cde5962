"""What init needs to know of each column: type, missing share, distinct values,
text shape, time span, and how it relates to the target."""

from __future__ import annotations

import math
from contextlib import closing
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..etl._coerce import coerce_any
from ..etl._schema import DataSchema

PROFILE_ROWS = 200_000
"""Rows read to profile a source: enough for stable shares, quick on any file."""


@dataclass
class ColumnProfile:
    """Counts and shapes of one column, computed on the typed sample."""

    name: str
    type: Any
    rows: int
    missing: int
    distinct: int
    top_share: float = 0.0
    top_value: Any = None
    mean_tokens: float = 0.0
    mean_length: float = 0.0
    integral: bool = False
    counter: bool = False
    span_days: float = 0.0
    time_of_day: bool = False
    weekdays: int = 0
    months: int = 0
    days_of_month: int = 0
    values: list = field(default_factory=list, repr=False)

    @property
    def present(self) -> int:
        return self.rows - self.missing

    @property
    def missing_share(self) -> float:
        return self.missing / self.rows if self.rows else 0.0

    @property
    def numeric(self) -> bool:
        return self.type in ("int64", "float64", "bool")


def typed_sample(connector, schema: DataSchema, null_values: list[str], *,
                 rows: int = PROFILE_ROWS) -> tuple[pa.Table, int]:
    """The first ``rows`` readable rows, coerced to ``schema``; and how many rows
    could not be read (they would be quarantined by a load)."""
    columns = list(schema.columns)
    batches, n, unreadable = [], 0, 0
    with closing(connector.read(columns, chunk_rows=min(rows, 50_000))) as reader:
        for _, batch in reader:
            ok = batch.filter(pc.is_null(batch.column("_error"))) \
                if "_error" in batch.schema.names else batch
            unreadable += batch.num_rows - ok.num_rows
            arrays = []
            for c in columns:
                arr, _bad = coerce_any(ok.column(c), schema.columns[c], null_values)
                arrays.append(arr)  # a value that does not fit the type is null
            batches.append(pa.table(arrays, names=columns))
            n += ok.num_rows
            if n >= rows:
                break
    if not batches:
        return pa.table({c: pa.array([], pa.string()) for c in columns}), unreadable
    return pa.concat_tables(batches).slice(0, rows), unreadable


def profile(table: pa.Table, schema: DataSchema) -> dict[str, ColumnProfile]:
    """One :class:`ColumnProfile` per column of ``table``."""
    return {c: profile_column(c, schema.columns[c], table.column(c).combine_chunks())
            for c in table.column_names}


def profile_column(name: str, type_name: Any, col: pa.Array) -> ColumnProfile:
    n = len(col)
    missing = col.null_count
    if isinstance(type_name, dict):  # a struct: counted, never a feature
        return ColumnProfile(name, "struct", n, missing, 0)
    present = col.drop_null()
    counts = pc.value_counts(present)
    distinct = len(counts)
    p = ColumnProfile(name, type_name, n, missing, distinct)
    if distinct:
        freq = np.asarray(counts.field("counts"))
        top = int(np.argmax(freq))
        p.top_share = float(freq[top]) / len(present)
        p.top_value = counts.field("values")[top].as_py()
        if distinct <= 64:
            p.values = list(zip(counts.field("values").to_pylist(),
                                freq.tolist(), strict=True))
    if type_name == "string" and len(present):
        lengths = np.asarray(pc.utf8_length(present), dtype=float)
        tokens = np.asarray(pc.list_value_length(pc.utf8_split_whitespace(
            pc.utf8_trim_whitespace(present))), dtype=float)
        p.mean_length = float(lengths.mean())
        p.mean_tokens = float(tokens.mean())
    elif type_name in ("int64", "float64") and len(present):
        x = np.asarray(pc.cast(present, pa.float64()), dtype=float)
        x = x[np.isfinite(x)]
        p.integral = bool(len(x)) and bool(np.all(np.floor(x) == x))
        if p.integral and distinct == len(present) and distinct > 2:
            # a counter: sorted, the values step by one (1, 2, 3, ...)
            steps = np.diff(np.sort(x))
            p.counter = float(np.mean(steps == 1)) >= 0.95
    elif type_name == "timestamp" and len(present):
        us = np.asarray(pc.cast(present, pa.int64()), dtype=np.int64)
        p.span_days = float(us.max() - us.min()) / 86_400e6
        day = 86_400 * 10**6
        p.time_of_day = bool(np.any(us % day != 0))
        p.weekdays = len(pc.unique(pc.day_of_week(present)))
        p.months = len(pc.unique(pc.month(present)))
        p.days_of_month = len(pc.unique(pc.day(present)))
    return p


def copies_target(col: pa.Array, target: pa.Array) -> bool:
    """The column holds the target's values, as they are or as text."""
    both = pc.and_(pc.is_valid(col), pc.is_valid(target))
    if not pc.any(both).as_py():
        return False
    a = pc.cast(pc.filter(col, both), pa.string()) if not pa.types.is_string(
        col.type) else pc.filter(col, both)
    b = pc.cast(pc.filter(target, both), pa.string()) if not pa.types.is_string(
        target.type) else pc.filter(target, both)
    return bool(pc.all(pc.equal(pc.utf8_lower(a), pc.utf8_lower(b))).as_py())


def determined_by_target(col: pa.Array, target: pa.Array, *, regression: bool,
                         share: float = 0.99) -> float | None:
    """How closely the column follows the target, when it is (nearly) a function
    of it; None when it is not.

    Classification: the share of rows whose value is their class's most common
    value, when every class has a value of its own (at least ``share``).
    Regression: |Spearman rank correlation| with the target (at least ``share``).
    """
    both = pc.and_(pc.is_valid(col), pc.is_valid(target))
    n = int(pc.sum(pc.cast(both, pa.int64())).as_py() or 0)
    if n < 10:
        return None
    x = pc.filter(col, both)
    y = pc.filter(target, both)
    if regression:
        if not (pa.types.is_integer(x.type) or pa.types.is_floating(x.type)):
            return None
        from scipy.stats import spearmanr

        xs = np.asarray(pc.cast(x, pa.float64()), dtype=float)
        ys = np.asarray(pc.cast(y, pa.float64()), dtype=float)
        if xs.std() == 0 or ys.std() == 0:
            return None
        rho = abs(float(spearmanr(xs, ys).statistic))
        return rho if rho >= share and math.isfinite(rho) else None
    t = pa.table({"x": pc.cast(x, pa.string()), "y": pc.cast(y, pa.string())})
    pairs = t.group_by(["y", "x"]).aggregate([([], "count_all")]).to_pylist()
    best: dict[str, tuple[int, str]] = {}
    for r in pairs:
        if r["count_all"] > best.get(r["y"], (0, ""))[0]:
            best[r["y"]] = (r["count_all"], r["x"])
    if len({v for _, v in best.values()}) < len(best):
        return None  # two classes share a value: the column does not tell them apart
    agree = sum(c for c, _ in best.values()) / n
    return agree if agree >= share else None
