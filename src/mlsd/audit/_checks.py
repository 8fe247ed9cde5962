"""The leakage and generalisation checks of a train/test pair.

Each check returns findings with numbers a reader can verify (``evidence``,
always with the rows it used). Severity follows one rule, with the thresholds
in :data:`THRESHOLDS` (documented in docs/audit.md):

* high: the leak almost surely inflates the test metric;
* medium: likely, and worth a human look;
* low: worth knowing, but no leak (shift, imbalance, declared shared entities).

Thresholds are on effect sizes (shares, AUC, PSI, KS, Jensen-Shannon), never on
p-values, which call everything significant at a million rows.
"""

from __future__ import annotations

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from scipy.spatial.distance import jensenshannon
from scipy.stats import ks_2samp, spearmanr

from ._data import Pair, codes, codes_of, numeric
from ._leakage import Finding

THRESHOLDS = {
    # share of test rows with an exact copy in train: high at or above this,
    # and at least twice the share of train rows with a copy within train
    "duplicates_share": 0.01,
    # ... and at least this many test rows, or this share: one identical row in
    # a few hundred is what chance gives measurements of low precision (iris
    # has a duplicate flower)
    "duplicates_min_rows": 3,
    "duplicates_small_share": 0.1,
    # with many copies within train (survey answers, counts), test rows with a
    # copy in train in this excess over the within-train share
    "duplicates_excess": 0.05,
    # the same, after normalising (rounded numbers, folded text): medium
    "near_duplicates_share": 0.01,
    # share of test rows whose group key value is also in train: high
    "group_overlap_share": 0.01,
    # an undeclared entity (named like one): at least this many values, at most
    # this many rows each on average, in both splits for 5% of test rows: medium
    "undeclared_group_min": 10,
    "undeclared_group_max_rows": 50,
    # an ID-like column (text with many distinct values, or an integer with at
    # least this share of distinct values over a dense range) ...
    "id_distinct_ratio": 0.5,
    # ... whose values recur in this share of test rows, or that predicts the
    # label (one-feature AUC or R2 at least this): medium
    "id_recurrence_share": 0.05,
    "id_power": 0.75,
    # share of test rows older than the newest train row: high
    "time_overlap_share": 0.05,
    # share of rows where a timestamp feature is after the prediction time: high
    "future_feature_share": 0.01,
    # a model on one feature alone (3-fold CV on train): AUC (classification)
    # or R2 (regression) at least this: high
    "single_feature_auc": 0.99,
    "single_feature_r2": 0.95,
    # the target explains a feature almost wholly (correlation ratio for a
    # class label, |Spearman| for a number): high
    "target_derived_eta2": 0.95,
    "target_derived_spearman": 0.99,
    # ... or, together, |Spearman| and one-feature R2 at least these: medium
    "target_derived_spearman_medium": 0.97,
    "target_derived_r2_medium": 0.8,
    # a column present (not missing, not its default value) almost only in one
    # class, or only above or below most targets: balanced accuracy of "has a
    # value" as a guess of the class (or AUC for a number): high at or above
    # the first, medium at or above the second
    "outcome_signature_high": 0.95,
    "outcome_signature_medium": 0.9,
    # ... and this unlikely by chance (p-value, divided by the columns and
    # classes tried): what stands in for a minimum row count
    "outcome_signature_alpha": 0.01,
    # unseen categories at test time, missing-rate change, shift: low
    "unseen_share": 0.01,
    "missing_shift": 0.05,
    "psi": 0.2,
    "ks": 0.1,
    "js": 0.1,
    # minority class share below this (for two classes; times 2/k for k): low
    "imbalance_share": 0.1,
}
SAMPLE_ROWS = 100_000  # rows of train the model-fitting checks use
SHIFT_SAMPLE_ROWS = 200_000  # rows per split for the KS statistic
EPS = 1e-4


def _finding(check: str, severity: str, columns: list[str], message: str,
             **evidence) -> Finding:
    return Finding(check=check, severity=severity, columns=columns,
                   message=message, evidence=evidence)


# -- duplicates -------------------------------------------------------------

def _normalised(arr: pa.ChunkedArray) -> pa.Array:
    """A column as the near-duplicate check compares it: numbers with 3
    significant digits, text lower-cased with runs of anything but letters and
    digits folded to one space, times cut to the minute."""
    arr = arr.combine_chunks()
    t = arr.type
    if pa.types.is_floating(t) or pa.types.is_integer(t):
        x = numeric(arr)
        with np.errstate(divide="ignore", invalid="ignore"):
            mag = np.where(x == 0, 1.0, 10.0 ** (2 - np.floor(np.log10(np.abs(x)))))
            out = np.round(x * mag) / mag
        return pa.array(out, mask=~np.isfinite(x))
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        folded = pc.replace_substring_regex(pc.utf8_lower(arr), "[^a-z0-9]+", " ")
        return pc.utf8_trim_whitespace(folded)
    if pa.types.is_timestamp(t):
        return pc.floor_temporal(arr, unit="minute")
    return arr


def _hashes(table: pa.Table, columns: list[str], *, normalise: bool) -> np.ndarray:
    """One 64-bit hash per row over ``columns`` (DuckDB's hash, vectorised),
    of the values as they are or normalised (see :func:`_normalised`)."""
    data = table.select(columns)
    if normalise:
        data = pa.table([_normalised(data.column(c)) for c in columns],
                        names=[f"c{i}" for i in range(len(columns))])
    else:
        data = data.rename_columns([f"c{i}" for i in range(len(columns))])
    con = duckdb.connect()
    try:
        con.execute("SET threads = 2")
        con.register("t", data)
        names = ", ".join(f"c{i}" for i in range(len(columns)))
        out = con.sql(f"SELECT hash({names}) AS h FROM t").to_arrow_table().column("h")
    finally:
        con.close()
    return np.asarray(out.to_numpy(), dtype=np.uint64)


def _within_share(h: np.ndarray) -> float:
    """Share of rows that have a copy elsewhere in the same split."""
    if len(h) == 0:
        return 0.0
    _, inverse, counts = np.unique(h, return_inverse=True, return_counts=True)
    return float((counts[inverse] > 1).mean())


def duplicates(pair: Pair) -> list[Finding]:
    """Exact and near-duplicate rows (on the features) across the splits."""
    cols = pair.features
    if not cols:
        return []
    out = []
    exact_test = None
    for normalise in (False, True):
        h_train = _hashes(pair.train, cols, normalise=normalise)
        h_test = _hashes(pair.test, cols, normalise=normalise)
        in_train = np.isin(h_test, h_train)
        if not normalise:
            exact_test = in_train
            share = float(in_train.mean())
        else:  # near duplicates: normalised copies that are not exact copies
            share = float((in_train & ~exact_test).mean())
        within = _within_share(h_train)
        key = "near_duplicates_share" if normalise else "duplicates_share"
        n = int(round(share * len(h_test)))
        above_chance = share >= 2 * within or \
            share - within >= THRESHOLDS["duplicates_excess"]
        enough = n >= THRESHOLDS["duplicates_min_rows"] or \
            share >= THRESHOLDS["duplicates_small_share"]
        if share < THRESHOLDS[key] or not above_chance or not enough:
            continue
        evidence = {"test_rows": len(h_test), "test_rows_with_copy_in_train": n,
                    "share": round(share, 4),
                    "train_rows_with_copy_within_train_share": round(within, 4),
                    "rows_used": pair.train.num_rows + pair.test.num_rows}
        if normalise:
            out.append(_finding(
                "near_duplicates_across_splits", "medium", cols,
                f"{n} test rows ({share:.1%}) equal a training row once numbers are "
                f"rounded to 3 digits and text folded, though not exactly: likely "
                f"the same records, so the test metric may be inflated. Look at "
                f"them, then deduplicate before splitting.", **evidence))
        else:
            out.append(_finding(
                "duplicates_across_splits", "high", cols,
                f"{n} test rows ({share:.1%}) are exact copies of training rows on "
                f"every feature (against {within:.1%} within train): they are "
                f"scored on memory. Deduplicate before splitting.", **evidence))
    return out


# -- near-duplicate free text (MinHash) --------------------------------------

MINHASH_PERMUTATIONS = 64
MINHASH_BANDS = 16  # 16 bands of 4: pairs above ~0.7 Jaccard meet in some band
MINHASH_JACCARD = 0.8  # estimated Jaccard of 5-byte shingles
TEXT_SAMPLE = {"train": 50_000, "test": 10_000}


def _signatures(texts: list[str | None], seed: int) -> np.ndarray:
    """MinHash signatures of the 5-byte shingles of folded text (lower-cased,
    runs of whitespace as one space), one row per text; a missing or short text
    gets a random signature that matches nothing.

    Written by hand, vectorised: all texts go into one byte buffer, every
    5-byte window gets a 64-bit hash at once, each permutation is a
    multiply-shift of those hashes, and ``np.minimum.reduceat`` takes each
    text's minimum; texts are processed a few thousand at a time to bound
    memory. A MinHash library would loop in Python per text.
    """
    rng = np.random.default_rng(seed)
    a = rng.integers(1, 2**63, MINHASH_PERMUTATIONS, dtype=np.uint64) | np.uint64(1)
    b = rng.integers(0, 2**63, MINHASH_PERMUTATIONS, dtype=np.uint64)
    out = rng.integers(0, 2**32, (len(texts), MINHASH_PERMUTATIONS),
                       dtype=np.uint64)  # short texts keep these: no match
    folded = [" ".join((t or "").lower().split()).encode() for t in texts]
    for start in range(0, len(folded), 2_000):
        chunk = folded[start:start + 2_000]
        long_enough = [i for i, t in enumerate(chunk) if len(t) >= 10]
        if not long_enough:
            continue
        docs = [chunk[i] for i in long_enough]
        lengths = np.array([len(t) for t in docs], dtype=np.int64)
        data = np.frombuffer(b"".join(docs), dtype=np.uint8).astype(np.uint64)
        h = np.zeros(len(data) - 4, dtype=np.uint64)
        for k in range(5):  # a polynomial hash of each 5-byte window
            h = h * np.uint64(0x100000001B3) + data[k:len(data) - 4 + k]
        h ^= h >> np.uint64(29)
        h *= np.uint64(0xBF58476D1CE4E5B9)
        h ^= h >> np.uint64(32)
        # keep the windows that lie inside one text
        ends = np.cumsum(lengths)
        starts = ends - lengths
        doc_of = np.repeat(np.arange(len(docs)), lengths)[:len(h)]
        inside = np.arange(len(h)) + 5 <= ends[doc_of]
        h = h[inside]
        first = np.searchsorted(np.flatnonzero(inside), starts)
        with np.errstate(over="ignore"):
            for j in range(MINHASH_PERMUTATIONS):
                v = (h * a[j] + b[j]) >> np.uint64(32)
                out[start + np.array(long_enough), j] = np.minimum.reduceat(v, first)
    return out


def _band_keys(sig: np.ndarray) -> np.ndarray:
    rows = MINHASH_PERMUTATIONS // MINHASH_BANDS
    bands = sig.reshape(len(sig), MINHASH_BANDS, rows)
    keys = np.zeros((len(sig), MINHASH_BANDS), dtype=np.uint64)
    for r in range(rows):  # a cheap mix of the band's values into one key
        keys = keys * np.uint64(1_000_003) ^ bands[:, :, r]
    return keys


def _near_share(sig_a: np.ndarray, sig_b: np.ndarray, *, same: bool) -> np.ndarray:
    """For each row of ``sig_b``: whether some row of ``sig_a`` (another one,
    when ``same``) has an estimated Jaccard of at least MINHASH_JACCARD.

    Banded LSH, vectorised: per band, the rows of ``sig_a`` sorted by band key;
    each row of ``sig_b`` is compared with the first two rows sharing its key
    (two, so that a row of the same set can skip itself)."""
    keys_a, keys_b = _band_keys(sig_a), _band_keys(sig_b)
    out = np.zeros(len(sig_b), dtype=bool)
    own = np.arange(len(sig_b))
    for band in range(MINHASH_BANDS):
        order = np.argsort(keys_a[:, band], kind="stable")
        sorted_keys = keys_a[order, band]
        pos = np.searchsorted(sorted_keys, keys_b[:, band])
        for offset in (0, 1):
            at = np.minimum(pos + offset, len(order) - 1)
            cand = order[at]
            todo = (pos + offset < len(order)) & (sorted_keys[at] == keys_b[:, band])
            if same:
                todo &= cand != own
            todo &= ~out
            if todo.any():
                rows = np.flatnonzero(todo)
                est = np.mean(sig_a[cand[rows]] == sig_b[rows], axis=1)
                out[rows[est >= MINHASH_JACCARD]] = True
    return out


def text_near_duplicates(pair: Pair) -> list[Finding]:
    """Free text in test that nearly copies a training text (MinHash over
    character shingles), beyond what train holds within itself."""
    out = []
    for col in pair.features:
        if pair.kinds[col] != "text":
            continue
        rng = np.random.default_rng(pair.seed)
        texts = {}
        for name, table in (("train", pair.train), ("test", pair.test)):
            n = table.num_rows
            idx = np.sort(rng.choice(n, TEXT_SAMPLE[name], replace=False)) if \
                n > TEXT_SAMPLE[name] else np.arange(n)
            texts[name] = table.column(col).take(pa.array(idx)).to_pylist()
        sig_train = _signatures(texts["train"], pair.seed)
        sig_test = _signatures(texts["test"], pair.seed)
        # a text with a (near) copy, in test against train, and within train:
        # templates and reposts recur within train too, so only the excess
        # across the split counts
        near = _near_share(sig_train, sig_test, same=False)
        share = float(near.mean())
        within = float(_near_share(sig_train, sig_train, same=True).mean())
        if share - within < THRESHOLDS["near_duplicates_share"]:
            continue
        out.append(_finding(
            "near_duplicates_across_splits", "medium", [col],
            f"{int(near.sum())} sampled test rows ({share:.1%}) have a {col} that "
            f"copies or nearly copies a training text (MinHash Jaccard at least "
            f"{MINHASH_JACCARD} over 5-byte shingles), against {within:.1%} of "
            f"train rows within train: reposts or templates split across train "
            f"and test. Group them (say, by a cluster id) before splitting.",
            test_rows_near_copy_share=round(share, 4),
            train_rows_near_copy_within_train_share=round(within, 4),
            jaccard=MINHASH_JACCARD, rows_used=len(sig_train) + len(sig_test)))
    return out


# -- entities ---------------------------------------------------------------

def _recurrence(pair: Pair, col: str) -> tuple[float, int, int]:
    """Share of test rows (with a value) whose ``col`` value is in train;
    entities in both splits; entities in train."""
    train_vals = pc.unique(pair.train.column(col).drop_null())
    test_col = pair.test.column(col).drop_null()
    if len(test_col) == 0:
        return 0.0, 0, len(train_vals)
    seen = pc.is_in(test_col, value_set=train_vals)
    share = pc.mean(pc.cast(seen, pa.float64())).as_py()
    both = pc.count_distinct(test_col.filter(seen)).as_py()
    return float(share), int(both), len(train_vals)


def group_overlap(pair: Pair) -> list[Finding]:
    """The declared group key, and declared shared entities, across splits."""
    out = []
    cols = ([pair.group] if pair.group else []) + [
        c for c in pair.allow_shared if c != pair.group]
    for col in cols:
        share, both, n_train = _recurrence(pair, col)
        if share == 0:
            continue
        shared = col in pair.allow_shared
        evidence = {"test_rows_with_entity_in_train_share": round(share, 4),
                    "entities_in_both": both, "entities_in_train": n_train,
                    "rows_used": pair.train.num_rows + pair.test.num_rows}
        if shared:
            out.append(_finding(
                "group_overlap", "low", [col],
                f"{share:.1%} of test rows share their {col} with training rows; "
                f"{col} is declared shared, so this is expected, but the test "
                f"metric speaks of known {col} values more than of new ones.",
                **evidence))
        elif share >= THRESHOLDS["group_overlap_share"]:
            out.append(_finding(
                "group_overlap", "high", [col],
                f"{both} values of the group key {col} are in both splits "
                f"({share:.1%} of test rows): rows of one group are alike, so the "
                f"test metric is inflated. Split by {col}.", **evidence))
    return out


def undeclared_group(pair: Pair, named: set[str] | frozenset = frozenset()
                     ) -> list[Finding]:
    """A column named as an entity (subject, patient, user, ``*_id``: its last
    word, so that ``author_account_age_days`` is not one) whose
    values each hold a few rows, found on both sides of the split: repeated
    measures nobody declared. Rows of one entity are alike, so a test row whose
    entity is in train is partly scored on memory."""
    from .._names import names_entity

    out = []
    declared = {pair.group, *pair.allow_shared, *named}  # named: by id_like
    for col in pair.features:
        if col in declared or pair.kinds[col] not in ("id", "numeric",
                                                      "categorical"):
            continue
        if not names_entity(col):
            continue
        arr = pair.train.column(col).drop_null()
        if pa.types.is_floating(arr.type):
            x = np.asarray(arr.to_numpy(zero_copy_only=False), dtype=float)
            if len(x) == 0 or not np.all(np.floor(x) == x):
                continue  # a measurement, not a code
        n = len(arr)
        k = pc.count_distinct(arr).as_py() if n else 0
        if k < THRESHOLDS["undeclared_group_min"] or n < 2 * k:
            continue  # unique per row (an id: id_like's), or too few entities
        if n / k > THRESHOLDS["undeclared_group_max_rows"]:
            continue  # a category with many rows each, not an entity
        share, both, n_train = _recurrence(pair, col)
        if share < THRESHOLDS["group_overlap_share"] * 5:
            continue
        out.append(_finding(
            "group_overlap", "medium", [col],
            f"{col} looks like an entity with several rows each ({k} values in "
            f"train, {n / k:.1f} rows each on average, and its name says so), and "
            f"{share:.1%} of test rows share their {col} with training rows: "
            f"rows of one {col} are alike, so the test metric speaks of known "
            f"ones. Split by it (--split group:{col}, split.group), or declare it "
            f"shared (--allow-shared, audit.allow_shared) if new ones never come.",
            test_rows_with_entity_in_train_share=round(share, 4),
            entities_in_both=both, entities_in_train=n_train,
            rows_per_entity=round(n / k, 2),
            rows_used=pair.train.num_rows + pair.test.num_rows))
    return out


def id_like(pair: Pair, power: dict[str, float]) -> list[Finding]:
    """Undeclared ID-like columns that recur across splits or predict the label."""
    out = []
    declared = {pair.group, *pair.allow_shared}
    for col in pair.features:
        if col in declared:
            continue
        arr = pair.train.column(col)
        kind = pair.kinds[col]
        t = arr.type
        if kind not in ("id", "numeric") or pa.types.is_floating(t) \
                or pa.types.is_boolean(t):
            continue
        present = arr.drop_null()
        if len(present) == 0 or kind == "categorical":
            continue
        distinct = pc.count_distinct(present).as_py()
        ratio = distinct / len(present)
        if kind == "numeric":  # an integer: a counter, or a measurement?
            if ratio < THRESHOLDS["id_distinct_ratio"]:
                continue
            lo, hi = pc.min_max(present).values()
            span = hi.as_py() - lo.as_py() + 1
            if span > 10 * distinct:  # sparse integers: a measurement
                continue
        share, both, _ = _recurrence(pair, col)
        p = power.get(col)
        recurs = share >= THRESHOLDS["id_recurrence_share"]
        predicts = p is not None and p >= THRESHOLDS["id_power"]
        if not (recurs or predicts):
            continue
        why = []
        if recurs:
            why.append(f"its values recur in {share:.1%} of test rows (a candidate "
                       f"group key: pass --group {col} to check it as one)")
        if predicts:
            why.append(f"alone it predicts the label ({_power_name(pair)} "
                       f"{p:.3f}), like a row order or a machine id that tracks "
                       f"the outcome")
        out.append(_finding(
            "id_like_column", "medium", [col],
            f"{col} looks like an identifier ({ratio:.0%} distinct values) and "
            + " and ".join(why) + ". Check it carries no leak, then drop it or "
            "declare it.", distinct_ratio=round(ratio, 4),
            test_rows_with_value_in_train_share=round(share, 4),
            one_feature_score=None if p is None else round(p, 4),
            rows_used=pair.train.num_rows + pair.test.num_rows))
    return out


# -- time -------------------------------------------------------------------

def time_checks(pair: Pair) -> list[Finding]:
    """A random split of time-ordered data; timestamps after prediction time."""
    if not pair.time:
        return []
    out = []
    t_train = pair.numbers("train", pair.time)
    t_test = pair.numbers("test", pair.time)
    newest = np.nanmax(t_train) if np.isfinite(t_train).any() else np.nan
    if np.isfinite(newest) and np.isfinite(t_test).any():
        older = float(np.mean(t_test[np.isfinite(t_test)] < newest))
        if older >= THRESHOLDS["time_overlap_share"]:
            out.append(_finding(
                "time_overlap", "high", [pair.time],
                f"{older:.1%} of test rows are older than the newest training row: "
                f"the split is not by time, so the model is tested on a past it "
                f"has seen around. Split by {pair.time} (train before test).",
                test_rows_older_than_newest_train_share=round(older, 4),
                train_range=_range(t_train), test_range=_range(t_test),
                rows_used=len(t_train) + len(t_test)))
    for col in pair.features:
        if col == pair.time or pair.kinds[col] != "time":
            continue
        after = []
        for split in ("train", "test"):
            f = pair.numbers(split, col)
            p = pair.numbers(split, pair.time)
            ok = np.isfinite(f) & np.isfinite(p)
            after.append((int(np.sum(f[ok] > p[ok])), int(ok.sum())))
        n_after = sum(a for a, _ in after)
        n = sum(b for _, b in after)
        share = n_after / n if n else 0.0
        if share >= THRESHOLDS["future_feature_share"]:
            out.append(_finding(
                "feature_after_target_time", "high", [col, pair.time],
                f"{col} is later than the prediction time {pair.time} in {share:.1%} "
                f"of rows: it records something that happened after the moment "
                f"the model would be asked. Drop it or cut it at {pair.time}.",
                rows_after=n_after, rows_compared=n, share=round(share, 4),
                rows_used=n))
    return out


def _range(t: np.ndarray) -> list[str | None]:
    from datetime import UTC, datetime

    ok = t[np.isfinite(t)]
    if not len(ok):
        return [None, None]
    return [datetime.fromtimestamp(float(v), UTC).isoformat() for v in
            (ok.min(), ok.max())]


# -- one feature against the target -----------------------------------------

def _power_name(pair: Pair) -> str:
    return "R2" if pair.task == "regression" else "AUC"


def _feature_codes(pair: Pair, col: str, idx: np.ndarray, bins: int = 32
                   ) -> np.ndarray | None:
    """A sampled feature as small integer codes: quantile bins for numbers and
    times (NaN its own code), value codes for categories and ids."""
    kind = pair.kinds[col]
    arr = pair.train.column(col).take(pa.array(idx))
    if kind in ("numeric", "time"):
        x = numeric(arr)
        ok = np.isfinite(x)
        if not ok.any():
            return None
        edges = np.unique(np.quantile(x[ok], np.linspace(0, 1, bins + 1)[1:-1]))
        out = np.searchsorted(edges, np.where(ok, x, 0), side="right")
        return np.where(ok, out, len(edges) + 1)
    if kind in ("categorical", "id"):
        c = codes_of(arr)
        return np.where(c < 0, c.max() + 1 if len(c) else 0, c)
    return None


def _one_feature_score(pair: Pair, x: np.ndarray, y: np.ndarray,
                       folds: int = 3, prior_weight: float = 20.0) -> float | None:
    """Cross-validated score of a model that knows only one coded feature: the
    (smoothed) target mean per code, fitted on two folds, scored on the third.
    Written by hand: a lookup table per code is the exact one-feature model,
    and costs a bincount where a tree per feature would cost a fit."""
    n = len(x)
    if n < 3 * folds:
        return None
    order = np.random.default_rng(pair.seed).permutation(n)
    fold = np.empty(n, dtype=np.int64)
    fold[order] = np.arange(n) % folds
    k = int(x.max()) + 1
    # the smoothing toward the prior weighs like at most a quarter of a code's
    # rows: 20 rows on large samples, less on small ones, where 20 pseudo-rows
    # against 5 real ones per code drowned even a copy of the target
    prior_weight = min(prior_weight, max(1.0, n * (folds - 1) / folds / (4 * k)))
    if pair.task == "regression":
        pred = np.empty(n)
        for f in range(folds):
            tr, te = fold != f, fold == f
            prior = y[tr].mean()
            s = np.bincount(x[tr], weights=y[tr], minlength=k)
            c = np.bincount(x[tr], minlength=k)
            pred[te] = ((s + prior_weight * prior) / (c + prior_weight))[x[te]]
        sst = np.sum((y - y.mean()) ** 2)
        return float(1 - np.sum((y - pred) ** 2) / sst) if sst > 0 else None
    n_classes = len(pair.classes)
    proba = np.empty((n, n_classes))
    for f in range(folds):
        tr, te = fold != f, fold == f
        prior = np.bincount(y[tr], minlength=n_classes) / tr.sum()
        counts = np.zeros((k, n_classes))
        np.add.at(counts, (x[tr], y[tr]), 1)
        rates = (counts + prior_weight * prior) / (counts.sum(1, keepdims=True)
                                                  + prior_weight)
        proba[te] = rates[x[te]]
    from ._model import ovr_auc

    return ovr_auc(y, proba)


def feature_power(pair: Pair, sample_rows: int = SAMPLE_ROWS) -> dict[str, float]:
    """Each feature's one-feature score (AUC or R2), on a seeded train sample."""
    idx = pair.sample_index(sample_rows)
    y = pair.y_train[idx]
    out = {}
    for col in pair.features:
        x = _feature_codes(pair, col, idx)
        if x is None:
            continue
        score = _one_feature_score(pair, x, y)
        if score is not None:
            out[col] = score
    return out


def single_feature_power(pair: Pair, power: dict[str, float], rows: int
                         ) -> list[Finding]:
    """A feature that alone nearly solves the task."""
    limit = THRESHOLDS["single_feature_r2" if pair.task == "regression"
                      else "single_feature_auc"]
    out = []
    name = _power_name(pair)
    for col, score in sorted(power.items(), key=lambda kv: -kv[1]):
        if score < limit:
            break
        out.append(_finding(
            "single_feature_power", "high", [col],
            f"{col} alone reaches {name} {score:.3f} (3-fold CV on train): real "
            f"signals are rarely this clean, so it likely carries the answer (a "
            f"field filled in after the outcome, a code that encodes the label). "
            f"Find out how it is produced before trusting any metric.",
            score=round(score, 4), metric=name, threshold=limit, folds=3,
            rows_used=rows))
    return out


def target_derived(pair: Pair, sample_rows: int = SAMPLE_ROWS,
                   power: dict[str, float] | None = None) -> list[Finding]:
    """Features that are a near-deterministic function of the target."""
    idx = pair.sample_index(sample_rows)
    y = pair.y_train[idx]
    out = []
    for col in pair.features:
        if pair.kinds[col] not in ("numeric", "time", "categorical"):
            continue
        arr = pair.train.column(col).take(pa.array(idx))
        if pair.task == "regression":
            if pair.kinds[col] == "categorical":
                continue
            x = numeric(arr)
            ok = np.isfinite(x) & np.isfinite(y)
            if ok.sum() < 10 or np.ptp(x[ok]) == 0:
                continue
            rho = abs(float(spearmanr(x[ok], y[ok]).statistic))
            one = (power or {}).get(col)
            if rho >= THRESHOLDS["target_derived_spearman"]:
                out.append(_finding(
                    "target_derived_feature", "high", [col],
                    f"{col} follows the target almost exactly (|Spearman| "
                    f"{rho:.4f}): it is likely computed from it.",
                    spearman=round(rho, 5), rows_used=int(ok.sum())))
            elif rho >= THRESHOLDS["target_derived_spearman_medium"] and \
                    one is not None and one >= THRESHOLDS["target_derived_r2_medium"]:
                # two pieces of evidence that agree: the order and the values
                out.append(_finding(
                    "target_derived_feature", "medium", [col],
                    f"{col} nearly follows the target: |Spearman| {rho:.4f}, and "
                    f"alone it explains R2 {one:.3f} of it (3-fold CV): likely "
                    f"computed from it, with noise.",
                    spearman=round(rho, 5), one_feature_r2=round(one, 4),
                    rows_used=int(ok.sum())))
            continue
        if pair.kinds[col] == "categorical":
            x = codes_of(arr)
            eta2 = _determined_by(x, y)
            measure = "share of the feature's information given by the class"
        else:
            x = numeric(arr)
            ok = np.isfinite(x)
            if ok.sum() < 10 or np.ptp(x[ok]) == 0:
                continue
            eta2 = _correlation_ratio(x[ok], y[ok])
            measure = "correlation ratio (variance explained by the class)"
        if eta2 >= THRESHOLDS["target_derived_eta2"]:
            out.append(_finding(
                "target_derived_feature", "high", [col],
                f"the class fixes {col} almost wholly ({measure} {eta2:.3f}): it is "
                f"likely derived from the label, or recorded once it was known.",
                eta2=round(eta2, 4), rows_used=len(idx)))
    return out


def _empty(pair: Pair, col: str, idx: np.ndarray) -> np.ndarray | None:
    """Rows where a column holds nothing: missing, or for a number its default
    value (the most common one, when it fills at least 30% of rows: a 0)."""
    arr = pair.train.column(col).take(pa.array(idx))
    if pair.kinds[col] in ("numeric", "time"):
        x = numeric(arr)
        missing = ~np.isfinite(x)
        vals, counts = np.unique(x[~missing], return_counts=True)
        if len(counts) and counts.max() >= 0.3 * len(x):
            return missing | (x == vals[counts.argmax()])
        return missing
    if pair.kinds[col] != "categorical":
        return None
    # a category's most common value is a value like the others (an island, a
    # country), not an absence: only missing counts
    return codes_of(arr) < 0


def outcome_signature(pair: Pair, power: dict[str, float],
                      sample_rows: int = SAMPLE_ROWS) -> list[Finding]:
    """Columns that only hold a value once the outcome happened: missing or at
    their default for nearly every row outside one class (or below most target
    values) and filled within it, the mark of a field recorded after the fact.
    Whether a row has a value then tells the class, whatever the value is; a
    one-feature score can stay under its own threshold (0.98 < 0.99) while this
    shape is plain."""
    idx = pair.sample_index(sample_rows)
    y = pair.y_train[idx]
    out = []
    candidates = [c for c in pair.features if pair.kinds[c] in
                  ("numeric", "time", "categorical")]
    # a shape this clean must also be far from chance, with every column and
    # class tried counted (Bonferroni): on a few dozen rows a column can be
    # filled for one class by luck; on thousands this never binds
    tests = max(1, len(candidates)) * (1 if pair.task == "regression"
                                      else max(1, len(pair.classes)))
    alpha = THRESHOLDS["outcome_signature_alpha"] / tests
    for col in candidates:
        empty = _empty(pair, col, idx)
        if empty is None:
            continue
        filled = ~empty
        share = float(filled.mean())
        if not 0.01 <= share <= 0.99:
            continue
        if pair.task == "regression":
            ok = np.isfinite(y)
            if filled[ok].all() or not filled[ok].any():
                continue
            score = _auc(filled[ok].astype(float), y[ok])
            side = "above" if score >= 0.5 else "below"
            score = max(score, 1 - score)
            where = (f"rows with a value have a target {side} the others' in "
                     f"{score:.0%} of pairs")
            p_value = _rank_p_value(y[ok][filled[ok]], y[ok][~filled[ok]])
        else:
            found = []
            for c, name in enumerate(pair.classes):
                inside = y == c
                if inside.all() or not inside.any():
                    continue
                in_c, out_c = filled[inside].mean(), filled[~inside].mean()
                # filled within the class and empty outside it (said first when
                # as strong), or empty within it and filled outside
                found.append((round(0.5 * (in_c + 1 - out_c), 6), 1, c,
                              f"it has a value in {in_c:.0%} of class {name!r} rows "
                              f"and {out_c:.0%} of the others"))
                found.append((round(0.5 * (1 - in_c + out_c), 6), 0, c,
                              f"it has no value in {1 - in_c:.0%} of class {name!r} "
                              f"rows and {1 - out_c:.0%} of the others"))
            if not found:
                continue
            score, filled_inside, c, where = max(found)
            p_value = _fisher_p_value(filled if filled_inside else ~filled, y == c)
        if score < THRESHOLDS["outcome_signature_medium"] or p_value > alpha:
            continue
        severity = "high" if score >= THRESHOLDS["outcome_signature_high"] \
            else "medium"
        one = power.get(col)
        out.append(_finding(
            "outcome_signature", severity, [col],
            f"{col} is filled almost only for one outcome: {where} (a guess of the "
            f"target from whether it is filled scores {score:.3f}"
            + (f"; {col} alone scores {one:.3f}" if one is not None else "")
            + f"; by chance: p = {p_value:.1g} on {len(y)} rows). A field that "
            "exists only once the outcome happened leaks it; check when it is "
            "recorded.",
            score=round(float(score), 4), filled_share=round(share, 4),
            one_feature_score=None if one is None else round(one, 4),
            p_value=float(f"{p_value:.3g}"), alpha=float(f"{alpha:.3g}"),
            rows_used=len(idx)))
    return out


def _fisher_p_value(mark: np.ndarray, inside: np.ndarray) -> float:
    """One-sided p-value (Fisher's exact test) that ``mark`` falls on the
    ``inside`` rows this often or more by chance."""
    from scipy.stats import fisher_exact

    a = int((mark & inside).sum())
    b = int((mark & ~inside).sum())
    c = int((~mark & inside).sum())
    d = int((~mark & ~inside).sum())
    return float(fisher_exact([[a, b], [c, d]], alternative="greater").pvalue)


def _rank_p_value(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sided p-value (Mann-Whitney U) that two samples differ this much
    in rank by chance: by permutation on small samples, where the normal
    approximation is far too cautious at the extremes (4 rows above 20,
    ties among the 20: 0.002 against 0.0006 by permutation), else asymptotic."""
    from scipy.stats import PermutationMethod, mannwhitneyu

    method = (PermutationMethod(n_resamples=9_999, random_state=0)
              if len(a) + len(b) <= 500 else "asymptotic")
    return float(mannwhitneyu(a, b, alternative="two-sided", method=method).pvalue)


def _auc(flag: np.ndarray, y: np.ndarray) -> float:
    """P(target of a flagged row > target of an unflagged one), ties halved."""
    from scipy.stats import rankdata

    r = rankdata(y)
    n1 = flag.sum()
    n0 = len(flag) - n1
    return float((r[flag > 0].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def _correlation_ratio(x: np.ndarray, y: np.ndarray) -> float:
    total = np.sum((x - x.mean()) ** 2)
    if total == 0:
        return 0.0
    n = np.bincount(y)
    s = np.bincount(y, weights=x)
    means = np.divide(s, n, out=np.zeros_like(s), where=n > 0)
    between = np.sum(n * (means - x.mean()) ** 2)
    return float(between / total)


def _determined_by(x: np.ndarray, y: np.ndarray) -> float:
    """1 - H(X|Y)/H(X): how much of a category's uncertainty the class removes."""
    x = np.where(x < 0, x.max() + 1, x)
    joint = np.zeros((x.max() + 1, y.max() + 1))
    np.add.at(joint, (x, y), 1)
    p = joint / joint.sum()
    px, py = p.sum(1), p.sum(0)
    hx = -np.sum(px[px > 0] * np.log(px[px > 0]))
    if hx < 0.1:  # a near-constant feature says nothing either way
        return 0.0
    with np.errstate(divide="ignore", invalid="ignore"):
        cond = np.where(p > 0, p * np.log(py[None, :] / p), 0.0)
    return float(1 - cond.sum() / hx)


# -- preprocessing fitted on train and test together ------------------------

def _standard(v: np.ndarray, tol: float) -> bool:
    """Mean 0 and variance 1 (either denominator), to rounding."""
    return abs(v.mean()) < tol and (abs(v.std() - 1) < 1e-6
                                    or abs(v.std(ddof=1) - 1) < 1e-6)


def preprocessing(pair: Pair) -> list[Finding]:
    """Scaling or imputation statistics computed over train + test together.

    Standardised over the union, a column has mean 0 and variance 1 on the
    union (to rounding) but not on train; min-max scaled over the union, it
    spans exactly [0, 1] there but not on train; imputed with the union's
    mean or median, its most repeated value is that statistic of the union's
    other values, not of train's.
    """
    out = []
    for col in pair.features:
        if pair.kinds[col] != "numeric" or not pa.types.is_floating(
                pair.train.schema.field(col).type):
            continue
        a, b = pair.numbers("train", col), pair.numbers("test", col)
        a, b = a[np.isfinite(a)], b[np.isfinite(b)]
        if len(a) < 10 or len(b) < 10:
            continue
        u = np.concatenate([a, b])
        if len(np.unique(u[:100_000])) < 20 or np.all(u == np.round(u)):
            continue  # counts, codes and flags sit on round values by nature
        scale = max(np.abs(u).max(), 1.0)
        tol = 1e-9 * scale
        how = None

        if _standard(u, tol) and not _standard(a, tol):
            how = ("standardised (mean 0, variance 1) over train and test together",
                   {"union_mean": float(u.mean()), "union_std": float(u.std()),
                    "train_mean": float(a.mean()), "train_std": float(a.std())})
        elif u.min() == 0 and u.max() == 1 and (a.min() != 0 or a.max() != 1):
            how = ("min-max scaled to [0, 1] over train and test together",
                   {"union_min": 0.0, "union_max": 1.0, "train_min": float(a.min()),
                    "train_max": float(a.max())})
        else:
            values, counts = np.unique(u, return_counts=True)
            top = int(np.argmax(counts))
            m, c = float(values[top]), int(counts[top])
            if c >= max(10, 0.01 * len(u)):
                rest_u, rest_a = u[u != m], a[a != m]
                if len(rest_u) >= 10 and len(rest_a) >= 10:
                    for stat, f in (("mean", np.mean), ("median", np.median)):
                        if abs(f(rest_u) - m) < tol and abs(f(rest_a) - m) > tol:
                            how = (f"imputed with the {stat} of train and test "
                                   f"together ({c} rows hold {m:.6g})",
                                   {"imputed_value": m, "imputed_rows": c,
                                    f"union_{stat}_of_others": float(f(rest_u)),
                                    f"train_{stat}_of_others": float(f(rest_a))})
                            break
        if how:
            text, numbers = how
            out.append(_finding(
                "preprocessed_before_split", "high", [col],
                f"{col} looks {text}: statistics of the test rows went into the "
                f"features. Fit scalers and imputers on train only.",
                **numbers, rows_used=len(u)))
    return out


# -- generalisation: shift, unseen categories, missing rates, imbalance ------

def _psi(p: np.ndarray, q: np.ndarray) -> float:
    p, q = np.maximum(p, EPS), np.maximum(q, EPS)
    return float(np.sum((q - p) * np.log(q / p)))


def _chi_squared(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """Chi-squared test of two samples' category counts (the 2 x k table of
    the categories either has), its p-value, and Cramer's V, its effect size
    (0: the same mix, 1: no category in common)."""
    from scipy.stats import chi2_contingency

    keep = (a + b) > 0
    table = np.vstack([a[keep], b[keep]])
    if table.shape[1] < 2 or table.sum() == 0:
        return {"chi2": 0.0, "chi2_p_value": 1.0, "cramers_v": 0.0}
    chi2, p, _, _ = chi2_contingency(table, correction=False)
    v = np.sqrt(chi2 / table.sum())  # min(rows, cols) - 1 = 1 for two samples
    return {"chi2": round(float(chi2), 2), "chi2_p_value": float(f"{p:.3g}"),
            "cramers_v": round(float(v), 4)}


def shift(pair: Pair, thresholds: dict[str, float] | None = None
          ) -> tuple[list[Finding], dict[str, dict]]:
    """Per feature: missing rates, PSI and KS (numbers, with the KS test's
    p-value) or Jensen-Shannon and chi-squared with Cramer's V (categories),
    unseen categories. Returns findings and the per-feature numbers (for the
    report). The one definition of drift: the audit's train/test pair and
    the monitor's training rows against served traffic both come here.
    ``thresholds``: the audit's :data:`THRESHOLDS`, or a monitor's own."""
    limits = {**THRESHOLDS, **(thresholds or {})}
    out, stats = [], {}
    rng = np.random.default_rng(pair.seed)
    for col in pair.features:
        kind = pair.kinds[col]
        tr, te = pair.train.column(col), pair.test.column(col)
        miss = (tr.null_count / max(len(tr), 1), te.null_count / max(len(te), 1))
        s = {"kind": kind, "missing_train": round(miss[0], 4),
             "missing_test": round(miss[1], 4)}
        if abs(miss[1] - miss[0]) >= limits["missing_shift"]:
            out.append(_finding(
                "missing_rate_shift", "low", [col],
                f"{col} is missing in {miss[0]:.1%} of train rows but {miss[1]:.1%} "
                f"of test rows: whatever fills it changed. Check the pipeline, "
                f"and that the model handles its absence.",
                missing_train=s["missing_train"], missing_test=s["missing_test"],
                rows_used=len(tr) + len(te)))
        if kind in ("numeric", "time") and col != pair.time:
            # (the declared time column moves by construction in a time split)
            a, b = pair.numbers("train", col), pair.numbers("test", col)
            a, b = a[np.isfinite(a)], b[np.isfinite(b)]
            if len(a) >= 10 and len(b) >= 10:
                edges = np.unique(np.quantile(a, np.linspace(0, 1, 11)[1:-1]))
                p = np.bincount(np.searchsorted(edges, a, side="right"),
                                minlength=len(edges) + 1) / len(a)
                q = np.bincount(np.searchsorted(edges, b, side="right"),
                                minlength=len(edges) + 1) / len(b)
                sa = a if len(a) <= SHIFT_SAMPLE_ROWS else rng.choice(
                    a, SHIFT_SAMPLE_ROWS, replace=False)
                sb = b if len(b) <= SHIFT_SAMPLE_ROWS else rng.choice(
                    b, SHIFT_SAMPLE_ROWS, replace=False)
                s["psi"] = round(_psi(p, q), 4)
                ks = ks_2samp(sa, sb)
                s["ks"] = round(float(ks.statistic), 4)
                s["ks_p_value"] = float(f"{ks.pvalue:.3g}")
                if s["psi"] >= limits["psi"] or s["ks"] >= limits["ks"]:
                    out.append(_finding(
                        "distribution_shift", "low", [col],
                        f"{col} is distributed differently at test time (PSI "
                        f"{s['psi']:.3f}, KS {s['ks']:.3f}): the model meets values "
                        f"it saw less of. Expect the test metric to move with it.",
                        psi=s["psi"], ks=s["ks"], rows_used=len(a) + len(b),
                        ks_rows_used=len(sa) + len(sb)))
        elif kind in ("categorical", "id"):
            ca, cb, dictionary = codes(tr, te)
            k = len(dictionary) + 1
            ca, cb = np.where(ca < 0, k - 1, ca), np.where(cb < 0, k - 1, cb)
            p = np.bincount(ca, minlength=k) / len(ca)
            q = np.bincount(cb, minlength=k) / len(cb)
            seen = p > 0
            unseen = float(q[~seen].sum())
            s["unseen_share"] = round(unseen, 4)
            if kind == "categorical":
                s["psi"] = round(_psi(p, q), 4)
                s["js"] = round(float(jensenshannon(p, q, base=2)), 4)
                s.update(_chi_squared(np.bincount(ca, minlength=k),
                                      np.bincount(cb, minlength=k)))
                if s["psi"] >= limits["psi"] or s["js"] >= limits["js"]:
                    out.append(_finding(
                        "distribution_shift", "low", [col],
                        f"the mix of {col} values changes at test time (PSI "
                        f"{s['psi']:.3f}, Jensen-Shannon {s['js']:.3f}).",
                        psi=s["psi"], js=s["js"], rows_used=len(ca) + len(cb)))
                if unseen >= limits["unseen_share"]:
                    n_new = int(np.sum((q > 0) & ~seen))
                    out.append(_finding(
                        "unseen_categories", "low", [col],
                        f"{unseen:.1%} of test rows have a {col} value never seen "
                        f"in train ({n_new} new values): the model knows nothing "
                        f"of them. Make sure it has a fallback (an 'other' level).",
                        unseen_share=s["unseen_share"], new_values=n_new,
                        rows_used=len(ca) + len(cb)))
        stats[col] = s
    return out, stats


def class_imbalance(pair: Pair) -> list[Finding]:
    if pair.task == "regression":
        return []
    counts = np.bincount(pair.y_train, minlength=len(pair.classes))
    test_counts = np.bincount(pair.y_test, minlength=len(pair.classes))
    share = counts / counts.sum()
    low = int(np.argmin(share))
    # the threshold is for two classes; with k classes, balance is 1/k each
    limit = THRESHOLDS["imbalance_share"] * 2 / len(pair.classes)
    if share[low] >= limit:
        return []
    return [_finding(
        "class_imbalance", "low", [pair.target],
        f"class {pair.classes[low]!r} is {share[low]:.1%} of training rows "
        f"({int(counts[low])} rows): accuracy is meaningless here; judge by PR-AUC "
        f"or recall at a chosen precision, and pick the threshold on validation.",
        train_counts={str(c): int(n) for c, n in zip(pair.classes, counts,
                                                      strict=True)},
        test_counts={str(c): int(n) for c, n in zip(pair.classes, test_counts,
                                                     strict=True)},
        minority_share=round(float(share[low]), 4),
        rows_used=len(pair.y_train) + len(pair.y_test))]
