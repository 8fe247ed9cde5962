"""Bootstrap intervals on test metrics and paired margins."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm

from mlsd.models._bootstrap import (
    block_length,
    bootstrap_metrics,
    counts,
    metric_replicates,
)
from mlsd.models._metrics import task_metrics


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
def test_replicates_of_the_rows_as_drawn_equal_the_metrics(task):
    """With every row drawn once, each vectorised metric is scikit-learn's
    (score ties included)."""
    rng = np.random.default_rng(0)
    n = 400
    if task == "binary":
        y = (rng.random(n) < 0.2).astype(int)
        out = np.round(np.clip(y * 0.3 + rng.random(n) * 0.7, 0, 1), 2)
    elif task == "multiclass":
        y = rng.integers(0, 3, n)
        out = rng.dirichlet([1, 1, 1], n)
    else:
        y = rng.normal(size=n)
        out = y + rng.normal(size=n) * 0.5
    ref = task_metrics(task, y, out, 0.5 if task == "binary" else None)
    names = [k for k, v in ref.items() if isinstance(v, float) and k != "threshold"]
    got = metric_replicates(task, y, out, 0.5, np.ones((1, n)), names)
    assert set(got) == set(names)
    for k in names:
        assert abs(float(got[k][0]) - ref[k]) < 1e-6, k


def test_counts_draw_every_row_total_and_blocks_keep_neighbours_together():
    W = counts(50, replicates=200, seed=1)
    assert W.shape == (200, 50) and (W.sum(axis=1) == 50).all()
    B = counts(100, replicates=100, seed=1, block=10)
    assert (B.sum(axis=1) == 100).all()
    # in blocks, a drawn row's neighbour is drawn as often, mostly
    same = np.mean(B[:, 40] == B[:, 41])
    assert same > np.mean(W[:, 10] == W[:, 11])
    assert block_length(1000) == 10


def test_intervals_cover_a_known_auc_at_about_their_level():
    """Positives score N(1, 1), negatives N(0, 1): the ROC-AUC is
    Phi(1 / sqrt 2). Over 200 test sets of 300 rows, the 90% interval holds
    it about 90% of the time."""
    truth = norm.cdf(1 / np.sqrt(2))
    rng = np.random.default_rng(7)
    hits = 0
    sims = 200
    for i in range(sims):
        y = (rng.random(300) < 0.3).astype(int)
        s = norm.cdf(rng.normal(size=300) + y)  # a probability, monotone in the score
        boot = bootstrap_metrics("binary", y, {"model": s}, {"model": 0.5},
                                 primary="roc_auc", names=["roc_auc"], seed=i,
                                 replicates=400, level=0.9)
        lo, hi = boot["intervals"]["model"]["roc_auc"]
        hits += lo <= truth <= hi
    assert 0.82 <= hits / sims <= 0.97


def test_the_paired_margin_says_which_model_is_better():
    rng = np.random.default_rng(3)
    y = (rng.random(2000) < 0.3).astype(int)
    good = np.clip(0.5 * y + 0.5 * rng.random(2000), 0, 1)
    bad = rng.random(2000)
    same = good + rng.normal(0, 1e-6, 2000)
    boot = bootstrap_metrics("binary", y, {"model": good, "noise": bad,
                                           "twin": same},
                             {"model": 0.5, "noise": 0.5, "twin": 0.5},
                             primary="pr_auc", names=["pr_auc"], seed=0)
    assert boot["margins"]["noise"]["beats"] is True
    assert boot["margins"]["twin"]["beats"] is False  # no better than its twin
    # time order: moving blocks
    t = bootstrap_metrics("binary", y, {"model": good}, {"model": 0.5},
                          primary="pr_auc", names=["pr_auc"],
                          time_order=np.arange(2000)[::-1])
    assert t["method"] == "moving-block bootstrap" and t["block"] == 13


def test_slices_measure_each_segment_and_the_gap():
    from mlsd.models._slices import slice_metrics

    rng = np.random.default_rng(0)
    n = 3000
    country = rng.choice(["a", "b", "c", "tiny"], n, p=[0.5, 0.3, 0.195, 0.005])
    y = (rng.random(n) < 0.3).astype(int)
    # the model is good on a, poor on b (noise), middling on c
    noise = {"a": 0.1, "b": 2.0, "c": 0.5, "tiny": 0.1}
    score = 1 / (1 + np.exp(-(2 * y - 1 + rng.normal(size=n) * np.vectorize(
        noise.get)(country))))
    res = slice_metrics("binary", y, score, 0.5,
                        {"country": country, "late": np.arange(n) > 2500},
                        primary="pr_auc", higher=True)
    by = {r["slice"]: r for r in res["slices"]}
    assert by["country=a"]["rows"] == int((country == "a").sum())
    assert by["country=a"]["pr_auc"] > by["country=c"]["pr_auc"] > by[
        "country=b"]["pr_auc"]
    assert "not measured" in by["country=tiny"].get("note", "")
    assert by["late"]["rows"] == 499
    assert res["gap"]["best"] == "country=a" and res["gap"]["worst"] == "country=b"
    assert res["gap"]["gap"] == pytest.approx(by["country=a"]["pr_auc"]
                                              - by["country=b"]["pr_auc"])
