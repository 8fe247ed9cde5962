"""Why are values missing? A diagnosis per column, with its evidence.

The course names three mechanisms: *not at random* (a user hides a salary
because it is high: the absence says something about the value, and often about
the label), *at random* (one group of users skips the field more: other columns
predict the absence) and *completely at random* (no pattern). From data alone
they can only be hinted at, never proven, so each verdict is a hint with the
numbers behind it:

1. does missingness depend on the label? A chi-square test of the 0/1 missing
   flag against the class (classification), or a Mann-Whitney U test of the
   label between rows with and without the value (regression); p-values are
   Holm-adjusted over the columns tested;
2. can the other columns predict it? A small LightGBM model predicts the flag
   from the other features, 3-fold out of fold on a seeded sample of train; its
   AUC, the Mann-Whitney p-value of that AUC, and the column that helps most.

A label-dependent absence is a hint of "not at random" (keep the fact that the
value is missing as a feature); else a predictable one is a hint of "at random"
(impute, the other columns carry what it lacks); else the data are consistent
with "completely at random" (impute simply, or drop the column when most of it
is missing).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._threads import threads_for
from ._data import Pair

ALPHA = 0.01  # Holm-adjusted, for the label test and the predictability test
PREDICTABLE_AUC = 0.6  # and a model must tell missing rows apart this well
MIN_EACH = 10  # rows missing and rows present, to test anything
SAMPLE = 10_000  # train rows for the predictability probe
MAX_COLUMNS = 25  # the most-missing columns are diagnosed
TREES = 40

ADVICE = {
    "not_at_random": (
        "the absence carries information about the label: keep it as a feature "
        "(numeric features add a `__missing` column, categories a `__missing__` "
        "one) and impute the value; dropping these rows would bias the data"),
    "at_random": (
        "other columns predict the absence: impute (median or mean, or per group "
        "of {top}); the missing indicator is optional"),
    "completely_at_random": (
        "no pattern found: impute with the median, mean or a default; drop the "
        "column if most of it is missing (feature_policy.drop_missing_above), or "
        "the rows if very few lack it (validate.required)"),
    "too_few": "too few rows with (or without) a value to test anything",
}


def _missing_mask(pair: Pair, split: str, col: str) -> np.ndarray:
    table = pair.train if split == "train" else pair.test
    arr = table.column(col)
    mask = np.asarray(arr.is_null().to_numpy(zero_copy_only=False), dtype=bool)
    if pair.kinds.get(col) == "numeric":
        mask |= np.isnan(pair.numbers(split, col))
    return mask


def _holm(p: list[float]) -> list[float]:
    """Holm's step-down adjustment (family-wise error) of a list of p-values."""
    m = len(p)
    order = np.argsort(p)
    out = np.empty(m)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out.tolist()


def _label_test(pair: Pair, miss: np.ndarray) -> dict[str, Any]:
    from scipy import stats

    y = pair.y_train
    if pair.task == "regression":
        a, b = y[miss], y[~miss]
        u = stats.mannwhitneyu(a, b, alternative="two-sided")
        return {"test": "mann-whitney u", "statistic": float(u.statistic),
                "p_value": float(u.pvalue),
                "effect": {"median_label_missing": float(np.median(a)),
                           "median_label_present": float(np.median(b)),
                           "rank_biserial": float(2 * u.statistic /
                                                  (len(a) * len(b)) - 1)}}
    classes = np.unique(y)
    table = np.array([[np.sum(miss & (y == c)), np.sum(~miss & (y == c))]
                      for c in classes])
    table = table[table.sum(1) > 0]
    chi2 = stats.chi2_contingency(table, correction=False)
    n = table.sum()
    v = float(np.sqrt(chi2.statistic / (n * (min(table.shape) - 1))))
    effect: dict[str, Any] = {"cramers_v": round(v, 4)}
    if pair.task == "binary" and len(pair.classes) == 2:
        pos = y == 1
        effect["positive_rate_missing"] = round(float(pos[miss].mean()), 4)
        effect["positive_rate_present"] = round(float(pos[~miss].mean()), 4)
    return {"test": "chi-square", "statistic": float(chi2.statistic),
            "p_value": float(chi2.pvalue), "effect": effect}


def _predictability(pair: Pair, col: str, miss: np.ndarray, idx: np.ndarray,
                    X: np.ndarray, cols: list[str]) -> dict[str, Any]:
    import lightgbm as lgb
    from scipy import stats

    others = [j for j, c in enumerate(cols) if c != col]
    target = miss[idx].astype(int)
    if not others or min(target.sum(), len(target) - target.sum()) < MIN_EACH:
        return {}
    Xo = X[:, others]
    folds = np.random.default_rng(pair.seed).integers(0, 3, size=len(idx))
    oof = np.zeros(len(idx))
    params = {"n_estimators": TREES, "num_leaves": 15, "learning_rate": 0.1,
              "min_child_samples": 20, "verbose": -1,
              "n_jobs": threads_for(len(idx)), "random_state": pair.seed}
    for k in range(3):
        fit, held = folds != k, folds == k
        if len(np.unique(target[fit])) < 2:
            return {}
        m = lgb.LGBMClassifier(**params).fit(Xo[fit], target[fit])
        oof[held] = m.predict_proba(Xo[held])[:, 1]
    u = stats.mannwhitneyu(oof[target == 1], oof[target == 0],
                           alternative="greater")
    auc = float(u.statistic / (target.sum() * (len(target) - target.sum())))
    full = lgb.LGBMClassifier(**params).fit(Xo, target)
    gain = full.booster_.feature_importance(importance_type="gain")
    top = [cols[others[j]] for j in np.argsort(-gain)[:3] if gain[j] > 0]
    return {"auc": round(auc, 4), "p_value": float(u.pvalue), "rows": len(idx),
            "top_predictors": top}


def missingness(pair: Pair) -> list[dict[str, Any]]:
    """The diagnosis of every feature column with missing training values
    (the ``MAX_COLUMNS`` most missing), most missing first."""
    from ._model import _matrix

    rates = {}
    for c in pair.features:
        m = _missing_mask(pair, "train", c)
        if m.any():
            rates[c] = (m, float(m.mean()))
    chosen = sorted(rates, key=lambda c: -rates[c][1])[:MAX_COLUMNS]
    if not chosen:
        return []
    cols = [c for c in pair.features if pair.kinds[c] in ("numeric", "categorical",
                                                          "time")]
    idx = pair.sample_index(SAMPLE)
    X = _matrix(pair, idx, cols) if cols else np.zeros((len(idx), 0))
    out = []
    for c in chosen:
        miss, rate = rates[c]
        d: dict[str, Any] = {
            "column": c, "missing_train": round(rate, 4),
            "missing_test": round(float(_missing_mask(pair, "test", c).mean()), 4)
            if pair.test.num_rows else None,
            "rows_missing": int(miss.sum())}
        if min(miss.sum(), len(miss) - miss.sum()) < MIN_EACH:
            d.update(verdict="too_few", advice=ADVICE["too_few"])
            out.append(d)
            continue
        d["label"] = _label_test(pair, miss)
        d["predictable"] = _predictability(pair, c, miss, idx, X, cols)
        out.append(d)
    tested = [d for d in out if "label" in d]
    for key in ("label", "predictable"):
        have = [d for d in tested if d[key].get("p_value") is not None]
        for d, p in zip(have, _holm([d[key]["p_value"] for d in have]), strict=True):
            d[key]["p_holm"] = p
    for d in tested:
        lab, pred = d["label"], d["predictable"]
        if lab["p_holm"] < ALPHA:
            d["verdict"] = "not_at_random"
            d["advice"] = ADVICE["not_at_random"]
        elif pred and pred["p_holm"] < ALPHA and pred["auc"] >= PREDICTABLE_AUC:
            d["verdict"] = "at_random"
            d["advice"] = ADVICE["at_random"].format(
                top=", ".join(pred["top_predictors"][:2]) or "the other columns")
        else:
            d["verdict"] = "completely_at_random"
            d["advice"] = ADVICE["completely_at_random"]
        for part in (lab, pred):
            for k in ("statistic", "p_value", "p_holm"):
                if k in part:
                    part[k] = float(f"{part[k]:.4g}")
    return out
