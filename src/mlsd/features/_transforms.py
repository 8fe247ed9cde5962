"""Feature transforms: ``analyze`` on the training split, a pure ``apply``.

Every transform turns one raw column into one block of model inputs (a SciPy CSR
matrix, since hashed text and ids are sparse). ``analyze`` computes the learned
state with engine aggregates over the training rows only; ``apply`` is a pure
function of that state and an Arrow table, used alike for batch training, batch
scoring and one online row. State is plain JSON.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import ibis
import mmh3
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp
from sklearn.feature_extraction.text import HashingVectorizer

from ..errors import NotFittedError

OTHER, MISSING = "__other__", "__missing__"


def _column(table: pa.Table | pa.RecordBatch, name: str) -> pa.Array:
    if name not in table.schema.names:
        raise KeyError(f"input has no column {name!r}")
    col = table.column(name)
    return col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col


def _dense(block: np.ndarray) -> sp.csr_matrix:
    return sp.csr_matrix(block.reshape(block.shape[0], -1))


def _float(x: Any) -> float | None:
    if x is None:
        return None
    x = float(x)
    return None if math.isnan(x) else x


class Transform(ABC):
    """Base of feature transforms (template method: ``analyze`` -> ``_analyze``).

    Parameters are stored as given; ``state_`` is set by :meth:`analyze` or
    :meth:`from_state`.
    """

    kind: ClassVar[str] = ""
    stateless: ClassVar[bool] = False

    def __init__(self, *, column: str, **params: Any):
        self.column = column
        self.params = params

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"{type(self).__name__}(column={self.column!r}, {args})"

    def analyze(self, engine, table: ibis.Table) -> Transform:
        """Learn the state from the training rows (an Ibis table)."""
        self.state_ = self._analyze(engine, table)
        return self

    def _analyze(self, engine, table: ibis.Table) -> dict[str, Any]:
        return {}

    def check_fitted(self) -> dict[str, Any]:
        if not hasattr(self, "state_"):
            raise NotFittedError(
                f"{self!r} has no state: call analyze() (or from_state()) first")
        return self.state_

    def apply(self, table: pa.Table | pa.RecordBatch) -> sp.csr_matrix:
        """The feature block for every row of ``table`` (pure function of state)."""
        state = self.check_fitted()
        return self._apply(state, _column(table, self.column))

    @abstractmethod
    def _apply(self, state: dict, col: pa.Array) -> sp.csr_matrix:
        """The block for one column, given the state."""

    @abstractmethod
    def _names(self, state: dict) -> list[str]:
        """Output column names, given the state."""

    def names(self) -> list[str]:
        """Names of the output columns, in order."""
        return self._names(self.check_fitted())

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "column": self.column, "params": self.params,
                "state": self.check_fitted()}


class NumericFeature(Transform):
    """Impute (median, mean, zero or none), then scale (standard, minmax, none).

    When training rows have missing values and ``missing_indicator`` is set, a
    0/1 column marks them: missingness often carries signal (missing not at random).
    """

    kind = "numeric"

    def __init__(self, *, column: str, impute: str = "median",
                 scale: str = "standard", missing_indicator: bool = True):
        super().__init__(column=column, impute=impute, scale=scale,
                         missing_indicator=missing_indicator)

    def _analyze(self, engine, table):
        c = table[self.column].cast("float64")
        s = engine.aggregate(
            table, n=table.count(), missing=c.isnull().sum(), mean=c.mean(),
            std=c.std(how="pop"), median=c.median(), min=c.min(), max=c.max())
        n_missing = int(s["missing"] or 0)
        fill = {"median": s["median"], "mean": s["mean"], "zero": 0.0,
                "none": None}[self.params["impute"]]
        return {
            "rows": int(s["n"]),
            "missing": n_missing,
            "fill": _float(fill) if fill is not None else None,
            "mean": _float(s["mean"]),
            "std": _float(s["std"]),
            "min": _float(s["min"]),
            "max": _float(s["max"]),
            "indicator": bool(self.params["missing_indicator"] and n_missing > 0),
        }

    def _apply(self, state, col):
        x = pc.cast(col, pa.float64()).to_numpy(zero_copy_only=False)
        x = np.array(x, dtype=np.float64)
        miss = np.isnan(x)
        fill = state["fill"]
        x[miss] = np.nan if fill is None else fill
        scale = self.params["scale"]
        if scale == "standard" and state["mean"] is not None:
            std = state["std"] or 1.0
            x = (x - state["mean"]) / std
        elif scale == "minmax" and state["min"] is not None:
            span = (state["max"] - state["min"]) or 1.0
            x = (x - state["min"]) / span
        cols = [x]
        if state["indicator"]:
            cols.append(miss.astype(np.float64))
        return sp.csr_matrix(np.column_stack(cols))

    def _names(self, state):
        out = [self.column]
        if state["indicator"]:
            out.append(f"{self.column}__missing")
        return out


class OneHotFeature(Transform):
    """One column per frequent category, plus ``__other__`` and ``__missing__``.

    The categories are the ``max_categories`` most frequent training values seen
    at least ``min_frequency`` times (ties by value); unseen or rare values go to
    ``__other__``, so new categories at serving time never fail.
    """

    kind = "onehot"

    def __init__(self, *, column: str, max_categories: int = 20,
                 min_frequency: int = 1):
        super().__init__(column=column, max_categories=max_categories,
                         min_frequency=min_frequency)

    def _analyze(self, engine, table):
        c = table[self.column].cast("string")
        present = table.select(value=c).filter(ibis._.value.notnull())
        counts = engine.to_arrow(
            present.group_by("value").aggregate(n=ibis._.count())
        ).to_pylist()
        counts = [r for r in counts if r["n"] >= self.params["min_frequency"]]
        counts.sort(key=lambda r: (-r["n"], r["value"]))
        cats = [r["value"] for r in counts[: self.params["max_categories"]]]
        return {"categories": cats}

    def _apply(self, state, col):
        cats = state["categories"]
        index = {c: i for i, c in enumerate(cats)}
        values = pc.cast(col, pa.string()).to_pylist()
        other, missing = len(cats), len(cats) + 1
        j = np.fromiter(
            (missing if v is None else index.get(v, other) for v in values),
            dtype=np.int64, count=len(values))
        n = len(values)
        return sp.csr_matrix((np.ones(n), (np.arange(n), j)), shape=(n, len(cats) + 2))

    def _names(self, state):
        return [f"{self.column}={c}" for c in state["categories"]] + [
            f"{self.column}={OTHER}", f"{self.column}={MISSING}"]


def _unique_codes(col: pa.Array) -> tuple[list, np.ndarray]:
    enc = pc.dictionary_encode(pc.cast(col, pa.string()))
    codes = enc.indices.to_numpy(zero_copy_only=False)
    codes = np.where(np.asarray(enc.indices.is_null()), -1, codes).astype(np.int64)
    return enc.dictionary.to_pylist(), codes


class HashingFeature(Transform):
    """The hashing trick: a value's column is its seeded MurmurHash3 modulo
    ``buckets`` (collisions are the price of a bounded width and no vocabulary).
    Missing values get their own last column.
    """

    kind = "hashing"
    stateless = True

    def __init__(self, *, column: str, buckets: int = 1024, seed: int = 0):
        super().__init__(column=column, buckets=buckets, seed=seed)

    def _analyze(self, engine, table):
        return {"buckets": self.params["buckets"], "seed": self.params["seed"],
                "hash": "murmurhash3_x86_32"}

    def _apply(self, state, col):
        b, seed = state["buckets"], state["seed"]
        uniq, codes = _unique_codes(col)
        bucket_of = np.array([mmh3.hash(v, seed, signed=False) % b for v in uniq]
                             + [b], dtype=np.int64)
        j = bucket_of[codes]  # code -1 picks the last entry: the missing column
        n = len(codes)
        return sp.csr_matrix((np.ones(n), (np.arange(n), j)), shape=(n, b + 1))

    def _names(self, state):
        return [f"{self.column}#h{i}" for i in range(state["buckets"])] + [
            f"{self.column}={MISSING}"]


class HashedNgramsFeature(Transform):
    """Word n-gram counts hashed into ``buckets`` columns.

    Uses scikit-learn's ``HashingVectorizer`` (MurmurHash3, stable across
    processes; no vocabulary to learn, so nothing can leak from test text).
    """

    kind = "hashed_ngrams"
    stateless = True

    def __init__(self, *, column: str, buckets: int = 4096,
                 ngram_range: tuple[int, int] = (1, 2)):
        super().__init__(column=column, buckets=buckets,
                         ngram_range=list(ngram_range))

    def _analyze(self, engine, table):
        return {"buckets": self.params["buckets"],
                "ngram_range": list(self.params["ngram_range"]),
                "lowercase": True, "hash": "sklearn HashingVectorizer"}

    def _vectorizer(self, state) -> HashingVectorizer:
        return HashingVectorizer(
            n_features=state["buckets"], ngram_range=tuple(state["ngram_range"]),
            lowercase=state["lowercase"], alternate_sign=False, norm=None,
            dtype=np.float64)

    def _apply(self, state, col):
        texts = ["" if v is None else v for v in pc.cast(col, pa.string()).to_pylist()]
        return self._vectorizer(state).transform(texts).tocsr()

    def _names(self, state):
        return [f"{self.column}~ng{i}" for i in range(state["buckets"])]


_PERIOD = {"hour": 24, "weekday": 7, "month": 12, "day": 31}


class TimeFeature(Transform):
    """Calendar parts of a timestamp (UTC): the value and its position on the
    cycle (sine, cosine), so 23h and 0h are neighbours. Missing times give zeros
    and a 0/1 missing column.
    """

    kind = "time"
    stateless = True

    def __init__(self, *, column: str, parts: tuple[str, ...] = ("hour", "weekday")):
        super().__init__(column=column, parts=list(parts))

    def _analyze(self, engine, table):
        return {"parts": list(self.params["parts"]), "timezone": "UTC"}

    def _apply(self, state, col):
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
                v = v - 1
            angle = 2 * np.pi * v / _PERIOD[part]
            cols += [v, np.where(miss, 0.0, np.sin(angle)),
                     np.where(miss, 0.0, np.cos(angle))]
        cols.append(miss.astype(np.float64))
        return sp.csr_matrix(np.column_stack(cols))

    def _names(self, state):
        out = []
        for part in state["parts"]:
            out += [f"{self.column}.{part}", f"{self.column}.{part}_sin",
                    f"{self.column}.{part}_cos"]
        return out + [f"{self.column}__missing"]


TRANSFORMS: dict[str, type[Transform]] = {
    t.kind: t for t in (NumericFeature, OneHotFeature, HashingFeature,
                        HashedNgramsFeature, TimeFeature)
}
