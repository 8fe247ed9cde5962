"""The online path's model call (rows as sparse entries, no matrix) gives
what ``predict`` gives on the same rows: LightGBM through its C API's
single-row fast path, linear models by their coefficients."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from mlsd.models._learners import LightGBMLearner, LinearLearner


def _data(task: str, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = sp.random(600, 40, density=0.2, random_state=seed, format="csr")
    X.data = rng.normal(size=X.nnz)
    z = np.asarray(X[:, :3].sum(axis=1)).ravel()
    if task == "regression":
        y = z + rng.normal(scale=0.1, size=600)
    elif task == "binary":
        y = (z > 0).astype(int)
    else:
        y = np.digitize(z, [-0.5, 0.5])
    return X, y


def _entries(X) -> list:
    rows = []
    for i in range(X.shape[0]):
        row = X.getrow(i)
        order = np.random.default_rng(i).permutation(row.nnz)  # any order
        rows.append((row.indices[order].tolist(), row.data[order].tolist()))
    return rows


@pytest.mark.parametrize("kind", ["lightgbm", "linear"])
@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
def test_rows_without_a_matrix_predict_as_the_matrix(kind, task):
    X, y = _data(task)
    n_classes = 3 if task == "multiclass" else 1
    cls = LightGBMLearner if kind == "lightgbm" else LinearLearner
    params = {"n_estimators": 40, "num_leaves": 7} if kind == "lightgbm" else {}
    learner = cls(task=task, n_classes=n_classes, params=params).fit(X, y)
    test, _ = _data(task, seed=1)
    test = test[:50]
    want = learner.predict(test)
    got = learner.predict_rows(_entries(test), test.shape[1])
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    # entries as arrays or tuples, unsorted, rows long then short (the C
    # call's buffers are reused from row to row)
    other = [(np.asarray(i, dtype=np.int64), tuple(v)) for i, v in _entries(test)]
    other.sort(key=lambda e: -len(e[0]))
    order = sorted(range(len(other)), key=lambda r: -len(_entries(test)[r][0]))
    np.testing.assert_allclose(learner.predict_rows(other, test.shape[1]),
                               np.asarray(want)[order], rtol=0, atol=1e-12)
    # a row with no entry (every input zero) and one row alone
    empty = sp.csr_matrix((1, test.shape[1]))
    np.testing.assert_allclose(learner.predict_rows([([], [])], test.shape[1]),
                               learner.predict(empty), rtol=0, atol=1e-12)


def test_a_focal_booster_and_missing_values_too():
    X, y = _data("binary")
    X = X.tolil()
    X[::7, 1] = np.nan
    X = X.tocsr()
    learner = LightGBMLearner(task="binary", loss={"kind": "focal", "gamma": 2.0},
                              params={"n_estimators": 30}).fit(X, y)
    np.testing.assert_allclose(learner.predict_rows(_entries(X[:80]), X.shape[1]),
                               learner.predict(X[:80]), rtol=0, atol=1e-12)
    import copy

    twin = copy.deepcopy(learner)  # the C predictor is not copied, made again
    np.testing.assert_allclose(twin.predict_rows(_entries(X[:5]), X.shape[1]),
                               learner.predict(X[:5]), rtol=0, atol=1e-12)
