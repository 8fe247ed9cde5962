from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.datasets import load_breast_cancer, load_diabetes, load_wine

from mlsd.errors import ModelError
from mlsd.features import Block, FeaturePipeline
from mlsd.models import (
    LightGBMLearner,
    LinearLearner,
    ModelArtifact,
    binary_metrics,
    choose_threshold,
    encode_target,
    train,
)
from mlsd.spec import ModelSpec, ProblemSpec


def test_threshold_maximises_f1():
    y = np.array([0, 0, 0, 1, 1, 0, 1])
    s = np.array([0.1, 0.2, 0.3, 0.4, 0.8, 0.5, 0.9])
    thr = choose_threshold(y, s)
    best = max(binary_metrics(y, s, t)["f1"] for t in s)
    assert binary_metrics(y, s, thr)["f1"] == best


def test_threshold_follows_the_cost_matrix():
    rng = np.random.default_rng(0)
    y = (rng.random(2000) < 0.1).astype(int)
    s = np.clip(y * 0.3 + rng.random(2000) * 0.7, 0, 1)
    cheap_fn = choose_threshold(y, s, objective="cost", costs={"fp": 10, "fn": 1})
    dear_fn = choose_threshold(y, s, objective="cost", costs={"fp": 1, "fn": 10})
    assert dear_fn < cheap_fn  # missing a positive costs more: flag more


def test_imbalanced_metrics_are_not_just_accuracy():
    y = np.array([0] * 95 + [1] * 5)
    m = binary_metrics(y, np.zeros(100), 0.5)
    assert m["accuracy"] == 0.95 and m["recall"] == 0 and m["f1"] == 0
    assert m["pr_auc"] == pytest.approx(0.05)


def test_encode_target_errors():
    p = ProblemSpec(task="binary", target="y", positive="spam")
    assert encode_target(p, ["ham", "spam", "ham"])[0] == ["ham", "spam"]
    with pytest.raises(ModelError, match="never occurs"):
        encode_target(p, ["a", "b"])
    with pytest.raises(ModelError, match="3 distinct values"):
        encode_target(p, ["a", "spam", "b"])


def _split(X, y, seed=0):
    idx = np.random.default_rng(seed).permutation(len(y))
    parts = np.split(idx, [int(0.6 * len(y)), int(0.8 * len(y))])
    names = ("train", "valid", "test")
    return ({n: sp.csr_matrix(X[i]) for n, i in zip(names, parts, strict=True)},
            {n: y[i] for n, i in zip(names, parts, strict=True)})


@pytest.mark.parametrize("kind", ["lightgbm", "linear"])
@pytest.mark.parametrize("task, loader", [("binary", load_breast_cancer),
                                          ("multiclass", load_wine),
                                          ("regression", load_diabetes)])
def test_train_beats_baselines_on_real_data(task, loader, kind):
    data = loader()
    Xraw = (data.data - data.data.mean(0)) / data.data.std(0)
    X, y = _split(Xraw, data.target.astype(float if task == "regression" else int))
    names = [f"f{i}" for i in range(Xraw.shape[1])]
    classes = sorted(set(data.target.tolist())) if task != "regression" else []
    if task == "binary":
        classes = [0, 1]
    res = train(ProblemSpec(task=task, target="y", positive=1),
                ModelSpec(kind=kind, params={"n_estimators": 100} if kind ==
                          "lightgbm" else {}),
                X=X, y=y, classes=classes, names=names,
                blocks=[Block("x", "numeric", 0, len(names), ("x",))], seed=0)
    assert res.beats_baselines is True
    assert set(res.metrics["baselines"]) == {"prior", "one_feature"}
    if task == "binary":
        assert 0 < res.threshold < 1
        assert res.metrics["model"]["test"]["pr_auc"] > 0.95


@pytest.mark.parametrize("cls", [LightGBMLearner, LinearLearner])
def test_learners_round_trip_without_pickle(tmp_path, cls):
    data = load_breast_cancer()
    X = sp.csr_matrix((data.data - data.data.mean(0)) / data.data.std(0))
    learner = cls(task="binary", n_classes=2, params={"n_estimators": 30} if
                  cls is LightGBMLearner else {}, class_weight="balanced")
    learner.fit(X, data.target)
    name = learner.save(tmp_path)
    assert not name.endswith((".pkl", ".joblib"))
    again = cls.load(tmp_path, {"task": "binary", "n_classes": 2})
    assert np.array_equal(again.predict(X), learner.predict(X))


def test_artifact_detects_tampering(tmp_path):
    data = load_breast_cancer()
    X = sp.csr_matrix(data.data[:, :3])
    learner = LinearLearner(task="binary", n_classes=2).fit(X, data.target)
    import pyarrow as pa

    from mlsd.engine import DuckDBEngine
    from mlsd.features import NumericFeature

    engine = DuckDBEngine()
    t = pa.table({"a": data.data[:, 0]})
    pipe = FeaturePipeline(transforms=[NumericFeature(column="a")]).analyze(
        engine, engine.from_arrow(t))
    folder = tmp_path / "m"
    ModelArtifact.save(folder, manifest={"model_id": "m", "kind": "linear",
                                         "task": "binary", "n_classes": 2},
                       pipeline=pipe, learner=learner, input_schema={"columns": {}})
    # no catalog records this folder: loaded only when trusted
    with pytest.raises(ModelError, match="--trust-unregistered"):
        ModelArtifact.load(folder)
    assert ModelArtifact.load(folder, trust_unregistered=True).model_id == "m"
    from mlsd.models._artifact import folder_digest

    digest = folder_digest(folder)
    assert ModelArtifact.load(folder, digest=digest).model_id == "m"
    (folder / "model.linear.json").write_text('{"coef": [[9]], "intercept": [0]}')
    with pytest.raises(ModelError, match="sha256 mismatch"):
        ModelArtifact.load(folder, trust_unregistered=True)
    with pytest.raises(ModelError, match="digest does not match"):
        ModelArtifact.load(folder, digest=digest)


def test_every_metric_the_spec_accepts_is_computed():
    """`problem.metrics` is checked against TASK_METRICS: each name must be a
    metric the task's evaluation really reports (or the column would be empty)."""
    import numpy as np

    from mlsd.models._metrics import task_metrics
    from mlsd.spec import TASK_METRICS

    y = np.array([0, 1, 0, 1, 1, 0])
    outputs = {"binary": np.array([.1, .8, .3, .6, .9, .2]),
               "multiclass": np.eye(2)[y] * 0.8 + 0.1,
               "multilabel": np.eye(2)[y] * 0.8 + 0.1,
               "regression": y + 0.1}
    labels = {"multilabel": np.eye(2, dtype=int)[y]}
    for task, names in TASK_METRICS.items():
        got = task_metrics(task, labels.get(task, y), outputs[task])
        assert set(names) <= set(got), (task, set(names) - set(got))


@pytest.mark.parametrize("task", ["binary", "regression"])
def test_a_sample_weight_of_two_is_a_row_drawn_twice(task):
    """The linear learner with weights equals it fitted on the rows repeated;
    LightGBM takes the weights too (its model changes with them)."""
    if task == "binary":
        X, y = load_breast_cancer(return_X_y=True)
    else:
        X, y = load_diabetes(return_X_y=True)
    X = (X - X.mean(0)) / X.std(0)
    X, y = sp.csr_matrix(X[:300]), y[:300]
    w = np.where(np.arange(300) < 100, 2.0, 1.0)
    twice = sp.vstack([X, X[:100]]).tocsr()
    y2 = np.concatenate([y, y[:100]])
    a = LinearLearner(task=task, seed=0).fit(X, y, sample_weight=w)
    b = LinearLearner(task=task, seed=0).fit(twice, y2)
    assert np.allclose(a.coef_, b.coef_, atol=1e-3, rtol=1e-3)
    p = {"n_estimators": 30}
    plain = LightGBMLearner(task=task, params=p, seed=0).fit(X, y).predict(X)
    heavy = LightGBMLearner(task=task, params=p, seed=0).fit(
        X, y, sample_weight=np.where(np.arange(300) < 150, 10.0, 0.1)).predict(X)
    assert not np.allclose(plain, heavy)
