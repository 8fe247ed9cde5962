"""Class imbalance: weights, resampling on the train split only, two phases."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.datasets import load_breast_cancer, load_wine

from mlsd.errors import DataError, SpecError
from mlsd.features import Block
from mlsd.models import train
from mlsd.models._learners import LightGBMLearner, LinearLearner
from mlsd.spec import ImbalanceSpec, ModelSpec, ProblemSpec
from mlsd.trainingdata import (
    TrainRows,
    class_balance,
    class_weights_for,
    cost_weights,
    resample,
)


def _imbalanced(n=600, share=0.08, seed=0):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < share).astype(int)
    X = rng.normal(size=(n, 4)) + y[:, None] * 1.5
    return sp.csr_matrix(X), y


def test_tomek_links_removes_exactly_the_majority_member_of_each_pair():
    """Brute force: i and j form a Tomek link when they are of opposite classes
    and each is the other's nearest neighbour; the majority member goes."""
    X, y = _imbalanced(300)
    dense = X.toarray()
    d = ((dense[:, None, :] - dense[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    nearest = d.argmin(1)
    majority = np.bincount(y).argmax()
    expected = {i for i in range(len(y)) if nearest[nearest[i]] == i
                and y[i] != y[nearest[i]] and y[i] == majority}
    assert expected  # the data have some
    res = resample(TrainRows(X, y), "tomek", seed=0)
    removed = set(range(len(y))) - set(res.origin.tolist())
    assert removed == expected
    assert (res.X != X[res.origin]).nnz == 0 and (res.y == y[res.origin]).all()


def test_resamplers_mark_where_each_row_comes_from():
    X, y = _imbalanced()
    n_pos, n_neg = int(y.sum()), int((1 - y).sum())
    over = resample(TrainRows(X, y), "random_over", seed=1)
    assert np.bincount(over.y).tolist() == [n_neg, n_neg]
    assert (over.origin >= 0).all() and over.summary([0, 1])["repeated"] > 0
    assert (over.X != X[over.origin]).nnz == 0
    under = resample(TrainRows(X, y), "random_under", seed=1, ratio=0.5)
    assert np.bincount(under.y).tolist() == [2 * n_pos, n_pos]
    smote = resample(TrainRows(X, y), "smote", seed=1)
    assert (smote.origin == -1).sum() == n_neg - n_pos
    assert (smote.y[smote.origin == -1] == 1).all()  # synthetic minority rows
    both = resample(TrainRows(X, y), "smote_tomek", seed=1)
    assert len(both.y) <= len(smote.y) and (both.origin == -1).any()
    kept = both.origin >= 0
    assert (both.X[kept] != X[both.origin[kept]]).nnz == 0
    assert resample(TrainRows(X, y), "none", seed=1).X is X


def test_resampling_takes_the_train_split_only():
    X, y = _imbalanced()
    with pytest.raises(DataError, match="train split only, not 'valid'"):
        TrainRows(X, y, split="valid")
    with pytest.raises(DataError, match="TrainRows"):
        resample((X, y), "smote", seed=0)
    with pytest.raises(SpecError, match="unknown method"):
        resample(TrainRows(X, y), "adasyn", seed=0)


def test_train_hands_only_train_rows_to_the_sampler(monkeypatch):
    """Structurally: in a whole training with resampling and a comparison of
    strategies, every matrix a sampler receives is the train matrix."""
    from imblearn.base import BaseSampler

    seen = []
    real = BaseSampler.fit_resample

    def spy(self, X, y, **kw):
        seen.append((X.shape[0], float(abs(X).sum())))
        return real(self, X, y, **kw)

    monkeypatch.setattr(BaseSampler, "fit_resample", spy)
    X, y = {}, {}
    Xa, ya = _imbalanced(900)
    for name, rows in (("train", slice(0, 600)), ("valid", slice(600, 750)),
                       ("test", slice(750, 900))):
        X[name], y[name] = Xa[rows], ya[rows]
    res = train(ProblemSpec(task="binary", target="y", positive=1),
                ModelSpec(kind="linear"), X=X, y=y, classes=[0, 1],
                names=[f"f{i}" for i in range(4)],
                blocks=[Block("x", "numeric", 0, 4, ("x",))], seed=0,
                imbalance=ImbalanceSpec(resample="smote", compare=[
                    "random_under", "tomek", "smote_tomek"]))
    train_sig = (600, float(abs(X["train"]).sum()))
    # smote, random_under, tomek, smote_tomek: the first of smote_tomek's two
    # steps sees the train matrix; its Tomek step sees SMOTE's output
    assert seen and seen[0] == train_sig
    assert all(s == train_sig or s[0] > 600 for s in seen)
    assert {(r["method"], r["chosen"]) for r in res.balance["comparison"]} == {
        ("none", False), ("smote", True), ("random_under", False),
        ("tomek", False), ("smote_tomek", False)}
    assert res.balance["resampled"]["synthetic"] > 0
    assert res.balance["imbalanced"] is True


def test_class_weights_balanced_effective_per_class_and_costs():
    y = np.array([0] * 90 + [1] * 10)
    bal = class_weights_for(y, 2, "balanced", [0, 1])
    assert np.isclose(bal[y == 1][0] / bal[y == 0][0], 9.0)
    beta = 0.99
    eff = class_weights_for(y, 2, "effective", [0, 1], beta=beta)
    expected = (1 - beta ** 90) / (1 - beta ** 10)  # w1 / w0
    assert np.isclose(eff[y == 1][0] / eff[y == 0][0], expected)
    assert 1 < expected < 9  # between none and balanced
    assert np.isclose(eff.mean(), 1.0)
    per = class_weights_for(y, 2, {"1": 5, "0": 1}, [0, 1])
    assert np.isclose(per[y == 1][0] / per[y == 0][0], 5.0)
    with pytest.raises(SpecError, match="'2' is not a class"):
        class_weights_for(y, 2, {"2": 5}, [0, 1])
    cw = cost_weights(y, {"fp": 1, "fn": 20})
    assert np.isclose(cw[y == 1][0] / cw[y == 0][0], 20.0)
    with pytest.raises(SpecError, match="false negative must cost more"):
        cost_weights(y, {"fp": 1, "fn": 0, "tp": 0})
    info = class_balance(y, ["ham", "spam"])
    assert info["ratio"] == 9.0 and info["imbalanced"] is True
    assert class_balance(np.array([0, 1] * 50), ["a", "b"])["imbalanced"] is False


@pytest.mark.parametrize("cls", [LightGBMLearner, LinearLearner])
def test_two_phase_learning_fine_tunes_on_the_original_rows(cls):
    data = load_breast_cancer()
    X = sp.csr_matrix((data.data - data.data.mean(0)) / data.data.std(0))
    y = data.target
    keep = np.r_[np.flatnonzero(y == 1), np.flatnonzero(y == 0)[:40]]
    X, y = X[keep], y[keep]
    params = {"n_estimators": 40} if cls is LightGBMLearner else {}
    first = resample(TrainRows(X, y), "random_over", seed=0)
    one = cls(task="binary", n_classes=2, params=params, seed=0).fit(first.X, first.y)
    before = one.predict(X)
    if cls is LightGBMLearner:
        trees = one.booster_.num_trees()
        one.fine_tune(X, y, share=0.5)
        assert one.booster_.num_trees() == trees + 20
    else:
        one.fine_tune(X, y, share=0.5)
    after = one.predict(X)
    assert not np.allclose(before, after)
    # the original rows hold 9 positives for 1 negative, the resampled ones
    # as many of each: fine-tuned on them, the model leans to the positive
    assert after.mean() > before.mean()


def test_per_class_weights_reach_training_on_a_multiclass_task():
    data = load_wine()
    Xa = sp.csr_matrix((data.data - data.data.mean(0)) / data.data.std(0))
    ya = data.target
    idx = np.random.default_rng(0).permutation(len(ya))
    X = {"train": Xa[idx[:100]], "valid": Xa[idx[100:140]], "test": Xa[idx[140:]]}
    y = {"train": ya[idx[:100]], "valid": ya[idx[100:140]], "test": ya[idx[140:]]}
    kw = {"X": X, "y": y, "classes": [0, 1, 2],
          "names": [f"f{i}" for i in range(13)],
          "blocks": [Block("x", "numeric", 0, 13, ("x",))], "seed": 0}
    problem = ProblemSpec(task="multiclass", target="y")
    plain = train(problem, ModelSpec(kind="linear", class_weight="none"), **kw)
    heavy = train(problem, ModelSpec(kind="linear", class_weight={"2": 50.0}), **kw)
    p_plain = plain.learner.predict(X["test"])[:, 2].mean()
    p_heavy = heavy.learner.predict(X["test"])[:, 2].mean()
    assert p_heavy > p_plain  # class 2 weighs 50 times: predicted more


# -- focal loss ----------------------------------------------------------------
def test_focal_gradient_matches_its_loss_and_is_the_log_loss_at_gamma_0():
    from mlsd.models._losses import focal_grad, focal_hess, focal_loss

    z = np.linspace(-8, 8, 41)
    for label in (0, 1):
        y = np.full(len(z), label)
        for gamma, alpha in ((0.0, None), (2.0, None), (1.5, 0.25)):
            numeric = (focal_loss(z + 1e-6, y, gamma, alpha)
                       - focal_loss(z - 1e-6, y, gamma, alpha)) / 2e-6
            assert np.allclose(numeric, focal_grad(z, y, gamma, alpha), atol=1e-6)
            assert (focal_hess(z, y, gamma, alpha) > 0).all()
        p = 1 / (1 + np.exp(-z))
        assert np.allclose(focal_grad(z, y, 0.0), p - label)
        assert np.allclose(focal_loss(z, y, 0.0),
                           -np.log(p if label else 1 - p))


@pytest.mark.parametrize("cls", [LightGBMLearner, LinearLearner])
def test_focal_loss_at_gamma_0_is_the_learners_own_and_round_trips(cls, tmp_path):
    data = load_breast_cancer()
    X = sp.csr_matrix((data.data - data.data.mean(0)) / data.data.std(0))
    y = data.target
    params = {"n_estimators": 60} if cls is LightGBMLearner else {}
    own = cls(task="binary", n_classes=2, params=params, seed=0).fit(X, y)
    focal0 = cls(task="binary", n_classes=2, params=params, seed=0,
                 loss={"kind": "focal", "gamma": 0.0, "alpha": None}).fit(X, y)
    assert np.abs(own.predict(X) - focal0.predict(X)).max() < 0.05
    focal2 = cls(task="binary", n_classes=2, params=params, seed=0,
                 loss={"kind": "focal", "gamma": 2.0, "alpha": 0.25}).fit(X, y)
    p = focal2.predict(X)
    assert ((p > 0) & (p < 1)).all() and not np.allclose(p, focal0.predict(X))
    # saved and loaded with what its manifest keeps
    name = focal2.save(tmp_path)
    meta = {"task": "binary", "n_classes": 2, **focal2.meta()}
    assert name and meta["loss"]["kind"] == "focal"
    again = cls.load(tmp_path, meta)
    assert np.allclose(again.predict(X), p)


def test_focal_loss_is_for_binary_tasks():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="focal is for binary tasks"):
        from mlsd.spec import ProjectSpec

        ProjectSpec.model_validate({
            "name": "x", "problem": {"task": "multiclass", "target": "y"},
            "sources": {"a": {"path": "a.csv"}}, "features": [{"column": "f"}],
            "model": {"loss": "focal"}})


def test_smotenc_makes_raw_minority_rows_of_numbers_and_categories():
    import pyarrow as pa
    from palmerpenguins import load_penguins

    from mlsd.trainingdata import TrainTable, smotenc_rows

    frame = load_penguins()
    table = pa.Table.from_pandas(frame, preserve_index=False)
    classes = ["Adelie", "Chinstrap", "Gentoo"]
    cols = ["island", "bill_length_mm", "body_mass_g", "sex", "year"]
    new = smotenc_rows(TrainTable(table), columns=cols, target="species",
                       classes=classes, seed=0)
    counts = frame.species.value_counts()
    grown = new.column("species").to_pylist()
    # every class grows to the majority's count ('auto' for several classes)
    assert {c: grown.count(c) for c in classes} == {
        c: int(counts.max() - counts[c]) for c in classes}
    assert set(new.column("island").to_pylist()) <= set(frame.island)
    assert set(new.column("sex").to_pylist()) <= set(frame.sex.dropna()) | {None}
    mass = np.array(new.column("body_mass_g").to_pylist(), dtype=float)
    assert np.nanmin(frame.body_mass_g) <= mass.min() <= mass.max() <= np.nanmax(
        frame.body_mass_g)
    assert new.schema.field("year").type == pa.int64()
    with pytest.raises(SpecError, match="smotenc needs numeric and categorical"):
        smotenc_rows(TrainTable(table), columns=["island", "sex"],
                     target="species", classes=classes, seed=0)
