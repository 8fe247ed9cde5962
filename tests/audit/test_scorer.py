"""The probe's permutation scorer gives scikit-learn's numbers, faster."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import r2_score, roc_auc_score

from mlsd.audit._model import permutation_scorer


class _Fixed:
    """A fitted-model stand-in that returns given predictions."""

    def __init__(self, out, classes=None):
        self.out, self.classes_ = out, classes

    def predict_proba(self, X):
        return self.out

    def predict(self, X):
        return self.out


@pytest.mark.parametrize("seed", range(5))
def test_the_scorer_equals_scikit_learn_with_ties(seed):
    rng = np.random.default_rng(seed)
    n = 300
    # binary, scores rounded so that many tie
    y = rng.integers(0, 2, n)
    p1 = np.round(rng.random(n) * 0.3 + 0.5 * y, 1)
    proba = np.c_[1 - p1, p1]
    got = permutation_scorer("binary")(_Fixed(proba, np.array([0, 1])), None, y)
    assert got == pytest.approx(roc_auc_score(y, p1), abs=1e-12)
    # several classes: one-vs-rest, macro average
    y3 = rng.integers(0, 4, n)
    raw = np.round(rng.random((n, 4)) + np.eye(4)[y3], 1)
    proba3 = raw / raw.sum(1, keepdims=True)
    got = permutation_scorer("multiclass")(_Fixed(proba3, np.arange(4)), None, y3)
    want = roc_auc_score(y3, proba3, multi_class="ovr", average="macro")
    assert got == pytest.approx(want, abs=1e-12)
    # regression
    yr = rng.normal(size=n)
    pred = yr + rng.normal(scale=0.5, size=n)
    got = permutation_scorer("regression")(_Fixed(pred), None, yr)
    assert got == pytest.approx(r2_score(yr, pred), abs=1e-12)


def test_one_class_gives_no_score():
    y = np.ones(10, dtype=int)
    proba = np.c_[np.zeros(10), np.ones(10)]
    assert np.isnan(permutation_scorer("binary")(_Fixed(proba, np.array([0, 1])),
                                                 None, y))
