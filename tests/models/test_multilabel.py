"""Multilabel tasks: a row's set of labels, one model per label or a chain,
a threshold per label, per-label and micro/macro metrics (checked against
scikit-learn), saved and served; an audit per label."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import scipy.sparse as sp
from pydantic import ValidationError
from sklearn import metrics as skm
from sklearn.datasets import make_multilabel_classification
from sklearn.linear_model import LogisticRegression
from sklearn.multioutput import ClassifierChain

import mlsd
from mlsd.errors import ModelError
from mlsd.models import ModelArtifact, MultiLabelLearner, multilabel_metrics
from mlsd.models._bootstrap import metric_replicates
from mlsd.models._train import encode_target, parse_labels, target_array
from mlsd.pipeline import Project
from mlsd.spec import ProblemSpec, ProjectSpec


@pytest.mark.parametrize("value, labels", [
    ("sports|politics", ["sports", "politics"]), (" a | b |a", ["a", "b"]),
    ('["x", "y"]', ["x", "y"]), ("[]", []), ("solo", ["solo"]), ("", []),
    (None, None), ("[broken", None), ('{"a": 1}', None), (["p", 3], ["p", "3"])])
def test_a_target_reads_as_a_json_list_or_joined_labels(value, labels):
    assert parse_labels(value, "|") == labels


def test_labels_training_never_saw_leave_the_row_kept():
    classes, index = encode_target(ProblemSpec(task="multilabel", target="t"),
                                   ["a|b", "b", "[]", None, "c"])
    assert classes == ["a", "b", "c"]
    Y, keep = target_array("multilabel", ["a|zzz", None, "[]", "c|b"], index)
    assert keep.tolist() == [True, False, True, True]
    assert Y.tolist() == [[1, 0, 0], [0, 0, 0], [0, 0, 0], [0, 1, 1]]


@pytest.mark.parametrize("values, message", [
    (["a", "a|b", "a"], "on every training row"),
    (["a", "a", None], "1 distinct label"),
])
def test_a_target_with_nothing_to_learn_is_refused(values, message):
    with pytest.raises(ModelError, match=message):
        encode_target(ProblemSpec(task="multilabel", target="t"), values)


def _scores(n: int = 400, k: int = 4, seed: int = 0):
    rng = np.random.default_rng(seed)
    Y = (rng.random((n, k)) < [0.5, 0.3, 0.1, 0.02]).astype(int)
    Y[:, 3] = 0
    Y[:5, 3] = 1  # a rare label
    P = np.clip(Y * 0.35 + rng.random((n, k)) * 0.65, 0, 1)
    return Y, P


def test_metrics_equal_scikit_learns():
    Y, P = _scores()
    thr = [0.5, 0.4, 0.6, 0.3]
    got = multilabel_metrics(Y, P, thr, labels=["a", "b", "c", "d"])
    pred = (P >= np.array(thr)).astype(int)
    assert got["micro_f1"] == pytest.approx(skm.f1_score(Y, pred, average="micro"),
                                            abs=1e-6)
    assert got["macro_f1"] == pytest.approx(
        skm.f1_score(Y, pred, average="macro", zero_division=0), abs=1e-6)
    assert got["hamming_loss"] == pytest.approx(skm.hamming_loss(Y, pred), abs=1e-6)
    assert got["subset_accuracy"] == pytest.approx(skm.accuracy_score(Y, pred),
                                                   abs=1e-6)
    assert got["micro_precision"] == pytest.approx(
        skm.precision_score(Y, pred, average="micro"), abs=1e-6)
    assert got["macro_pr_auc"] == pytest.approx(
        skm.average_precision_score(Y, P, average="macro"), abs=1e-6)
    assert got["micro_pr_auc"] == pytest.approx(
        skm.average_precision_score(Y, P, average="micro"), abs=1e-6)
    for j, row in enumerate(got["per_label"]):
        assert row["label"] == "abcd"[j] and row["threshold"] == thr[j]
        assert row["f1"] == pytest.approx(skm.f1_score(Y[:, j], pred[:, j]), abs=1e-6)
        assert row["positives"] == int(Y[:, j].sum())
    # a label absent from these rows has no F1: macro averages the others
    Y2 = Y.copy()
    Y2[:, 3] = 0
    got2 = multilabel_metrics(Y2, P, thr)
    assert got2["per_label"][3]["f1"] is None
    assert got2["macro_f1"] == pytest.approx(
        skm.f1_score(Y2, (P >= np.array(thr)).astype(int), average="macro",
                     labels=[0, 1, 2]), abs=1e-6)


def test_a_bootstrap_replicate_of_every_row_once_is_the_metric_itself():
    Y, P = _scores(seed=1)
    thr = [0.45, 0.5, 0.55, 0.5]
    names = ["micro_pr_auc", "micro_f1", "macro_f1", "micro_precision",
             "micro_recall", "hamming_loss", "subset_accuracy", "log_loss",
             "macro_pr_auc", "macro_roc_auc"]
    reps = metric_replicates("multilabel", Y, P, thr, np.ones((1, len(Y))), names)
    want = multilabel_metrics(Y, P, thr)
    for m in names:
        assert reps[m][0] == pytest.approx(want[m], abs=1e-5), m


@pytest.fixture(scope="module")
def labelled():
    X, Y = make_multilabel_classification(n_samples=700, n_features=12, n_classes=4,
                                          n_labels=2, random_state=3)
    X = (X - X.mean(0)) / X.std(0)
    return sp.csr_matrix(X[:500]), Y[:500], sp.csr_matrix(X[500:]), Y[500:]


@pytest.mark.parametrize("chain", [False, True])
def test_linear_labels_equal_scikit_learns_binary_relevance_and_chain(labelled,
                                                                       chain):
    X, Y, Xt, _ = labelled
    ours = MultiLabelLearner(base="linear", n_classes=4, chain=chain).fit(X, Y)
    if chain:
        ref = ClassifierChain(LogisticRegression(max_iter=2000),
                              order=list(range(4))).fit(X.toarray(), Y)
        want = ref.predict_proba(Xt.toarray())
    else:
        want = np.column_stack([
            LogisticRegression(max_iter=2000).fit(X, Y[:, j]).predict_proba(Xt)[:, 1]
            for j in range(4)])
    assert np.allclose(ours.predict(Xt), want, atol=1e-4)


@pytest.mark.parametrize("chain", [False, True])
def test_label_models_round_trip_and_tampering_is_caught(labelled, tmp_path, chain):
    X, Y, Xt, Yt = labelled
    learner = MultiLabelLearner(base="lightgbm", n_classes=4, chain=chain,
                                params={"n_estimators": 30},
                                class_weight="balanced").fit(X, Y, Xt, Yt)
    name = learner.save(tmp_path)
    meta = {"kind": "lightgbm", "task": "multilabel", "n_classes": 4,
            **learner.meta()}
    again = MultiLabelLearner.load(tmp_path, meta)
    assert again.chain is chain
    assert np.array_equal(again.predict(Xt), learner.predict(Xt))
    assert again.importance().shape == (X.shape[1],)
    doc = json.loads((tmp_path / name).read_text())
    (tmp_path / doc["models"][2]["path"]).write_text("tree\n")
    with pytest.raises(ModelError, match="changed since"):
        MultiLabelLearner.load(tmp_path, meta)
    doc["models"][2]["path"] = "../elsewhere/model.lgb.txt"
    (tmp_path / name).write_text(json.dumps(doc))
    with pytest.raises(ModelError, match="outside the model's folder"):
        MultiLabelLearner.load(tmp_path, meta)


def test_calibration_maps_each_label_alone():
    from mlsd.models._calibration import apply_calibration, fit_calibration

    Y, P = _scores(seed=2)
    low = P ** 3  # every label's scores too low
    cal = fit_calibration("isotonic", low, Y, "multilabel")
    after = apply_calibration(cal, low)
    assert after.shape == low.shape
    assert not np.allclose(after.sum(axis=1), 1.0)  # not renormalised
    for j in range(3):
        assert np.mean((after[:, j] - Y[:, j]) ** 2) < np.mean(
            (low[:, j] - Y[:, j]) ** 2)


@pytest.mark.parametrize("change, message", [
    ({"split": {"strategy": "stratified"}}, "split.strategy: stratified"),
    ({"imbalance": {"resample": "smote"}}, "imbalance.resample"),
    ({"model": {"class_weight": "effective"}}, "model.class_weight"),
    ({"model": {"onnx": True}}, "model.onnx"),
    ({"augment": {"mixup": {}}}, "augment.smote and augment.mixup"),
    ({"features": [{"column": "c", "encode": "target"}]}, "target encoder"),
    ({"problem": {"task": "binary", "target": "tags"}, "model": {"chain": True}},
     "chain is for multilabel"),
])
def test_what_a_label_set_cannot_take_is_refused(change, message):
    doc = {"name": "p", "problem": {"task": "multilabel", "target": "tags"},
           "sources": {"s": {"path": "data/s.csv"}}, "features": [{"column": "x"}]}
    doc.update(change)
    with pytest.raises(ValidationError, match=message):
        ProjectSpec.model_validate(doc)


def multilabel_project(folder: Path, n: int = 700, seed: int = 0) -> Path:
    """A project of posts tagged with a set of topics (sports and politics
    rarely together, tech on its own), from words and numbers."""
    rng = np.random.default_rng(seed)
    words = {"sports": ["match", "goal", "team"], "politics": ["vote", "law", "party"],
             "tech": ["chip", "app", "code"]}
    (folder / "data").mkdir(parents=True)
    with open(folder / "data" / "posts.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["post_id", "text", "length", "hour", "tags"])
        for i in range(n):
            x = rng.normal(size=2)
            tags = [t for t, p in (("sports", 1 / (1 + np.exp(-2 * x[0]))),
                                   ("politics", 1 / (1 + np.exp(2 * x[0] - 1))),
                                   ("tech", 1 / (1 + np.exp(-2 * x[1] + 1))))
                    if rng.random() < p]
            toks = [str(rng.choice(words[t])) for t in tags if rng.random() < 0.6]
            toks += [str(rng.choice(["the", "a", "news", "today"])) for _ in range(4)]
            rng.shuffle(toks)
            w.writerow([f"p{i}", " ".join(toks), round(float(x[0]) * 100 + 500, 1),
                        int(rng.integers(0, 24)),
                        json.dumps(tags) if i % 3 == 0 else "|".join(tags) or "[]"])
    (folder / "mlsd.yaml").write_text(
        "name: tags\nseed: 1\nproblem: {task: multilabel, target: tags}\n"
        "sources:\n  posts: {path: data/posts.csv, key: post_id}\n"
        "features:\n  - {column: text, encode: tfidf}\n  - {column: length}\n"
        "  - {column: hour}\n"
        "model: {kind: lightgbm, params: {n_estimators: 40}}\n"
        "evaluation: {replicates: 200}\n")
    return folder


@pytest.fixture(scope="module")
def ran(tmp_path_factory):
    folder = multilabel_project(tmp_path_factory.mktemp("multilabel") / "p")
    return folder, mlsd.run(Project.of(folder))


def test_a_run_measures_each_label_and_the_set(ran):
    folder, s = ran
    m = s["model"]
    assert m["task"] == "multilabel" and m["classes"] == ["politics", "sports", "tech"]
    assert len(m["threshold"]) == 3 and all(0 < t < 1 for t in m["threshold"])
    test = m["metrics"]["model"]["test"]
    assert m["metrics"]["primary"] == "micro_pr_auc"
    assert [r["label"] for r in test["per_label"]] == m["classes"]
    assert s["metric_names"][0] == "micro_pr_auc"
    assert m["beats_baselines"] is True
    assert set(m["metrics"]["baselines"]) == {"prior", "one_feature"}
    assert m["metrics"]["bootstrap"]["intervals"]["model"]["micro_f1"]
    assert s["split"]["classes"]["tech"]["train"] > 0
    assert s["imbalance"]["labels_per_row"]
    labels = s["audit_design"]["labels"]
    assert labels["audited"] == ["politics", "sports", "tech"]
    from mlsd.report._mlflow import run_metrics

    assert {"test_label_tech_f1", "test_micro_pr_auc_low"} <= set(run_metrics(s))
    html = (folder / s["paths"]["report"]).read_text()
    assert "Each label" in html and "Precision-recall curve of each label" in html


def test_a_chain_is_one_setting_away_and_saved_as_such(ran):
    folder, _ = ran
    s = mlsd.run(Project.of(folder).with_overrides(["model.chain=true"]),
                 until="train")
    manifest = json.loads((folder / s["paths"]["model"] / "manifest.json").read_text())
    assert manifest["chain"] is True and manifest["separator"] == "|"
    art = ModelArtifact.load(folder / s["paths"]["model"])
    assert art.learner.chain is True


def test_served_and_batch_labels_are_the_scores_over_each_threshold(ran, tmp_path):
    from fastapi.testclient import TestClient

    from mlsd.serve import create_app

    folder, s = ran
    model_dir = folder / s["paths"]["model"]
    art = ModelArtifact.load(model_dir)
    rows = [{"text": "goal team vote", "length": 560.0, "hour": 3},
            {"text": "chip app code", "length": 420.0, "hour": 20}]
    with TestClient(create_app(model_dir)) as c:
        got = c.post("/predict", json=rows).json()["predictions"]
    scores = art.score(pa.Table.from_pylist(rows))
    for g, row in zip(got, scores, strict=True):
        assert list(g["scores"]) == art.manifest["classes"]
        assert g["labels"] == [c for c, p, t in zip(art.manifest["classes"], row,
                                                     art.manifest["threshold"],
                                                     strict=True) if p >= t]
    src = tmp_path / "new.csv"
    src.write_text("post_id,text,length,hour\nq1,goal team vote,560,3\n"
                   "q2,chip app code,420,20\n")
    out = tmp_path / "out.csv"
    mlsd.pipeline.score_file(model_dir, src, out)
    lines = out.read_text().splitlines()
    assert '"score_politics","score_sports","score_tech","labels"' in lines[0]
    assert [ln.split(",")[-2].strip('"') for ln in lines[1:]] == [
        "|".join(g["labels"]) for g in got]


@pytest.mark.parametrize("values, found", [
    (['["a", "b"]', '["b"]', "[]"], "|"),
    (["a;b", "b", "c;a", "a", "b;c", "c"], ";"),
    (["x|y", "y", "x", "z", "y|z"] * 3, "|"),
    (["Sci;Fi", "Drama", "Sci;Fi"], None),  # the separator is part of the classes
    (["red", "green", "blue"], None),
    (["a sentence; with a semicolon", "plain"] + ["other"] * 20, None),
])
def test_init_tells_label_sets_from_classes(values, found):
    from mlsd.scaffold._propose import _label_sets

    got = _label_sets(values)
    assert (got[0] if got else None) == found


def test_init_proposes_a_multilabel_project_that_runs(tmp_path):
    import yaml

    data = multilabel_project(tmp_path / "src", n=300) / "data" / "posts.csv"
    mlsd.init(tmp_path / "proj", str(data), target="tags")
    spec = yaml.safe_load((tmp_path / "proj" / "mlsd.yaml").read_text())
    assert spec["problem"]["task"] == "multilabel"
    assert spec["problem"]["separator"] == "|"
    assert spec["split"]["strategy"] == "random"
    assert ProjectSpec.model_validate(spec).problem.task == "multilabel"
    with pytest.raises(mlsd.errors.DataError, match="holds no label sets"):
        mlsd.init(tmp_path / "proj2", str(data), target="hour", task="multilabel")
