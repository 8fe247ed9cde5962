"""Numeric transforms: impute and scale, discretise, periodic and random Fourier
features, calendar parts of timestamps."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp

from ..errors import DataError, MlsdError
from ..spec._models import period_seconds
from ._base import (
    MISSING,
    Transform,
    block,
    entries,
    floats,
    one_hot,
    plain,
    row_float,
)


def most_frequent(engine, table, expr) -> Any:
    """The most frequent non-missing value (ties: the smallest), or None."""
    import ibis

    t = table.select(v=expr).filter(ibis._.v.notnull())
    top = engine.to_arrow(t.group_by("v").aggregate(n=ibis._.count())
                          .order_by([ibis.desc("n"), "v"]).limit(1)).to_pylist()
    return top[0]["v"] if top else None


QUARTILES = [0.25, 0.5, 0.75]


def numeric_summaries(engine, table, wanted: dict[str, int]) -> dict[str, dict]:
    """For each column of ``wanted``: rows, missing, mean, std, median,
    quartiles, min, max, max |x|, and that many evenly spaced quantiles (0: none),
    all in one aggregate query (one scan however many columns)."""
    metrics: dict[str, Any] = {"n": table.count()}
    for i, (column, quantiles) in enumerate(wanted.items()):
        c = table[column].cast("float64")
        qs = QUARTILES + (np.linspace(0, 1, quantiles).tolist() if quantiles else [])
        metrics |= {f"missing{i}": c.isnull().sum(), f"mean{i}": c.mean(),
                    f"std{i}": c.std(how="pop"), f"q{i}": c.quantile(qs),
                    f"min{i}": c.min(), f"max{i}": c.max(),
                    f"maxabs{i}": c.abs().max()}
    s = engine.aggregate(table, **metrics)
    out = {}
    for i, (column, quantiles) in enumerate(wanted.items()):
        q = [plain(x) for x in (s[f"q{i}"] or [None] * (3 + quantiles))]
        one = {"n": int(s["n"] or 0), "missing": int(s[f"missing{i}"] or 0),
               "mean": plain(s[f"mean{i}"]), "std": plain(s[f"std{i}"]),
               "q1": q[0], "median": q[1], "q3": q[2], "min": plain(s[f"min{i}"]),
               "max": plain(s[f"max{i}"]), "maxabs": plain(s[f"maxabs{i}"])}
        if quantiles:
            one["q"] = q[3:]
        out[column] = one
    return out


def numeric_summary(engine, table, column: str, *, quantiles: int = 0,
                    known: dict | None = None) -> dict[str, Any]:
    """:func:`numeric_summaries` of one column, or the one in ``known`` (what
    the pipeline computed for all its columns in one scan)."""
    if known and (column, quantiles) in known:
        return known[(column, quantiles)]
    return numeric_summaries(engine, table, {column: quantiles})[column]


# -- impute and scale ------------------------------------------------------------

IMPUTERS = ("median", "mean", "most_frequent", "constant", "zero", "none")
SCALERS = ("standard", "minmax", "robust", "maxabs", "log1p", "quantile", "none")


def _quantile_map(q: list[float | None]) -> tuple[list[float], list[float]]:
    """Reference points of a quantile scaler: distinct training quantiles and
    the mean level of each (tied quantiles share one point, so a value equal to
    many quantiles maps to their middle, as scikit-learn's two-sided
    interpolation does)."""
    vals = [v for v in q if v is not None]
    if not vals:
        return [], []
    levels = np.linspace(0, 1, len(vals))
    xs, ys = [], []
    for v, lv in zip(vals, levels, strict=True):
        if xs and v == xs[-1]:
            ys[-1].append(lv)
        else:
            xs.append(v)
            ys.append([lv])
    return xs, [float(np.mean(y)) for y in ys]


class NumericFeature(Transform):
    """Impute, then scale one numeric column; optionally mark missing values.

    ``impute``: ``median``, ``mean``, ``most_frequent``, ``constant`` (with
    ``fill_value``), ``zero`` or ``none`` (NaN kept: trees route it). ``scale``:
    ``standard`` (mean, std), ``minmax``, ``robust`` (median, interquartile range),
    ``maxabs``, ``log1p`` (values must be >= 0), ``quantile`` (to [0, 1] by the
    training quantiles) or ``none``. When training rows have missing values and
    ``missing_indicator`` is set, a 0/1 column marks them: missingness can carry
    signal (missing not at random).
    """

    kind = "numeric"

    def __init__(self, *, column: str | None = None, impute: str = "median",
                 scale: str = "standard", missing_indicator: bool = True,
                 fill_value: float | None = None, n_quantiles: int = 100):
        super().__init__(column=column, impute=impute, scale=scale,
                         missing_indicator=missing_indicator, fill_value=fill_value,
                         n_quantiles=n_quantiles)

    def _quantiles(self) -> int:
        return self.params["n_quantiles"] if self.params["scale"] == "quantile" else 0

    def summaries_wanted(self) -> dict[str, int]:
        return {self.column: self._quantiles()}

    def _analyze(self, engine, table):
        p = self.params
        if p["impute"] not in IMPUTERS:
            raise MlsdError(f"{self!r}: impute must be one of {', '.join(IMPUTERS)}")
        if p["scale"] not in SCALERS:
            raise MlsdError(f"{self!r}: scale must be one of {', '.join(SCALERS)}")
        if p["impute"] == "constant" and p["fill_value"] is None:
            raise MlsdError(f"{self!r}: impute: constant needs a fill_value")
        s = numeric_summary(engine, table, self.column, quantiles=self._quantiles(),
                            known=self.known_)
        if p["scale"] == "log1p" and s["min"] is not None and s["min"] < 0:
            raise DataError(
                f"feature {self.column!r}: scale: log1p needs values >= 0, but the "
                f"training rows hold {s['min']:g}; use scale: standard or robust, "
                f"or shift the column in transform.derive")
        fill = {"median": s["median"], "mean": s["mean"], "zero": 0.0, "none": None,
                "constant": p["fill_value"]}.get(p["impute"])
        if p["impute"] == "most_frequent":
            fill = plain(most_frequent(engine, table,
                                       table[self.column].cast("float64")))
        state = {"rows": s["n"], "missing": s["missing"],
                 "fill": plain(fill) if fill is not None else None,
                 "mean": s["mean"], "std": s["std"], "min": s["min"],
                 "max": s["max"], "median": s["median"],
                 "iqr": (s["q3"] - s["q1"]) if s["q1"] is not None else None,
                 "maxabs": s["maxabs"],
                 "indicator": bool(p["missing_indicator"] and s["missing"] > 0)}
        if p["scale"] == "quantile":
            state["quantiles"], state["levels"] = _quantile_map(s["q"] or [])
        return state

    def _scale(self, state, x):
        with np.errstate(over="ignore", invalid="ignore"):  # huge values: inf
            return self._scaled(state, x)

    def _scaled(self, state, x):
        scale = self.params["scale"]
        if scale == "standard" and state["mean"] is not None:
            return (x - state["mean"]) / (state["std"] or 1.0)
        if scale == "minmax" and state["min"] is not None:
            return (x - state["min"]) / ((state["max"] - state["min"]) or 1.0)
        if scale == "robust" and state.get("median") is not None:
            return (x - state["median"]) / (state["iqr"] or 1.0)
        if scale == "maxabs" and state.get("maxabs") is not None:
            return x / (state["maxabs"] or 1.0)
        if scale == "log1p":
            bad = np.flatnonzero(x < 0)
            if len(bad):
                raise DataError(
                    f"feature {self.column!r}: scale: log1p needs values >= 0; "
                    f"row {int(bad[0])} holds {x[bad[0]]:g}")
            return np.log1p(x)
        if scale == "quantile" and state.get("quantiles"):
            out = np.interp(x, state["quantiles"], state["levels"])
            return np.where(np.isnan(x), np.nan, out)
        return x

    def _apply(self, state, col):
        x = floats(col)
        miss = np.isnan(x)
        fill = state["fill"]
        if fill is not None:
            x[miss] = fill
        x = self._scale(state, x)
        if state["indicator"]:
            return block(np.column_stack([x, miss.astype(np.float64)]))
        return block(x)

    def _row(self, state, v):  # log1p and quantile: numpy's functions, as in batch
        x = math.nan if v is None else float(v)
        miss = x != x
        if miss and state["fill"] is not None:
            x = state["fill"]
        x = float(self._scale(state, np.array([x]))[0])
        return entries([x, 1.0 if miss else 0.0] if state["indicator"] else [x])

    def _row_function(self, state):
        # plain float arithmetic, the very operations of _scaled in the same
        # order (IEEE gives the same bits)
        scale, fill, indicator = self.params["scale"], state["fill"], state["indicator"]
        sub = div = None  # (x - sub) / div, with the constants of _scaled
        if scale == "standard" and state["mean"] is not None:
            sub, div = state["mean"], state["std"] or 1.0
        elif scale == "minmax" and state["min"] is not None:
            sub, div = state["min"], (state["max"] - state["min"]) or 1.0
        elif scale == "robust" and state.get("median") is not None:
            sub, div = state["median"], state["iqr"] or 1.0
        elif scale == "maxabs" and state.get("maxabs") is not None:
            sub, div = 0.0, state["maxabs"] or 1.0
        elif scale in ("log1p", "quantile"):
            return super()._row_function(state)
        nan = math.nan

        def row(v):
            x = nan if v is None else float(v)
            miss = x != x
            if miss and fill is not None:
                x = fill
            if sub is not None:
                x = (x - sub) / div
            if indicator and miss:
                return ([0, 1], [x, 1.0]) if x != 0 else ([1], [1.0])
            return ([0], [x]) if x != 0 else ([], [])
        return row

    def _names(self, state):
        out = [self.column]
        if state["indicator"]:
            out.append(f"{self.column}__missing")
        return out


# -- discretisation ---------------------------------------------------------------

BIN_STRATEGIES = ("uniform", "quantile", "edges")


def bin_edges(engine, table, column: str, *, strategy: str, bins: int,
              edges: list[float] | None = None) -> list[float]:
    """The inner edges of ``bins`` bins over the training values of a column
    (distinct and increasing, so a bin is never empty by construction)."""
    if strategy == "edges":
        return sorted({float(e) for e in edges or []})
    c = table[column].cast("float64")
    if strategy == "uniform":
        s = engine.aggregate(table, lo=c.min(), hi=c.max())
        if s["lo"] is None or s["lo"] == s["hi"]:
            return []
        inner = np.linspace(s["lo"], s["hi"], bins + 1)[1:-1]
    else:
        q = engine.aggregate(table, q=c.quantile(
            np.linspace(0, 1, bins + 1)[1:-1].tolist()))["q"]
        inner = [v for v in (q or []) if v is not None and not math.isnan(v)]
    return sorted({float(v) for v in inner})


def _edge_label(column: str, edges: list[float], i: int) -> str:
    if not edges:
        return f"{column}[all]"
    if i == 0:
        return f"{column}[<{edges[0]:.4g}]"
    if i == len(edges):
        return f"{column}[>={edges[-1]:.4g}]"
    return f"{column}[{edges[i - 1]:.4g},{edges[i]:.4g})"


class BinsFeature(Transform):
    """Discretise a numeric column into bins: ``uniform`` width between the
    training min and max, training ``quantile``s, or explicit ``edges``. The
    output is one-hot (a column per bin, plus one for missing) or ``ordinal``
    (the bin's number; missing is -1). A value on an edge goes to the bin on
    its right."""

    kind = "bins"

    def __init__(self, *, column: str | None = None, strategy: str = "quantile",
                 bins: int = 10, edges: list[float] | None = None,
                 output: str = "onehot"):
        super().__init__(column=column, strategy=strategy, bins=bins,
                         edges=edges,
                         output=output)

    def _analyze(self, engine, table):
        p = self.params
        if p["strategy"] not in BIN_STRATEGIES:
            raise MlsdError(f"{self!r}: strategy must be one of "
                            f"{', '.join(BIN_STRATEGIES)}")
        if p["strategy"] == "edges" and not p["edges"]:
            raise MlsdError(f"{self!r}: strategy: edges needs a list of edges")
        return {"edges": bin_edges(engine, table, self.column, strategy=p["strategy"],
                                   bins=p["bins"], edges=p["edges"])}

    def _apply(self, state, col):
        x = floats(col)
        miss = np.isnan(x)
        j = np.searchsorted(np.asarray(state["edges"], dtype=np.float64), x,
                            side="right")
        k = len(state["edges"]) + 1
        if self.params["output"] == "ordinal":
            return block(np.where(miss, -1.0, j.astype(np.float64)))
        return one_hot(len(x), np.where(miss, k, j), k + 1)

    def _row(self, state, v):
        import bisect

        x = row_float(v)
        if x != x:
            if self.params["output"] == "ordinal":
                return [0], [-1.0]
            return [len(state["edges"]) + 1], [1.0]
        j = bisect.bisect_right(state["edges"], x)
        if self.params["output"] == "ordinal":
            return entries([float(j)])
        return [j], [1.0]

    def _names(self, state):
        if self.params["output"] == "ordinal":
            return [f"{self.column}.bin"]
        e = state["edges"]
        return [_edge_label(self.column, e, i) for i in range(len(e) + 1)] + [
            f"{self.column}={MISSING}"]


# -- periodic and Fourier features ------------------------------------------------

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICRO = timedelta(microseconds=1)


def _wave(x: np.ndarray) -> np.ndarray:
    """A sine or cosine rounded to 12 decimals: cos(2 pi 11/24) and
    cos(2 pi 13/24) differ in their last bit, and trees split on that noise
    (the example's model did), a split that float32 consumers (ONNX) cannot
    reproduce. The batch and the one-row paths both round here."""
    return np.round(x, 12)


def _seconds(col: pa.Array) -> np.ndarray:
    """Seconds since the epoch (UTC) of a timestamp column; numbers as they are."""
    if pa.types.is_timestamp(col.type):
        us = pc.cast(col, pa.timestamp("us", col.type.tz), safe=False)
        x = us.cast(pa.int64()).to_numpy(zero_copy_only=False)
        x = np.asarray(x, dtype=np.float64)
        x[np.asarray(col.is_null())] = np.nan
        return x / 1e6
    if pa.types.is_null(col.type):
        return np.full(len(col), np.nan)
    return floats(col)


def _row_seconds(v: Any) -> float:
    if isinstance(v, datetime):
        if v.tzinfo is None:
            v = v.replace(tzinfo=UTC)
        return float((v - _EPOCH) // _MICRO) / 1e6
    return row_float(v)


class PeriodicFeature(Transform):
    """Position on a cycle: sin and cos of ``2 pi k x / period`` for k = 1 ..
    ``harmonics`` (positional encoding), for a number or a timestamp (seconds
    since the epoch, UTC; ``period`` then may read ``24h``, ``7d``...). Missing
    values give zeros and, if training rows had any, a 0/1 missing column."""

    kind = "periodic"

    def __init__(self, *, column: str | None = None, period: float | str = "24h",
                 harmonics: int = 1):
        super().__init__(column=column, period=period, harmonics=harmonics)

    def _analyze(self, engine, table):
        seconds = period_seconds(self.params["period"])
        n_missing = 0
        if engine is not None:
            n_missing = int(engine.aggregate(
                table, m=table[self.column].isnull().sum())["m"] or 0)
        return {"period": seconds, "harmonics": int(self.params["harmonics"]),
                "indicator": n_missing > 0}

    def _waves(self, state, x: np.ndarray) -> np.ndarray:
        miss = np.isnan(x)
        phase = np.mod(np.where(miss, 0.0, x), state["period"]) / state["period"]
        cols = []
        for k in range(1, state["harmonics"] + 1):
            angle = 2 * np.pi * k * phase
            cols += [np.where(miss, 0.0, _wave(np.sin(angle))),
                     np.where(miss, 0.0, _wave(np.cos(angle)))]
        if state["indicator"]:
            cols.append(miss.astype(np.float64))
        return np.column_stack(cols)

    def _apply(self, state, col):
        return block(self._waves(state, _seconds(col)))

    def _row(self, state, v):
        return entries(self._waves(state, np.array([_row_seconds(v)]))[0])

    def _names(self, state):
        out = []
        for k in range(1, state["harmonics"] + 1):
            out += [f"{self.column}~sin{k}", f"{self.column}~cos{k}"]
        return out + ([f"{self.column}__missing"] if state["indicator"] else [])


class FourierFeature(Transform):
    """Random Fourier features over several numeric columns: ``dim`` columns
    ``sqrt(2/dim) cos(x W + b)`` whose inner products approximate the RBF kernel
    ``exp(-gamma |x - x'|^2)`` (Rahimi and Recht, 2007). Inputs are first
    imputed with the training median and standardised with the training mean and
    std, so ``gamma`` means the same whatever the units. ``W`` and ``b`` are
    drawn once from ``seed`` and kept in the state (so they never depend on a
    random generator's version)."""

    kind = "fourier"
    multi = True

    def __init__(self, *, columns: list[str] | None = None, dim: int = 64,
                 gamma: float = 1.0, seed: int = 0):
        super().__init__(columns=columns, dim=dim, gamma=gamma, seed=seed)

    def _analyze(self, engine, table):
        p = self.params
        stats = []
        for c in self.columns:
            s = numeric_summary(engine, table, c, known=self.known_)
            stats.append({"fill": s["median"] if s["median"] is not None else 0.0,
                          "mean": s["mean"] or 0.0, "std": s["std"] or 1.0})
        rng = np.random.default_rng(p["seed"])
        w = rng.normal(0.0, math.sqrt(2 * p["gamma"]), size=(len(self.columns),
                                                            p["dim"]))
        b = rng.uniform(0.0, 2 * math.pi, size=p["dim"])
        return {"inputs": stats, "w": w.tolist(), "b": b.tolist()}

    def summaries_wanted(self) -> dict[str, int]:
        return dict.fromkeys(self.columns, 0)

    def _project(self, state, xs: list[np.ndarray]) -> np.ndarray:
        # x W + b as a sum over inputs in a fixed order (elementwise, no BLAS),
        # so one row and a batch give the very same floats
        w = np.asarray(state["w"], dtype=np.float64)
        acc = np.broadcast_to(np.asarray(state["b"], dtype=np.float64),
                              (len(xs[0]), w.shape[1])).copy()
        with np.errstate(over="ignore", invalid="ignore"):  # huge values: NaN
            for i, (x, s) in enumerate(zip(xs, state["inputs"], strict=True)):
                z = (np.where(np.isnan(x), s["fill"], x) - s["mean"]) / (
                    s["std"] or 1.0)
                acc += z[:, None] * w[i]
            return math.sqrt(2.0 / w.shape[1]) * np.cos(acc)

    def _apply(self, state, *cols):
        return sp.csr_matrix(self._project(state, [floats(c) for c in cols]))

    def _row(self, state, *values):
        out = self._project(state, [np.array([row_float(v)]) for v in values])[0]
        return entries(out)

    def _names(self, state):
        return [f"{self.label}~rff{i}" for i in range(len(state["b"]))]


# -- calendar parts --------------------------------------------------------------

_PERIOD = {"hour": 24, "weekday": 7, "month": 12, "day": 31}
TIME_PARTS = tuple(_PERIOD)


class TimeFeature(Transform):
    """Calendar parts of a timestamp (UTC): the value and its position on the
    cycle (sine, cosine), so 23h and 0h are neighbours. Missing times give zeros
    and a 0/1 missing column.
    """

    kind = "time"
    stateless = True

    def __init__(self, *, column: str | None = None,
                 parts: tuple[str, ...] = ("hour", "weekday")):
        super().__init__(column=column, parts=parts)

    def _analyze(self, engine=None, table=None):
        return {"parts": list(self.params["parts"]), "timezone": "UTC"}

    def _apply(self, state, col):
        if pa.types.is_null(col.type):
            col = pa.nulls(len(col), pa.timestamp("us", "UTC"))
        if not pa.types.is_timestamp(col.type):
            raise TypeError(f"column {self.column!r} is {col.type}, not a timestamp")
        miss = np.asarray(col.is_null())
        funcs = {"hour": pc.hour, "weekday": pc.day_of_week, "month": pc.month,
                 "day": pc.day}
        cols = []
        for part in state["parts"]:
            v = funcs[part](col).to_numpy(zero_copy_only=False)
            v = np.nan_to_num(np.asarray(v, dtype=np.float64), nan=0.0)
            if part in ("month", "day"):
                v = np.where(miss, 0.0, v - 1)  # a missing time: all zeros
            angle = 2 * np.pi * v / _PERIOD[part]
            cols += [v, np.where(miss, 0.0, _wave(np.sin(angle))),
                     np.where(miss, 0.0, _wave(np.cos(angle)))]
        cols.append(miss.astype(np.float64))
        return block(np.column_stack(cols))

    def _row_function(self, state):
        """Each part has few values (24 hours, 7 days...): their entries are
        made once, by the batch path's own formula on every value, and a row
        looks its parts up (a test holds both paths equal)."""
        tables = []
        for k, part in enumerate(state["parts"]):
            v = np.arange(_PERIOD[part], dtype=np.float64)
            angle = 2 * np.pi * v / _PERIOD[part]
            sin, cos = _wave(np.sin(angle)), _wave(np.cos(angle))
            tables.append([[(3 * k + j, float(x)) for j, x in enumerate(
                (v[i], sin[i], cos[i])) if x != 0] for i in range(len(v))])
        missing = ([len(state["parts"]) * 3], [1.0])
        get = {"hour": lambda t: t.hour, "weekday": lambda t: t.weekday(),
               "month": lambda t: t.month - 1, "day": lambda t: t.day - 1}
        getters = [get[p] for p in state["parts"]]
        slow = self._row

        def row(v):
            if v is None:
                return missing
            if not isinstance(v, datetime):
                return slow(state, v)
            idx: list[int] = []
            vals: list[float] = []
            for table, g in zip(tables, getters, strict=True):
                for j, x in table[g(v)]:
                    idx.append(j)
                    vals.append(x)
            return idx, vals
        return row

    def _row(self, state, v):
        if v is None:
            return [len(state["parts"]) * 3], [1.0]
        if not isinstance(v, datetime):
            return super()._row(state, v)
        parts = {"hour": v.hour, "weekday": v.weekday(), "month": v.month - 1,
                 "day": v.day - 1}
        vals = np.array([float(parts[p]) for p in state["parts"]])
        angle = 2 * np.pi * vals / np.array([float(_PERIOD[p])
                                             for p in state["parts"]])
        sin, cos = _wave(np.sin(angle)), _wave(np.cos(angle))
        out = []
        for k in range(len(vals)):
            out += [vals[k], sin[k], cos[k]]
        return entries(out + [0.0])

    def _names(self, state):
        out = []
        for part in state["parts"]:
            out += [f"{self.column}.{part}", f"{self.column}.{part}_sin",
                    f"{self.column}.{part}_cos"]
        return out + [f"{self.column}__missing"]
