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


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
def test_batched_permutation_importances_are_scikit_learns(task):
    """The probe's permutation importances, scored from a few stacked
    predictions, are scikit-learn's ``permutation_importance`` numbers: same
    shuffles, same scores, for every kind of task."""
    import lightgbm as lgb
    from sklearn.inspection import permutation_importance

    from mlsd.audit._model import permutation_importances

    rng = np.random.default_rng(11)
    X = rng.normal(size=(400, 5))
    X[rng.random(X.shape) < 0.05] = np.nan
    signal = np.nan_to_num(X[:, 0]) + 0.5 * np.nan_to_num(X[:, 1])
    if task == "regression":
        y = signal + rng.normal(scale=0.3, size=400)
        model = lgb.LGBMRegressor(n_estimators=20, verbose=-1, n_jobs=1)
    else:
        y = np.digitize(signal + rng.normal(scale=0.3, size=400),
                        [0.0] if task == "binary" else [-0.7, 0.7])
        model = lgb.LGBMClassifier(n_estimators=20, verbose=-1, n_jobs=1)
    model.fit(X[:300], y[:300])
    got = permutation_importances(model, X[300:], y[300:], task, repeats=3, seed=7)
    want = permutation_importance(
        model, X[300:], y[300:], scoring=permutation_scorer(task), n_repeats=3,
        random_state=7, n_jobs=1).importances_mean
    assert np.allclose(got, want, atol=1e-12)
    assert got[0] > got[2]  # the signal's column matters, a noise column not


@pytest.mark.parametrize("task, classes", [("binary", 2), ("multiclass", 4),
                                           ("regression", 0)])
def test_the_native_probe_is_the_scikit_learn_wrappers_model(task, classes):
    """The probe fits with LightGBM's native API (the audit imports no
    scikit-learn): the same predictions and AUC as the wrapper it replaced,
    a class absent from the fitted rows included."""
    import lightgbm as lgb

    from mlsd.audit._model import PROBE_TREES, _fit, ovr_auc

    rng = np.random.default_rng(5)
    n = 600
    X = rng.normal(size=(n, 4))
    X[:, 3] = rng.integers(0, 5, n)  # a categorical column
    signal = X[:, 0] + 0.5 * X[:, 1] + 0.3 * (X[:, 3] == 2)
    if task == "regression":
        y = signal + rng.normal(scale=0.3, size=n)
    else:
        y = np.digitize(signal + rng.normal(scale=0.5, size=n),
                        np.quantile(signal, np.linspace(0, 1, classes + 1)[1:-1]))
    fit = np.arange(n) < 450
    valid = ~fit
    if task == "multiclass":
        y[fit & (y == 3)] = 2  # class 3 only among the validation rows

    class _Pair:
        pass

    pair = _Pair()
    pair.task, pair.seed = task, 3
    pair.classes = list(range(classes))
    model, score = _fit(pair, X, y, fit, valid, [3])
    params = {"n_estimators": PROBE_TREES, "learning_rate": 0.15, "num_leaves": 31,
              "min_child_samples": 20, "max_bin": 63, "verbose": -1,
              "deterministic": True, "force_col_wise": True, "n_jobs": 1,
              "random_state": 3}
    ref = (lgb.LGBMRegressor(**params) if task == "regression"
           else lgb.LGBMClassifier(**params))
    ref.fit(X[fit], y[fit], categorical_feature=[3])
    if task == "regression":
        assert np.allclose(model.predict(X[valid]), ref.predict(X[valid]),
                           atol=1e-12)
        assert score == pytest.approx(r2_score(y[valid], ref.predict(X[valid])),
                                      abs=1e-12)
        return
    want = ref.predict_proba(X[valid])
    assert np.allclose(model.predict_proba(X[valid]), want, atol=1e-12)
    assert list(model.classes_) == list(ref.classes_)
    full = np.zeros((valid.sum(), classes))
    full[:, ref.classes_] = want
    present = np.unique(y[valid])
    sub = full[:, present] / full[:, present].sum(1, keepdims=True)
    expect = (roc_auc_score(y[valid], sub[:, 1]) if classes == 2 else
              roc_auc_score(np.searchsorted(present, y[valid]), sub,
                            multi_class="ovr", average="macro"))
    assert score == pytest.approx(expect, abs=1e-12)
    assert ovr_auc(y[valid], full) == pytest.approx(expect, abs=1e-12)
