"""Categorical transforms: one-hot, ordinal, frequency and target encodings, the
hashing trick and feature crosses.

Categories are compared as text, the way Arrow casts a value to a string
(``True`` -> ``"true"``, ``3`` -> ``"3"``); the analysis groups on the native
values in the engine and casts only the distinct values, so training, batch
scoring and one online row see the same category.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import ibis
import mmh3
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp

from ..errors import MlsdError
from ._base import (
    MISSING,
    OTHER,
    ROW,
    Target,
    Transform,
    block,
    entries,
    floats,
    one_hot,
    plain,
    row_float,
    row_text,
    texts,
)
from ._numeric import bin_edges, numeric_summary

TOP_NAMES = 10_000  # hashed columns named by their most frequent training value
NAME_CHARS = 24


def value_counts(engine, table, column: str, *, ranked: bool = False) -> pa.Table:
    """Training rows per value of ``column`` (``v``: the value as text, None for
    missing; ``n``), one engine group-by; ``ranked``: most frequent first (ties
    by native value), sorted by the engine."""
    t = table.select(v=table[column]).group_by("v").aggregate(n=ibis._.count())
    if ranked:
        t = t.order_by([ibis.desc("n"), "v"])
    out = engine.to_arrow(t)
    return out.set_column(0, "v", texts(out.column("v").combine_chunks()))


def ranked(counts: pa.Table) -> list[tuple[str, int]]:
    """(value, rows) of the present values, most frequent first (ties by value)."""
    pairs = [(v, n) for v, n in zip(counts.column("v").to_pylist(),
                                    counts.column("n").to_pylist(), strict=True)
             if v is not None]
    pairs.sort(key=lambda p: (-p[1], p[0]))
    return pairs


def _short(v: str) -> str:
    return v if len(v) <= NAME_CHARS else v[: NAME_CHARS - 1] + "…"


class OneHotFeature(Transform):
    """One column per frequent category, plus ``__other__`` and ``__missing__``.

    The categories are the ``max_categories`` most frequent training values seen
    at least ``min_frequency`` times (ties by value); unseen or rare values go to
    ``__other__``, so new categories at serving time never fail.
    """

    kind = "onehot"

    def __init__(self, *, column: str | None = None, max_categories: int = 20,
                 min_frequency: int = 1):
        super().__init__(column=column, max_categories=max_categories,
                         min_frequency=min_frequency)

    def _analyze(self, engine, table):
        p = self.params
        top = [v for v, n in ranked(value_counts(engine, table, self.column))
               if n >= p["min_frequency"]]
        return {"categories": top[: p["max_categories"]]}

    def _apply(self, state, col):
        cats = state["categories"]
        j = pc.index_in(texts(col), value_set=pa.array(cats, pa.string()))
        j = j.fill_null(len(cats)).to_numpy(zero_copy_only=False).astype(np.int64)
        j[np.asarray(col.is_null())] = len(cats) + 1
        return one_hot(len(col), j, len(cats) + 2)

    def _row_function(self, state):
        index = {c: i for i, c in enumerate(state["categories"])}
        other, missing = len(index), len(index) + 1

        def row(v):
            if v is None:
                return [missing], [1.0]
            return [index.get(v if v.__class__ is str else row_text(v), other)], [1.0]
        return row

    def _names(self, state):
        return [f"{self.column}={c}" for c in state["categories"]] + [
            f"{self.column}={OTHER}", f"{self.column}={MISSING}"]


class OrdinalFeature(Transform):
    """A category's position in an explicit ``order`` (``[free, pro, team]`` ->
    0, 1, 2); without one, the training values sorted. Values outside the order
    and missing values give -1."""

    kind = "ordinal"

    def __init__(self, *, column: str | None = None, order: list | None = None):
        super().__init__(column=column,
                         order=order)

    def _analyze(self, engine, table):
        order = self.params["order"]
        if order is None:
            order = sorted(v for v, _ in ranked(value_counts(engine, table,
                                                             self.column)))
        else:
            order = [row_text(v) for v in order]
        return {"order": order}

    def _apply(self, state, col):
        j = pc.index_in(texts(col), value_set=pa.array(state["order"], pa.string()))
        return block(j.fill_null(-1).to_numpy(zero_copy_only=False)
                     .astype(np.float64))

    def _row(self, state, v):
        index = self._memo(state, "index",
                             lambda s: {c: i for i, c in enumerate(s["order"])})
        return entries([float(index.get(row_text(v), -1)) if v is not None
                        else -1.0])

    def _names(self, state):
        return [f"{self.column}.ordinal"]


class FrequencyFeature(Transform):
    """A category's share of the training rows (missing values: the missing
    share; values never seen in training: 0). The ``max_categories`` most
    frequent values are kept by name; rarer ones share their mean share."""

    kind = "frequency"

    def __init__(self, *, column: str | None = None, max_categories: int = 100_000):
        super().__init__(column=column, max_categories=max_categories)

    def _analyze(self, engine, table):
        counts = value_counts(engine, table, self.column)
        total = int(pc.sum(counts.column("n")).as_py() or 0) or 1
        ranks = ranked(counts)
        keep, rest = ranks[: self.params["max_categories"]], ranks[
            self.params["max_categories"]:]
        missing = sum(n for v, n in zip(counts.column("v").to_pylist(),
                                        counts.column("n").to_pylist(), strict=True)
                      if v is None)
        return {"rows": total, "values": {v: n / total for v, n in keep},
                "rare": (sum(n for _, n in rest) / len(rest) / total) if rest else 0.0,
                "missing": missing / total}

    def _apply(self, state, col):
        vals = state["values"]
        keys = pa.array(list(vals), pa.string())
        j = pc.index_in(texts(col), value_set=keys).to_numpy(zero_copy_only=False)
        table = np.append(np.asarray(list(vals.values()), dtype=np.float64),
                          state["rare"] if state["rare"] else 0.0)
        j = np.where(np.isnan(j.astype(np.float64)), len(vals), j).astype(np.int64)
        out = table[j]
        out[np.asarray(col.is_null())] = state["missing"]
        return block(out)

    def _row(self, state, v):
        if v is None:
            return entries([state["missing"]])
        f = state["values"].get(row_text(v))
        return entries([f if f is not None else state["rare"] or 0.0])

    def _names(self, state):
        return [f"{self.column}.frequency"]


# -- target encoding --------------------------------------------------------------

KNUTH = 2654435761


MIX = 0x7FEB352D  # a multiplier of Wellons' lowbias32 (below 2**31: no overflow)


def _fold(r, folds: int, seed: int):
    # one formula for numpy arrays and Ibis expressions alike (int64 throughout)
    h = (r + seed) * KNUTH % 2**32
    h = h ^ (h >> 16)
    h = h * MIX % 2**32
    h = h ^ (h >> 15)
    return h % folds


def fold_of(rows: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """The out-of-fold group of each training row: its row number through a
    small integer hash (multiply, xor-shift, multiply, xor-shift, all within
    64-bit integers), so neighbouring rows fall in folds as if at random. The
    engine computes the very same function in SQL (:func:`_fold_expr`)."""
    return _fold(rows.astype(np.int64), folds, seed)


def _fold_expr(table, folds: int, seed: int):
    return _fold(table[ROW].cast("int64"), folds, seed)


def target_outputs(target: Target, classes: list) -> list[str]:
    if target.task == "regression":
        return ["mean"]
    if target.task == "binary":
        return [str(target.positive)]
    return [str(c) for c in classes]


class TargetFeature(Transform):
    """Target (mean) encoding: a category becomes the label's mean over the
    training rows that hold it, shrunk towards the overall mean by ``smoothing``
    pseudo-rows (``(sum + m prior) / (n + m)``). Binary: the positive rate;
    multiclass: one column per class; regression: the mean.

    It cannot leak the label: the training rows themselves get out-of-fold
    values (each row's value is learned from the other ``folds - 1`` folds, as
    scikit-learn's ``TargetEncoder.fit_transform`` does), while validation, test
    and serving rows get the full-training state. Values never seen in training
    get the prior; missing values are a category of their own.
    """

    kind = "target"
    supervised = True

    def __init__(self, *, column: str | None = None, folds: int = 5,
                 smoothing: float = 10.0, max_categories: int = 100_000,
                 seed: int = 0):
        super().__init__(column=column, folds=folds, smoothing=smoothing,
                         max_categories=max_categories, seed=seed)

    def _analyze(self, engine, table, target: Target):
        p = self.params
        if ROW not in table.columns:
            raise MlsdError(
                f"{self!r}: target encoding gives each training row an out-of-fold "
                f"value and needs the rows numbered in a {ROW!r} column (mlsd's "
                f"training tables have one; fit_transform() adds it)")
        t = table.filter(table[target.column].notnull())
        t = t.mutate(_fold=_fold_expr(t, p["folds"], p["seed"]))
        y = t[target.column]
        if target.task == "regression":
            classes: list = []
            outs = {"s0": y.cast("float64")}
        elif target.task == "binary":
            classes = [target.positive]
            outs = {"s0": (y == target.positive).cast("float64")}
        else:
            classes = sorted(engine.to_arrow(t.select(c=y).distinct())
                             .column("c").to_pylist(), key=lambda v: (str(type(v)), v))
            outs = {f"s{i}": (y == c).cast("float64") for i, c in enumerate(classes)}
        grouped = engine.to_arrow(
            t.select(v=t[self.column], f=t._fold, **outs)
            .group_by(["v", "f"]).aggregate(n=ibis._.count(),
                                           **{k: ibis._[k].sum() for k in outs}))
        values = texts(grouped.column("v").combine_chunks()).to_pylist()
        keys = [MISSING if v is None else v for v in values]
        folds = np.asarray(grouped.column("f").to_pylist(), dtype=np.int64)
        n = np.asarray(grouped.column("n").to_pylist(), dtype=np.float64)
        s = np.column_stack([np.asarray(grouped.column(k).to_pylist(),
                                        dtype=np.float64) for k in outs])
        # per category, per fold: rows and label sums (kept for the training rows)
        uniq = list(dict.fromkeys(keys))
        pos = {k: i for i, k in enumerate(uniq)}
        idx = np.fromiter((pos[k] for k in keys), dtype=np.int64, count=len(keys))
        F, K = p["folds"], s.shape[1]
        fold_n = np.zeros((F, len(uniq)))
        fold_s = np.zeros((F, len(uniq), K))
        np.add.at(fold_n, (folds, idx), n)
        np.add.at(fold_s, (folds, idx), s)
        tot_n, tot_s = fold_n.sum(0), fold_s.sum(0)
        N = max(tot_n.sum(), 1.0)
        prior = tot_s.sum(0) / N
        m = float(p["smoothing"])
        enc = (tot_s + m * prior) / (tot_n[:, None] + m)
        # keep the most frequent categories by name; the rest fall to the prior
        order = np.lexsort((np.asarray(uniq, dtype=object).astype(str), -tot_n))
        order = order[: p["max_categories"]]
        self.folds_ = {"keys": pa.array(uniq, pa.string()), "n": fold_n, "s": fold_s,
                       "tot_n": tot_n, "tot_s": tot_s, "N": N, "prior": prior}
        return {"classes": [plain(c) if isinstance(c, float) else c for c in classes],
                "outputs": target_outputs(target, classes),
                "prior": prior.tolist(),
                "values": {uniq[i]: enc[i].tolist() for i in order},
                "rows": int(N), "smoothing": m, "folds": F}

    def _lookup_matrix(self, state):
        def build(s):
            keys = pa.array(list(s["values"]), pa.string())
            mat = np.asarray(list(s["values"].values()), dtype=np.float64).reshape(
                len(s["values"]), len(s["prior"]))
            return keys, np.vstack([mat, np.asarray(s["prior"])[None, :]])
        return self._memo(state, "matrix", build)

    def _apply(self, state, col):
        keys, mat = self._lookup_matrix(state)
        j = pc.index_in(texts(col).fill_null(MISSING), value_set=keys)
        j = j.fill_null(len(keys)).to_numpy(zero_copy_only=False).astype(np.int64)
        return sp.csr_matrix(mat[j])

    def _apply_training(self, state, cols, table):
        if not hasattr(self, "folds_"):
            raise MlsdError(
                f"{self!r}: out-of-fold values exist only in the process that "
                f"analysed the training rows; a saved state encodes every row "
                f"with the full-training values (apply without training=True)")
        if ROW not in table.schema.names:
            raise MlsdError(f"{self!r}: the training rows lack their {ROW!r} "
                            f"column, which assigns each to a fold")
        f = self.folds_
        rows = np.asarray(table.column(ROW).to_numpy(), dtype=np.int64)
        fold = fold_of(rows, state["folds"], self.params["seed"])
        j = pc.index_in(texts(cols[0]).fill_null(MISSING), value_set=f["keys"])
        known = np.asarray(j.is_valid())
        j = j.fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
        m = state["smoothing"]
        # the other folds: everything minus this row's fold
        n_out = f["tot_n"][j] - f["n"][fold, j]
        s_out = f["tot_s"][j] - f["s"][fold, j]
        fold_n, fold_s = f["n"].sum(1), f["s"].sum(1)  # rows, sums per fold
        prior_out = (f["tot_s"].sum(0)[None, :] - fold_s[fold]) / np.maximum(
            f["N"] - fold_n[fold], 1.0)[:, None]
        out = (s_out + m * prior_out) / (n_out[:, None] + m)
        out[~known] = prior_out[~known]
        return sp.csr_matrix(out)

    def _row(self, state, v):
        key = MISSING if v is None else row_text(v)
        vals = state["values"].get(key)
        return entries(vals if vals is not None else state["prior"])

    def _names(self, state):
        outs = state["outputs"]
        if len(outs) == 1:
            return [f"{self.column}.target"]
        return [f"{self.column}.target={o}" for o in outs]


# -- the hashing trick --------------------------------------------------------------

def bucket_of(values: list[str], buckets: int, seed: int) -> np.ndarray:
    return np.fromiter((mmh3.hash(v, seed, signed=False) % buckets for v in values),
                       dtype=np.int64, count=len(values))


def hash_report(values: list[str], rows: list[int], buckets: int,
                b: np.ndarray) -> dict[str, Any]:
    """How the training values fall into buckets (``b``: each value's): the
    collision rate (share of distinct values that share a bucket with another;
    and of rows, or occurrences) and, per bucket, its most frequent value (to
    name the column). ``values`` come most frequent first."""
    if not values:
        return {"distinct": 0, "buckets_used": 0, "collision_rate": 0.0,
                "rows_colliding": 0.0, "names": {}}
    n = np.asarray(rows, dtype=np.int64)
    per_bucket = np.bincount(b, minlength=buckets)
    shared = per_bucket[b] > 1
    # the first value met in a bucket is its most frequent (values are ranked)
    used, first = np.unique(b, return_index=True)
    top = np.argsort(first, kind="stable")[:TOP_NAMES]
    names = {str(int(used[k])): [values[first[k]], int(per_bucket[used[k]])]
             for k in top}
    return {"distinct": len(values), "buckets_used": int(len(used)),
            "collision_rate": round(float(shared.mean()), 6),
            "rows_colliding": round(float(n[shared].sum() / max(n.sum(), 1)), 6),
            "names": names}


def hashed_name(prefix: str, i: int, names: Mapping[str, list], mark: str = "#h"
                ) -> str:
    """Column ``i`` of a hashed block, named by its most frequent training
    value and how many more share it: ``author_id#h12[alice,+2]``."""
    top = names.get(str(i))
    if not top:
        return f"{prefix}{mark}{i}"
    more = f",+{top[1] - 1}" if top[1] > 1 else ""
    return f"{prefix}{mark}{i}[{_short(str(top[0]))}{more}]"


class HashingFeature(Transform):
    """The hashing trick: a value's column is its seeded MurmurHash3 modulo
    ``buckets`` (collisions are the price of a bounded width and no vocabulary).
    Missing values get their own last column. The analysis measures the
    collision rate on the training values and names each bucket by its most
    frequent training value (``author_id#h12[alice,+2]``: alice and two more).
    """

    kind = "hashing"
    stateless = True

    def __init__(self, *, column: str | None = None, buckets: int = 1024,
                 seed: int = 0):
        super().__init__(column=column, buckets=buckets, seed=seed)

    def _analyze(self, engine=None, table=None):
        p = self.params
        state = {"buckets": p["buckets"], "seed": p["seed"],
                 "hash": "murmurhash3_x86_32"}
        if engine is not None:
            counts = value_counts(engine, table, self.column, ranked=True)
            counts = counts.filter(pc.is_valid(counts.column("v")))
            values = counts.column("v").to_pylist()
            state["report"] = hash_report(
                values, counts.column("n").to_pylist(), p["buckets"],
                bucket_of(values, p["buckets"], p["seed"]))
        return state

    def _apply(self, state, col):
        b, seed = state["buckets"], state["seed"]
        enc = pc.dictionary_encode(texts(col))
        codes = enc.indices.to_numpy(zero_copy_only=False)
        codes = np.where(np.asarray(enc.indices.is_null()), -1, codes).astype(np.int64)
        lookup = np.append(bucket_of(enc.dictionary.to_pylist(), b, seed), b)
        return one_hot(len(codes), lookup[codes], b + 1)  # -1: the missing column

    def _row_function(self, state):
        b, seed, h = state["buckets"], state["seed"], mmh3.hash

        def row(v):
            if v is None:
                return [b], [1.0]
            return [h(v if v.__class__ is str else row_text(v), seed,
                      signed=False) % b], [1.0]
        return row

    def _names(self, state):
        names = (state.get("report") or {}).get("names", {})
        return [hashed_name(self.column, i, names) for i in range(state["buckets"])] \
            + [f"{self.column}={MISSING}"]

    def notes(self):
        r = self.check_fitted().get("report")
        return {k: v for k, v in r.items() if k != "names"} if r else {}


# -- crosses -----------------------------------------------------------------------

SEP = "\x1f"  # joins the parts of a crossed value (a control character)
NUMERIC_TYPES = ("int", "float", "decimal", "bool")


class CrossFeature(Transform):
    """A feature cross of several columns.

    * numbers x numbers (no ``bins``): the product of the inputs, each imputed
      with its training median and standardised (one column);
    * otherwise each numeric input is first bucketised by its training
      quantiles (``bins``), and the combination of the inputs' values is hashed
      into ``buckets`` columns, like :class:`HashingFeature` (categorical x
      categorical, bucketised numeric x categorical). A missing value is a
      value of its own in the combination.
    """

    kind = "cross"
    multi = True

    def __init__(self, *, columns: list[str] | None = None, buckets: int = 4096,
                 bins: int | None = None, seed: int = 0):
        super().__init__(columns=columns, buckets=buckets, bins=bins, seed=seed)

    def _analyze(self, engine, table):
        p = self.params
        schema = table.schema()
        numeric = [any(str(schema[c]).lower().startswith(t) for t in NUMERIC_TYPES)
                   for c in self.columns]
        if all(numeric) and p["bins"] is None:
            inputs = []
            for c in self.columns:
                s = numeric_summary(engine, table, c)
                inputs.append({"kind": "standard",
                               "fill": s["median"] if s["median"] is not None else 0.0,
                               "mean": s["mean"] or 0.0, "std": s["std"] or 1.0})
            return {"mode": "product", "inputs": inputs}
        inputs = []
        for c, is_num in zip(self.columns, numeric, strict=True):
            if is_num:
                inputs.append({"kind": "bins", "edges": bin_edges(
                    engine, table, c, strategy="quantile", bins=p["bins"] or 10)})
            else:
                inputs.append({"kind": "category"})
        state = {"mode": "hash", "inputs": inputs, "buckets": p["buckets"],
                 "seed": p["seed"]}
        # the training combinations, counted in the engine, for the report
        combos = engine.to_arrow(
            table.select(**{f"c{i}": table[c] for i, c in enumerate(self.columns)})
            .group_by([f"c{i}" for i in range(len(self.columns))])
            .aggregate(n=ibis._.count()))
        keys = self._keys(state, [combos.column(i).combine_chunks()
                                  for i in range(len(self.columns))]).to_pylist()
        n = combos.column("n").to_pylist()
        agg: dict[str, int] = {}
        for k, c in zip(keys, n, strict=True):
            agg[k] = agg.get(k, 0) + c
        pairs = sorted(agg.items(), key=lambda kv: (-kv[1], kv[0]))
        keys = [k for k, _ in pairs]
        report = hash_report(keys, [c for _, c in pairs], p["buckets"],
                             bucket_of(keys, p["buckets"], p["seed"]))
        report["names"] = {b: [v[0].replace(SEP, "&"), v[1]]
                           for b, v in report["names"].items()}
        state["report"] = report
        return state

    def _keys(self, state, cols: list[pa.Array]) -> pa.Array:
        parts = []
        for col, spec in zip(cols, state["inputs"], strict=True):
            if spec["kind"] == "bins":
                x = floats(col)
                j = np.searchsorted(np.asarray(spec["edges"], dtype=np.float64), x,
                                    side="right")
                txt = pc.binary_join_element_wise(
                    "b", pa.array(j.astype(str)), "")
                txt = pc.if_else(pa.array(np.isnan(x)), MISSING, txt)
            else:
                txt = texts(col).fill_null(MISSING) if not pa.types.is_null(
                    col.type) else pa.array([MISSING] * len(col), pa.string())
            parts.append(txt)
        return pc.binary_join_element_wise(*parts, SEP)

    def _row_key(self, state, values) -> str:
        import bisect

        parts = []
        for v, spec in zip(values, state["inputs"], strict=True):
            if spec["kind"] == "bins":
                x = row_float(v)
                parts.append(MISSING if x != x else
                             f"b{bisect.bisect_right(spec['edges'], x)}")
            else:
                parts.append(MISSING if v is None else row_text(v))
        return SEP.join(parts)

    def _product(self, state, xs: list[np.ndarray]) -> np.ndarray:
        out = np.ones(len(xs[0]))
        with np.errstate(over="ignore", invalid="ignore"):  # huge values: inf
            for x, s in zip(xs, state["inputs"], strict=True):
                out = out * ((np.where(np.isnan(x), s["fill"], x) - s["mean"])
                             / (s["std"] or 1.0))
        return out

    def _apply(self, state, *cols):
        if state["mode"] == "product":
            return block(self._product(state, [floats(c) for c in cols]))
        enc = pc.dictionary_encode(self._keys(state, list(cols)))
        codes = enc.indices.to_numpy(zero_copy_only=False).astype(np.int64)
        lookup = bucket_of(enc.dictionary.to_pylist(), state["buckets"],
                           state["seed"])
        return one_hot(len(codes), lookup[codes], state["buckets"])

    def _row(self, state, *values):
        if state["mode"] == "product":
            return entries(self._product(state, [np.array([row_float(v)])
                                                 for v in values]))
        key = self._row_key(state, values)
        return [mmh3.hash(key, state["seed"], signed=False) % state["buckets"]], [1.0]

    def _names(self, state):
        if state["mode"] == "product":
            return [self.label]
        names = state["report"]["names"]
        return [hashed_name(self.label, i, names) for i in range(state["buckets"])]

    def notes(self):
        r = self.check_fitted().get("report")
        return {k: v for k, v in r.items() if k != "names"} if r else {}

