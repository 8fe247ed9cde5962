"""What each transform of the feature-engineering chapter computes, checked
against the definition (or scikit-learn's own transformer where one exists)."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest

from mlsd.engine import DuckDBEngine
from mlsd.errors import DataError, MlsdError
from mlsd.features import (
    BinsFeature,
    CrossFeature,
    FourierFeature,
    FrequencyFeature,
    HashedNgramsFeature,
    HashingFeature,
    NumericFeature,
    OrdinalFeature,
    PeriodicFeature,
    Target,
    TargetFeature,
    TfidfFeature,
)


def fit(t, table: pa.Table, target: Target | None = None):
    if "_row" not in table.column_names:
        table = table.append_column("_row", pa.array(np.arange(table.num_rows)))
    engine = DuckDBEngine(threads=1)
    return t.analyze(engine, engine.from_arrow(table), target=target)


def col(t, table) -> np.ndarray:
    return t.apply(table).toarray()


X = [1.0, 2.0, 2.0, None, 10.0, 4.0, 2.0, 7.0]
XT = pa.table({"x": pa.array(X, pa.float64())})


@pytest.mark.parametrize(("impute", "fill"), [
    ("median", 2.0), ("mean", 28 / 7), ("most_frequent", 2.0), ("zero", 0.0)])
def test_each_imputer_fills_with_its_training_value(impute, fill):
    t = fit(NumericFeature(column="x", impute=impute, scale="none"), XT)
    out = col(t, pa.table({"x": pa.array([None], pa.float64())}))
    assert out[0, 0] == pytest.approx(fill) and out[0, 1] == 1  # value, indicator


def test_constant_imputer_and_none_keeps_nan():
    t = fit(NumericFeature(column="x", impute="constant", fill_value=-5,
                           scale="none", missing_indicator=False), XT)
    assert col(t, pa.table({"x": pa.array([None], pa.float64())})).tolist() == [[-5]]
    t = fit(NumericFeature(column="x", impute="none", scale="none"), XT)
    assert np.isnan(col(t, pa.table({"x": pa.array([None], pa.float64())}))[0, 0])


def test_most_frequent_ties_go_to_the_smallest_value():
    t = fit(NumericFeature(column="x", impute="most_frequent", scale="none"),
            pa.table({"x": [5.0, 5.0, 3.0, 3.0, None]}))
    assert t.state_["fill"] == 3.0


@pytest.mark.parametrize("scale", ["standard", "minmax", "robust", "maxabs"])
def test_scalers_match_scikit_learn(scale):
    from sklearn.preprocessing import (
        MaxAbsScaler,
        MinMaxScaler,
        RobustScaler,
        StandardScaler,
    )

    peer = {"standard": StandardScaler(), "minmax": MinMaxScaler(),
            "robust": RobustScaler(), "maxabs": MaxAbsScaler()}[scale]
    rng = np.random.default_rng(0)
    x = rng.normal(3, 2, size=500)
    t = fit(NumericFeature(column="x", scale=scale), pa.table({"x": x}))
    new = rng.normal(3, 4, size=50)
    ours = col(t, pa.table({"x": new}))[:, 0]
    np.testing.assert_allclose(ours, peer.fit(x[:, None]).transform(new[:, None])[:, 0],
                               rtol=1e-9, atol=1e-12)


def test_quantile_scaling_maps_to_uniform_like_scikit_learn():
    from sklearn.preprocessing import QuantileTransformer

    x = np.random.default_rng(1).lognormal(size=2000)
    t = fit(NumericFeature(column="x", scale="quantile", n_quantiles=100),
            pa.table({"x": x}))
    new = np.array([0.0, 0.5, 1.0, 2.0, 1e9])
    ours = col(t, pa.table({"x": new}))[:, 0]
    peer = QuantileTransformer(n_quantiles=100).fit(x[:, None]).transform(new[:, None])
    np.testing.assert_allclose(ours, peer[:, 0], atol=0.01)
    assert ours[-1] == 1.0 and ours[0] == 0.0


def test_log1p_refuses_negative_values_with_the_column_and_row():
    with pytest.raises(DataError, match=r"'x'.*log1p.*-2"):
        fit(NumericFeature(column="x", scale="log1p"), pa.table({"x": [1.0, -2.0]}))
    t = fit(NumericFeature(column="x", scale="log1p"), pa.table({"x": [1.0, 3.0]}))
    assert col(t, pa.table({"x": [np.e - 1]}))[0, 0] == pytest.approx(1.0)
    with pytest.raises(DataError, match="row 1 holds -0.5"):
        t.apply(pa.table({"x": [1.0, -0.5]}))


def test_bins_edges_quantiles_and_uniform():
    t = fit(BinsFeature(column="x", strategy="edges", edges=[2, 5]), XT)
    names = t.names()
    assert names == ["x[<2]", "x[2,5)", "x[>=5]", "x=__missing__"]
    out = col(t, pa.table({"x": pa.array([1.9, 2.0, 5.0, None], pa.float64())}))
    assert out.argmax(1).tolist() == [0, 1, 2, 3]  # an edge goes to the right
    q = fit(BinsFeature(column="x", bins=4), pa.table({"x": np.arange(100.0)}))
    assert q.state_["edges"] == pytest.approx([24.75, 49.5, 74.25])
    u = fit(BinsFeature(column="x", strategy="uniform", bins=4, output="ordinal"),
            pa.table({"x": [0.0, 100.0]}))
    assert col(u, pa.table({"x": pa.array([0, 26, 99, None], pa.float64())}))[:, 0] \
        .tolist() == [0, 1, 3, -1]


def test_ordinal_follows_the_given_order_and_unknowns_are_minus_one():
    t = fit(OrdinalFeature(column="plan", order=["free", "pro", "team"]),
            pa.table({"plan": ["pro", "free"]}))
    out = col(t, pa.table({"plan": ["team", "free", "gold", None]}))[:, 0]
    assert out.tolist() == [2, 0, -1, -1]


def test_frequency_is_the_training_share():
    t = fit(FrequencyFeature(column="c"),
            pa.table({"c": ["a", "a", "a", "b", None, "a", "b", "c"]}))
    out = col(t, pa.table({"c": ["a", "b", "zzz", None]}))[:, 0]
    assert out.tolist() == pytest.approx([4 / 8, 2 / 8, 0.0, 1 / 8])


def _noise_data(n=6000, ids=3000, seed=0):
    rng = np.random.default_rng(seed)
    signal = rng.normal(size=n)
    y = (signal + rng.logistic(size=n) > 0).tolist()
    noise = [f"id{i}" for i in rng.integers(0, ids, size=n)]  # unrelated to y
    return pa.table({"_row": pa.array(np.arange(n)), "s": signal, "noise": noise,
                     "y": y})


def test_target_encoding_of_pure_noise_is_not_rewarded_on_validation():
    """A high-cardinality column that is pure noise: encoded with its own labels
    it looks predictive on the training rows (a leak); out of fold it does not,
    and validation rows (full-training state) confirm it carries nothing."""
    from sklearn.metrics import roc_auc_score

    data = _noise_data()
    train, valid = data.slice(0, 4000), data.slice(4000)
    t = fit(TargetFeature(column="noise", folds=5, smoothing=1.0), train,
            Target("y", "binary", True))
    y_tr = np.asarray(train.column("y").to_pylist())
    y_va = np.asarray(valid.column("y").to_pylist())
    naive = t.apply(train).toarray()[:, 0]  # the leak: rows see their own label
    oof = t.apply(train, training=True).toarray()[:, 0]
    val = t.apply(valid).toarray()[:, 0]
    assert roc_auc_score(y_tr, naive) > 0.75
    assert abs(roc_auc_score(y_tr, oof) - 0.5) < 0.05
    assert abs(roc_auc_score(y_va, val) - 0.5) < 0.05

    # a model trained on out-of-fold values does not lean on the noise
    import lightgbm as lgb

    def valid_auc(train_col):
        X = np.column_stack([np.asarray(train.column("s")), train_col])
        m = lgb.LGBMClassifier(n_estimators=100, verbose=-1, n_jobs=1).fit(X, y_tr)
        Xv = np.column_stack([np.asarray(valid.column("s")), val])
        return roc_auc_score(y_va, m.predict_proba(Xv)[:, 1])

    assert valid_auc(oof) > valid_auc(naive) + 0.02


def test_target_encoding_values_follow_the_smoothed_mean():
    table = pa.table({"c": ["a", "a", "a", "b", None],
                      "y": [1.0, 1.0, 0.0, 5.0, 3.0]})
    t = fit(TargetFeature(column="c", smoothing=2.0), table,
            Target("y", "regression"))
    prior = 10 / 5
    out = col(t, pa.table({"c": ["a", "b", "zzz", None]}))[:, 0]
    assert out.tolist() == pytest.approx([(2 + 2 * prior) / 5, (5 + 2 * prior) / 3,
                                          prior, (3 + 2 * prior) / 3])


def test_multiclass_target_encoding_gives_a_column_per_class():
    table = pa.table({"c": ["a", "a", "b", "b", "b", "a"],
                      "y": ["x", "y", "z", "z", "x", "x"]})
    t = fit(TargetFeature(column="c", smoothing=0.0), table,
            Target("y", "multiclass"))
    assert t.names() == ["c.target=x", "c.target=y", "c.target=z"]
    out = col(t, pa.table({"c": ["a", "b"]}))
    np.testing.assert_allclose(out, [[2 / 3, 1 / 3, 0], [1 / 3, 0, 2 / 3]])
    assert out.sum(1) == pytest.approx([1, 1])


def test_target_encoding_out_of_fold_needs_the_training_process():
    from mlsd.features import FeaturePipeline

    data = _noise_data(200, 20)
    t = fit(TargetFeature(column="noise"), data, Target("y", "binary", True))
    pipe = FeaturePipeline(transforms=[t])
    pipe.state_ = [t.to_dict()]
    loaded = FeaturePipeline.from_json(pipe.to_json())
    with pytest.raises(MlsdError, match="out-of-fold"):
        loaded.apply(data, training=True)
    with pytest.raises(MlsdError, match="needs target"):
        TargetFeature(column="noise").analyze(None, None)


def test_hashing_measures_collisions_and_names_buckets_by_training_values():
    values = ["alice"] * 5 + ["bob"] * 3 + [f"u{i}" for i in range(40)]
    t = fit(HashingFeature(column="u", buckets=8, seed=1), pa.table({"u": values}))
    rep = t.notes()
    assert rep["distinct"] == 42 and rep["buckets_used"] <= 8
    assert rep["collision_rate"] == 1.0  # 42 values in 8 buckets: all share
    names = t.names()
    from mlsd.features._categorical import bucket_of

    b = int(bucket_of(["alice"], 8, 1)[0])
    assert names[b].startswith(f"u#h{b}[alice,+")  # named by its most frequent
    wide = fit(HashingFeature(column="u", buckets=2**20), pa.table({"u": values}))
    assert wide.notes()["collision_rate"] < 0.05


def test_hashed_ngrams_are_named_by_their_most_frequent_ngram():
    from sklearn.feature_extraction.text import HashingVectorizer

    texts = ["free crypto now", "free crypto", "hello world", "free money"]
    t = fit(HashedNgramsFeature(column="t", buckets=64), pa.table({"t": texts}))
    hv = HashingVectorizer(n_features=64, ngram_range=(1, 2), alternate_sign=False,
                           norm=None)
    j = int(hv.transform(["free"]).indices[0])
    assert t.names()[j].startswith(f"t~ng{j}[free")
    assert t.notes()["distinct"] == 10  # 6 words and 4 word pairs
    assert t.notes()["docs_read"] == 4


def test_tfidf_matches_scikit_learn_on_the_training_vocabulary():
    from sklearn.feature_extraction.text import TfidfVectorizer

    train = ["the cat sat", "the dog sat", "a cat and a dog", "the end", None]
    t = fit(TfidfFeature(column="t", min_df=2), pa.table({"t": train}))
    vocab = t.state_["vocabulary"]
    assert vocab == ["cat", "dog", "sat", "the"]  # each in >= 2 documents
    peer = TfidfVectorizer(vocabulary=vocab).fit(["" if d is None else d
                                                  for d in train])
    new = ["the cat and the hat", "", "dog dog dog"]
    np.testing.assert_allclose(col(t, pa.table({"t": new})),
                               peer.transform(new).toarray(), rtol=1e-12)
    with pytest.raises(MlsdError, match="min_df"):
        fit(TfidfFeature(column="t", min_df=50), pa.table({"t": train}))


def test_random_fourier_features_approximate_the_rbf_kernel():
    rng = np.random.default_rng(0)
    data = rng.normal(size=(300, 2)) * [1.0, 1000.0]  # units differ: standardised
    t = fit(FourierFeature(columns=["a", "b"], dim=4000, gamma=0.5, seed=3),
            pa.table({"a": data[:, 0], "b": data[:, 1]}))
    pts = pa.table({"a": data[:20, 0], "b": data[:20, 1]})
    Z = col(t, pts)
    approx = Z @ Z.T
    std = (data - data.mean(0)) / data.std(0)
    d2 = ((std[:20, None, :] - std[None, :20, :]) ** 2).sum(-1)
    assert np.abs(approx - np.exp(-0.5 * d2)).max() < 0.08


def test_periodic_features_put_the_ends_of_the_cycle_together():
    from datetime import UTC, datetime

    ts = pa.array([datetime(2024, 5, 1, h, 30, tzinfo=UTC) for h in (23, 0, 12)],
                  pa.timestamp("us", tz="UTC"))
    t = fit(PeriodicFeature(column="t", period="24h", harmonics=1),
            pa.table({"t": ts}))
    Z = col(t, pa.table({"t": ts}))
    near, far = np.linalg.norm(Z[0] - Z[1]), np.linalg.norm(Z[0] - Z[2])
    assert near < 0.3 < 1.9 < far
    assert t.names() == ["t~sin1", "t~cos1"]


def test_crosses():
    table = pa.table({"country": ["FR", "FR", "US", "US", None],
                      "plan": ["pro", "free", "pro", "pro", "pro"],
                      "a": [1.0, 2.0, 3.0, 4.0, 5.0], "b": [2.0, 2.0, 0.0, 1.0, 0.0]})
    cc = fit(CrossFeature(columns=["country", "plan"], buckets=1024), table)
    j = col(cc, table).argmax(1)
    assert j[2] == j[3] and len({j[0], j[1], j[2], j[4]}) == 4
    assert cc.names()[j[2]].startswith(f"country*plan#h{j[2]}[US&pro")
    nn = fit(CrossFeature(columns=["a", "b"]), table)
    za = (np.array(table["a"]) - 3) / np.std(table["a"])
    zb = (np.array(table["b"]) - 1) / np.std(table["b"])
    np.testing.assert_allclose(col(nn, table)[:, 0], za * zb)
    assert nn.names() == ["a*b"]
    nc = fit(CrossFeature(columns=["a", "country"], bins=2, buckets=64), table)
    assert nc.state_["inputs"][0]["kind"] == "bins"


def test_state_json_has_no_nan_even_for_an_all_missing_column():
    t = fit(NumericFeature(column="x"), pa.table({"x": pa.array([None, None],
                                                                 pa.float64())}))
    json.dumps(t.state_, allow_nan=False)
    assert col(t, pa.table({"x": pa.array([1.5], pa.float64())}))[0, 0] == 1.5


def test_out_of_fold_groups_mix_the_rows_and_agree_with_the_engine():
    """Every fold gets its share, neighbours (a duplicated row next to its twin)
    are not split by parity, and the engine's fold of a row is numpy's."""
    from mlsd.features._categorical import _fold_expr, fold_of

    rows = np.arange(10_000)
    for folds in (2, 4, 5):
        f = fold_of(rows, folds, seed=3)
        assert np.bincount(f).min() > 10_000 / folds * 0.9
        same = np.mean(f[::2] == f[1::2])  # as if at random: 1 in `folds`
        assert abs(same - 1 / folds) < 0.03
    engine = DuckDBEngine(threads=1)
    t = engine.from_arrow(pa.table({"_row": rows}))
    sql = engine.to_arrow(t.select(f=_fold_expr(t, 5, 3))).column("f").to_numpy()
    assert np.array_equal(sql, fold_of(rows, 5, 3))
