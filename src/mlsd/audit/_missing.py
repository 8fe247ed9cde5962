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
2. can another column predict it? For each other feature, on a seeded
   sample of train: the Mann-Whitney U test of its values between rows with
   and without the value (numbers, times; effect: the AUC), or the chi-square
   test of its categories against the flag (effect: Cramer's V); the strongest
   is kept, its p-value Bonferroni-adjusted over the features tried. All of
   it is a few matrix products, so a wide table costs little (a model per
   column cost 11 s on a 1,000-row, 50-column pair).

A label-dependent absence is a hint of "not at random" (keep the fact that the
value is missing as a feature); else a predictable one is a hint of "at random"
(impute, the other columns carry what it lacks); else the data are consistent
with "completely at random" (impute simply, or drop the column when most of it
is missing).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._data import Pair

ALPHA = 0.01  # Holm-adjusted, for the label test and the predictability test
# and the strongest single predictor must tell missing rows apart this well:
PREDICTABLE_AUC = 0.6  # a number or a time (AUC folded to [0.5, 1])
PREDICTABLE_V = 0.15  # a category (Cramer's V of the category and the flag)
MIN_EACH = 10  # rows missing and rows present, to test anything
SAMPLE = 20_000  # train rows for the association tests
MAX_COLUMNS = 25  # the most-missing columns are diagnosed

ADVICE = {
    "not_at_random": (
        "the absence carries information about the label: keep it as a feature "
        "(numeric features add a `__missing` column, categories a `__missing__` "
        "one) and impute the value; dropping these rows would bias the data"),
    "at_random": (
        "another column predicts the absence (mostly {top}): impute (median or "
        "mean, or per group of {top}); the missing indicator is optional"),
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
    o1 = np.array([np.sum(miss & (y == c)) for c in classes], dtype=np.float64)
    total = np.array([np.sum(y == c) for c in classes], dtype=np.float64)
    n1 = float(miss.sum())
    stat, dof = _chi2_pooled(o1, total, n1, len(y) - n1)
    pvalue = float(stats.chi2.sf(stat, dof)) if dof else 1.0
    effect: dict[str, Any] = {"cramers_v": round(float(np.sqrt(stat / len(y))), 4)}
    if pair.task == "binary" and len(pair.classes) == 2:
        pos = y == 1
        effect["positive_rate_missing"] = round(float(pos[miss].mean()), 4)
        effect["positive_rate_present"] = round(float(pos[~miss].mean()), 4)
    return {"test": "chi-square", "statistic": stat, "p_value": pvalue,
            "effect": effect}


def _ranks(X: np.ndarray) -> np.ndarray:
    """Column-wise average ranks, missing values ranked lowest (an absence
    is a value of its own for the association)."""
    from scipy.stats import rankdata

    return rankdata(np.where(np.isnan(X), -np.inf, X), axis=0)


def _associations(pair: Pair, cols: list[str], X: np.ndarray,
                  masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For every missing flag (columns of ``masks``) and every candidate
    predictor (columns of ``X``): the two-sided p-value of the association and
    its effect, in one pass of matrix products.

    Numbers and times: the Mann-Whitney U test of the predictor between rows
    with and without the value (normal approximation; ties make it
    conservative), effect the AUC folded to [0.5, 1]. Categories: the
    chi-square test of the category against the flag, effect Cramer's V.
    """
    from scipy.special import erfc
    from scipy.stats import chi2

    n, m = masks.shape
    M = masks.astype(np.float64)
    n1 = M.sum(0)
    n0 = n - n1
    p = np.ones((m, len(cols)))
    effect = np.zeros((m, len(cols)))
    num = [j for j, c in enumerate(cols) if pair.kinds[c] != "categorical"]
    if num:
        R = _ranks(X[:, num])
        U = M.T @ R - (n1 * (n1 + 1) / 2)[:, None]
        auc = U / (n1 * n0)[:, None]
        z = (U - (n1 * n0 / 2)[:, None]) / np.sqrt(n1 * n0 * (n + 1) / 12)[:, None]
        p[:, num] = erfc(np.abs(z) / np.sqrt(2))
        effect[:, num] = np.maximum(auc, 1 - auc)
    for j, c in enumerate(cols):
        if pair.kinds[c] != "categorical":
            continue
        codes = np.where(np.isnan(X[:, j]), -1, X[:, j]).astype(np.int64) + 1
        C = np.zeros((n, codes.max() + 1))
        C[np.arange(n), codes] = 1.0
        total = C.sum(0)
        O1 = M.T @ C  # missing rows per category, for every flag at once
        for i in range(m):
            stat, dof = _chi2_pooled(O1[i], total, n1[i], n0[i])
            if dof:
                p[i, j] = chi2.sf(stat, dof)
                effect[i, j] = np.sqrt(stat / n)
    return p, effect


def _chi2_pooled(o1: np.ndarray, total: np.ndarray, n1: float, n0: float
                 ) -> tuple[float, int]:
    """The chi-square statistic of a 2 x k table (rows with the flag per
    category, category totals) and its degrees of freedom, after pooling the
    categories too small for the test: each cell must expect at least 5 rows
    (Cochran's rule), so rare categories join one "rest" group, which joins the
    smallest kept category if it is still too small. Zero degrees of freedom:
    not testable."""
    n = n1 + n0
    least = 5.0 * n / max(min(n1, n0), 1.0)
    keep = total >= least
    groups_t = list(total[keep])
    groups_o = list(o1[keep])
    rest_t, rest_o = float(total[~keep].sum()), float(o1[~keep].sum())
    if rest_t > 0:
        if rest_t >= least or not groups_t:
            groups_t.append(rest_t)
            groups_o.append(rest_o)
        else:
            k = int(np.argmin(groups_t))
            groups_t[k] += rest_t
            groups_o[k] += rest_o
    if len(groups_t) < 2:
        return 0.0, 0
    t, o = np.asarray(groups_t), np.asarray(groups_o)
    e1, e0 = n1 * t / n, n0 * t / n
    stat = float(((o - e1) ** 2 / e1 + ((t - o) - e0) ** 2 / e0).sum())
    return stat, len(t) - 1


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
    out, testable = [], []
    for c in chosen:
        miss, rate = rates[c]
        d: dict[str, Any] = {
            "column": c, "missing_train": round(rate, 4),
            "missing_test": round(float(_missing_mask(pair, "test", c).mean()), 4)
            if pair.test.num_rows else None,
            "rows_missing": int(miss.sum())}
        out.append(d)
        sample = miss[idx]
        if min(miss.sum(), len(miss) - miss.sum()) < MIN_EACH or min(
                sample.sum(), len(sample) - sample.sum()) < MIN_EACH:
            d.update(verdict="too_few", advice=ADVICE["too_few"])
            continue
        d["label"] = _label_test(pair, miss)
        testable.append(d)
    if testable and cols:
        masks = np.column_stack([rates[d["column"]][0][idx] for d in testable])
        p, effect = _associations(pair, cols, X, masks)
        for i, d in enumerate(testable):
            others = [j for j, c in enumerate(cols) if c != d["column"]]
            if not others:
                d["predictable"] = {}
                continue
            order = sorted(others, key=lambda j: (p[i, j], -effect[i, j]))
            best = order[0]
            kind = pair.kinds[cols[best]]
            d["predictable"] = {
                "by": cols[best],
                "test": "chi-square" if kind == "categorical" else "mann-whitney u",
                ("cramers_v" if kind == "categorical" else "auc"):
                    round(float(effect[i, best]), 4),
                # the best of several predictors: Bonferroni over them
                "p_value": float(min(1.0, p[i, best] * len(others))),
                "rows": len(idx),
                "top_predictors": [cols[j] for j in order[:3]]}
    else:
        for d in testable:
            d["predictable"] = {}
    for key in ("label", "predictable"):
        have = [d for d in testable if d[key].get("p_value") is not None]
        for d, q in zip(have, _holm([d[key]["p_value"] for d in have]), strict=True):
            d[key]["p_holm"] = q
    for d in testable:
        lab, pred = d["label"], d["predictable"]
        strong = pred and (pred.get("auc", 0.0) >= PREDICTABLE_AUC
                           or pred.get("cramers_v", 0.0) >= PREDICTABLE_V)
        if lab["p_holm"] < ALPHA:
            d["verdict"] = "not_at_random"
            d["advice"] = ADVICE["not_at_random"]
        elif pred and pred["p_holm"] < ALPHA and strong:
            d["verdict"] = "at_random"
            d["advice"] = ADVICE["at_random"].format(top=pred["by"])
        else:
            d["verdict"] = "completely_at_random"
            d["advice"] = ADVICE["completely_at_random"]
        for part in (lab, pred):
            for k in ("statistic", "p_value", "p_holm"):
                if k in part:
                    part[k] = float(f"{part[k]:.4g}")
    return out
