"""SHAP values of the run's own model: TreeExplainer for LightGBM,
LinearExplainer for linear models, and their sums per source column."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from mlsd.features import Block
from mlsd.models import LightGBMLearner, LinearLearner, explain

NAMES = ["a", "b=x", "b=y", "noise"]
BLOCKS = [Block("a", "numeric", 0, 1, ("a",)), Block("b", "onehot", 1, 3, ("b",)),
          Block("noise", "numeric", 3, 4, ("noise",))]


def _data(task: str, n: int = 3000, seed: int = 0):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=n)
    b = rng.integers(0, 2, n)
    noise = rng.normal(size=n)
    X = np.column_stack([a, b == 0, b == 1, noise]).astype(float)
    z = 2.0 * a + 1.0 * (b == 1)
    if task == "regression":
        y = z + rng.normal(scale=0.1, size=n)
    elif task == "binary":
        y = (z + rng.logistic(size=n) > 0.5).astype(int)
    else:
        y = np.digitize(z + rng.normal(scale=0.3, size=n), [-1.0, 1.0])
    return X, y


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
@pytest.mark.parametrize("kind", ["lightgbm", "linear"])
def test_the_driving_input_comes_first(task, kind):
    X, y = _data(task)
    cls = LightGBMLearner if kind == "lightgbm" else LinearLearner
    n_classes = len(np.unique(y)) if task != "regression" else 1
    learner = cls(task=task, n_classes=n_classes, params={"n_estimators": 50}
                  if kind == "lightgbm" else {}).fit(sp.csr_matrix(X[:2000]), y[:2000])
    out = explain(learner, sp.csr_matrix(X[2000:]), sp.csr_matrix(X[:2000]), NAMES,
                  BLOCKS)
    assert out["explainer"] == ("TreeExplainer" if kind == "lightgbm"
                                else "LinearExplainer")
    assert out["rows_used"] == 1000
    assert out["by_feature"][0]["feature"] == "a"
    assert [c["column"] for c in out["by_column"]][:2] == ["a", "b"]
    assert out["by_column"][-1]["column"] == "noise"
    assert out["beeswarm"][0]["feature"] == "a"
    assert len(out["beeswarm"][0]["shap"]) == 1000


def test_linear_values_are_coefficient_times_distance_from_the_background():
    """For a linear model with independent inputs, SHAP is exact:
    coef * (x - mean of the background), so the mean |SHAP| is known."""
    X, y = _data("regression")
    learner = LinearLearner(task="regression").fit(X[:2000], y[:2000])
    out = explain(learner, X[2000:], X[:1000], NAMES, BLOCKS)
    coef = learner.coef_[0]
    expected = np.abs(coef * (X[2000:] - X[:1000].mean(0))).mean(0)
    got = {d["feature"]: d["shap"] for d in out["by_feature"]}
    for j, name in enumerate(NAMES):
        assert got.get(name, 0.0) == pytest.approx(expected[j], rel=1e-3, abs=1e-6)
    # a column's share is the mean |sum| over its inputs, not the sum of means
    b = coef[1:3] * (X[2000:, 1:3] - X[:1000, 1:3].mean(0))
    share = {c["column"]: c["shap"] for c in out["by_column"]}
    assert share["b"] == pytest.approx(np.abs(b.sum(1)).mean(), rel=1e-3)


def test_tree_values_add_up_to_the_model_output():
    """TreeExplainer's values plus the base value are the raw score: the
    beeswarm's points are real SHAP values, not a rescaling."""
    import shap

    X, y = _data("regression")
    learner = LightGBMLearner(task="regression", params={"n_estimators": 30}
                              ).fit(X[:2000], y[:2000])
    out = explain(learner, X[2000:], X[:2000], NAMES, BLOCKS, seed=3)
    rows = np.sort(np.random.default_rng(3).choice(1000, 1000, replace=False))
    values = shap.TreeExplainer(learner.booster_).shap_values(X[2000:][rows])
    top = out["beeswarm"][0]
    j = NAMES.index(top["feature"])
    assert np.allclose(top["shap"], np.round(values[:, j], 5))
    base = shap.TreeExplainer(learner.booster_).expected_value
    assert np.allclose(values.sum(1) + base, learner.predict(X[2000:][rows]),
                       atol=1e-6)


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
def test_lightgbm_own_tree_shap_is_shap_tree_explainer(task):
    """mlsd asks LightGBM for its TreeSHAP values (no shap, no numba at run
    time): they are shap's TreeExplainer values, in the same shape."""
    import warnings

    import lightgbm as lgb
    import shap

    from mlsd.models import tree_shap

    rng = np.random.default_rng(5)
    X = rng.normal(size=(600, 4))
    X[rng.random(X.shape) < 0.1] = np.nan  # missing values take the default path
    if task == "regression":
        model = lgb.LGBMRegressor(n_estimators=25, verbose=-1)
        y = 2 * np.nan_to_num(X[:, 0]) + np.nan_to_num(X[:, 1])
    else:
        model = lgb.LGBMClassifier(n_estimators=25, verbose=-1)
        cuts = [0.0] if task == "binary" else [-0.5, 0.5]
        y = np.digitize(np.nan_to_num(X[:, 0]), cuts)
    model.fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = np.asarray(shap.TreeExplainer(model.booster_).shap_values(X[:80]))
    got = tree_shap(model.booster_, X[:80])
    assert got.shape == expected.shape
    assert np.allclose(got, expected, atol=1e-9)
