"""Planted leaks: each check fires on its leak (just over its threshold) and
stays quiet on the clean twin (and on a leak just under its threshold)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pytest
from sklearn import datasets

from mlsd.audit import audit_pair, split_table

LEAK_CHECKS = {"duplicates_across_splits", "near_duplicates_across_splits",
               "group_overlap", "time_overlap", "feature_after_target_time",
               "single_feature_power", "id_like_column", "target_derived_feature",
               "preprocessed_before_split"}


def _synthetic(n=6000, seed=0, pos=0.3):
    """A binary task with real but imperfect signal, a category, a group
    (customers with several rows) and a timestamp."""
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    cat = rng.choice(["a", "b", "c", "d"], n)
    logit = 1.2 * x1 - 0.8 * x2 + (cat == "a") * 0.7
    logit += np.log(pos / (1 - pos)) - np.median(logit)
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    return {"x1": x1, "x2": x2, "cat": cat, "customer": np.array(
        [f"c{i}" for i in rng.integers(0, n // 4, n)]),
        "t": np.array([t0 + timedelta(hours=int(h)) for h in
                       np.sort(rng.integers(0, 24 * 365, n))]), "y": y}


def _table(cols: dict) -> pa.Table:
    return pa.table({k: pa.array(list(v)) if isinstance(v, np.ndarray) and
                     v.dtype == object else v for k, v in cols.items()})


def _split(table: pa.Table, test_share=0.25, seed=1):
    mask = np.random.default_rng(seed).random(table.num_rows) < test_share
    return table.filter(pa.array(~mask)), table.filter(pa.array(mask))


def _checks(result, severity=None):
    return {f.check for f in result.findings
            if severity is None or f.severity == severity}


def _sklearn(name):
    loader = {"breast_cancer": datasets.load_breast_cancer, "wine":
              datasets.load_wine, "diabetes": datasets.load_diabetes,
              "digits": datasets.load_digits}[name]
    d = loader()
    cols = {f"f{i}": d.data[:, i] for i in range(d.data.shape[1])}
    cols["y"] = d.target
    return _table(cols)


@pytest.mark.parametrize("name", ["breast_cancer", "wine", "diabetes", "digits"])
def test_real_data_sets_are_clean(name):
    train, test = _split(_sklearn(name))
    res = audit_pair(train, test, target="y")
    assert not (_checks(res) & LEAK_CHECKS), [f.to_dict() for f in res.findings]


def test_synthetic_clean_twin_is_quiet():
    base = _synthetic()
    train, test = split_table(_table(base), "time:t", target="y")[:2]
    res = audit_pair(train, test, target="y", time_column="t",
                     allow_shared=["customer"])
    leaks = {f.check for f in res.findings if f.severity != "low"}
    assert not leaks, [f.to_dict() for f in res.findings]
    assert [f.check for f in res.findings] == ["group_overlap"]  # declared shared
    # undeclared, the recurring customer is a candidate group key
    res = audit_pair(train, test, target="y", time_column="t")
    assert [(f.check, f.severity) for f in res.findings] == [
        ("id_like_column", "medium")]
    assert res.task == "binary" and res.rows["test"] > 1000
    for f in res.findings:
        assert f.evidence["rows_used"] > 0


def _copy_rows(train: pa.Table, test: pa.Table, share: float, noise=False):
    k = int(share * test.num_rows)
    rows = train.slice(0, k)
    if noise:
        rows = rows.set_column(0, "x1", pa.array(
            rows.column("x1").to_numpy() * (1 + 1e-6)))
        rows = rows.set_column(2, "cat", pa.array(
            [c.upper() for c in rows.column("cat").to_pylist()]))
    return pa.concat_tables([test.slice(k), rows])


def test_duplicates_across_splits_just_over_and_under():
    train, test = _split(_table(_synthetic()))
    over = audit_pair(train, _copy_rows(train, test, 0.02), target="y")
    assert "duplicates_across_splits" in _checks(over, "high")
    f = next(f for f in over.findings if f.check == "duplicates_across_splits")
    assert f.evidence["test_rows_with_copy_in_train"] == int(0.02 * test.num_rows)
    under = audit_pair(train, _copy_rows(train, test, 0.005), target="y")
    assert "duplicates_across_splits" not in _checks(under)


def test_near_duplicates_are_medium_not_exact():
    train, test = _split(_table(_synthetic()))
    res = audit_pair(train, _copy_rows(train, test, 0.03, noise=True), target="y")
    assert "near_duplicates_across_splits" in _checks(res, "medium")
    assert "duplicates_across_splits" not in _checks(res)


def test_group_overlap_declared_shared_and_group_split():
    table = _table(_synthetic())
    train, test = _split(table)
    assert "group_overlap" in _checks(audit_pair(train, test, target="y",
                                                 group="customer"), "high")
    shared = audit_pair(train, test, target="y", allow_shared=["customer"])
    assert "group_overlap" in _checks(shared, "low")
    assert "group_overlap" not in _checks(shared, "high")
    g_train, g_test, _ = split_table(table, "group:customer", target="y")
    assert "group_overlap" not in _checks(audit_pair(g_train, g_test, target="y",
                                                     group="customer"))


def test_undeclared_recurring_id_is_a_candidate_key():
    cols = _synthetic()
    cols["customer"] = np.array([f"c{i}" for i in np.random.default_rng(3)
                                 .integers(0, 1200, 6000)])
    train, test = _split(_table(cols))
    res = audit_pair(train, test, target="y")
    f = next(f for f in res.findings if f.check == "id_like_column")
    assert f.columns == ["customer"] and f.severity == "medium"
    assert f.evidence["test_rows_with_value_in_train_share"] > 0.5


def test_row_order_that_predicts_the_label():
    cols = _synthetic()
    order = np.argsort(cols["y"], kind="stable")  # rows sorted by label ...
    cols = {k: v[order] for k, v in cols.items()}
    cols["row"] = np.arange(6000)  # ... then numbered: the number leaks
    del cols["customer"]
    train, test = _split(_table(cols))
    res = audit_pair(train, test, target="y")
    assert "id_like_column" in _checks(res, "medium")
    cols["row"] = np.random.default_rng(5).permutation(6000)  # clean twin
    train, test = _split(_table(cols))
    assert "id_like_column" not in _checks(audit_pair(train, test, target="y"))


def test_random_split_of_time_ordered_data():
    table = _table(_synthetic())
    train, test = _split(table)
    res = audit_pair(train, test, target="y", time_column="t")
    f = next(f for f in res.findings if f.check == "time_overlap")
    assert f.severity == "high" and f.evidence[
        "test_rows_older_than_newest_train_share"] > 0.9
    t_train, t_test, implied = split_table(table, "time:t", target="y")
    assert implied["time"] == "t"
    assert "time_overlap" not in _checks(audit_pair(t_train, t_test, target="y",
                                                    time_column="t"))


def test_profile_shows_times_as_dates():
    cols = _synthetic()
    train, test = split_table(_table(cols), "time:t", target="y")[:2]
    prof = audit_pair(train, test, target="y", time_column="t",
                      allow_shared=["customer"]).profile["columns"]
    q = prof["t"]["quantiles"]
    assert q["0"] == min(cols["t"]).isoformat(timespec="seconds")
    assert q["0"] < q["0.5"] < q["1"] and q["1"].startswith("2024-")
    assert isinstance(prof["x1"]["quantiles"]["0.5"], float)


def test_feature_recorded_after_prediction_time():
    cols = _synthetic()
    rng = np.random.default_rng(2)
    late = rng.random(6000) < 0.2
    cols["closed_at"] = np.array([t + timedelta(days=3 if lt else -1) for t, lt in
                                  zip(cols["t"], late, strict=True)])
    train, test = split_table(_table(cols), "time:t", target="y")[:2]
    res = audit_pair(train, test, target="y", time_column="t")
    assert "feature_after_target_time" in _checks(res, "high")
    cols["closed_at"] = np.array([t - timedelta(days=1) for t in cols["t"]])
    train, test = split_table(_table(cols), "time:t", target="y")[:2]
    assert "feature_after_target_time" not in _checks(
        audit_pair(train, test, target="y", time_column="t"))


@pytest.mark.parametrize("noise, fires", [(0.05, True), (0.6, False)])
def test_single_feature_that_nearly_solves_the_task(noise, fires):
    cols = _synthetic()
    cols["score"] = cols["y"] + np.random.default_rng(4).normal(0, noise, 6000)
    train, test = _split(_table(cols))
    res = audit_pair(train, test, target="y")
    assert ("single_feature_power" in _checks(res, "high")) == fires
    assert res.features["score"]["one_feature_score"] > (0.99 if fires else 0.7)


@pytest.mark.parametrize("flip, fires", [(0.004, True), (0.25, False)])
def test_category_derived_from_the_label(flip, fires):
    cols = _synthetic()
    rng = np.random.default_rng(6)
    status = np.where(cols["y"] == 1, "refunded", "kept")
    status = np.where(rng.random(6000) < flip, rng.choice(["refunded", "kept"],
                                                          6000), status)
    cols["status"] = status
    train, test = _split(_table(cols))
    res = audit_pair(train, test, target="y")
    assert ("target_derived_feature" in _checks(res, "high")) == fires


@pytest.mark.parametrize("noise, fires", [(0.01, True), (0.5, False)])
def test_number_derived_from_a_regression_target(noise, fires):
    d = _sklearn("diabetes")
    y = d.column("y").to_numpy().astype(float)
    rng = np.random.default_rng(7)
    d = d.append_column("billed", pa.array(3 * y + rng.normal(0, noise * y.std(),
                                                              len(y))))
    train, test = _split(d)
    res = audit_pair(train, test, target="y")
    assert res.task == "regression"
    assert ("target_derived_feature" in _checks(res, "high")) == fires


@pytest.mark.parametrize("how", ["standardise", "minmax", "impute"])
def test_preprocessing_fitted_on_train_and_test(how):
    cols = _synthetic()
    x = cols["x1"] * 3 + 10
    rng = np.random.default_rng(8)
    is_test = rng.random(6000) < 0.25
    gone = rng.random(6000) < 0.1  # missing values to impute

    def prep(fit: np.ndarray) -> np.ndarray:
        """``x`` scaled or imputed with statistics of the rows in ``fit``."""
        if how == "standardise":
            return (x - x[fit].mean()) / x[fit].std()
        if how == "minmax":
            return (x - x[fit].min()) / (x[fit].max() - x[fit].min())
        return np.where(gone, x[fit & ~gone].mean(), x)

    is_test[np.argmax(x)] = True  # min-max over the union shows when an
    # extreme is a test row (else train spans [0, 1] too and nothing leaked)
    for fit, fires in ((np.ones(6000, bool), True), (~is_test, False)):
        cols["x1"] = prep(fit)
        table = _table(cols)
        train = table.filter(pa.array(~is_test))
        test = table.filter(pa.array(is_test))
        res = audit_pair(train, test, target="y")
        assert ("preprocessed_before_split" in _checks(res, "high")) == fires, how


def test_generalisation_checks_are_low_and_thresholded():
    cols = _synthetic()
    train, test = _split(_table(cols))
    rng = np.random.default_rng(9)
    n = test.num_rows
    x2 = test.column("x2").to_numpy() + 1.0  # shifted by one sd
    cats = np.array(test.column("cat").to_pylist(), dtype=object)
    cats[rng.random(n) < 0.05] = "zz"  # an unseen category
    x1 = test.column("x1").to_numpy().copy()
    x1_missing = rng.random(n) < 0.2
    shifted = test.set_column(1, "x2", pa.array(x2)).set_column(
        2, "cat", pa.array(list(cats))).set_column(
        0, "x1", pa.array(x1, mask=x1_missing))
    res = audit_pair(train, shifted, target="y")
    low = {(f.check, tuple(f.columns)) for f in res.findings if f.severity == "low"}
    assert {("distribution_shift", ("x2",)), ("unseen_categories", ("cat",)),
            ("missing_rate_shift", ("x1",))} <= low
    quiet = audit_pair(train, test, target="y")
    assert not {"distribution_shift", "unseen_categories",
                "missing_rate_shift"} & _checks(quiet)


def test_class_imbalance_is_low():
    train, test = _split(_table(_synthetic(pos=0.03)))
    res = audit_pair(train, test, target="y")
    f = next(f for f in res.findings if f.check == "class_imbalance")
    assert f.severity == "low" and f.evidence["minority_share"] < 0.1
    train, test = _split(_table(_synthetic(pos=0.3)))
    assert "class_imbalance" not in _checks(audit_pair(train, test, target="y"))


def test_ablation_importance_and_design_review():
    """Removing a leak multiplies the probe's error (ablation_drop); an honest
    dominant feature does not. Gain, permutation and SHAP importances all put
    the leak first, and the design review says one feature does the job."""
    cols = _synthetic()
    cols["leak"] = cols["y"] + np.random.default_rng(4).normal(0, 0.05, 6000)
    train, test = _split(_table(cols))
    res = audit_pair(train, test, target="y", allow_shared=["customer"])
    f = next(f for f in res.findings if f.check == "ablation_drop")
    # the leak is also named by single_feature_power: other evidence, medium
    assert f.columns == ["leak"] and f.severity == "medium"
    assert f.evidence["score_with"] > 0.99 > f.evidence["score_without"]
    imp = res.model["importance"]
    assert imp[0]["feature"] == "leak"
    for kind in ("gain", "permutation", "shap"):
        assert max(imp, key=lambda d: d[kind] or 0)["feature"] == "leak", kind
    bee = res.model["shap"]["beeswarm"][0]
    assert bee["feature"] == "leak" and len(bee["shap"]) == len(bee["value"])
    assert res.design["best_single_feature"]["feature"] == "leak"
    assert "rule may be enough" in res.design["verdict"]
    # the clean twin: x1 dominates honestly, and no ablation finding
    del cols["leak"]
    train, test = _split(_table(cols))
    clean = audit_pair(train, test, target="y", allow_shared=["customer"])
    assert "ablation_drop" not in _checks(clean)
    assert clean.model["ablation"] and clean.model["importance"][0]["feature"] == "x1"
    assert "clear margin" in clean.design["verdict"]
    assert clean.design["labelled_rows_per_class"]["1"] > 1000


def test_design_review_sees_target_drift():
    cols = _synthetic()
    rising = np.linspace(0, 1, 6000) > np.random.default_rng(1).random(6000)
    cols["y"] = rising.astype(np.int64)  # the label rate climbs over the year
    train, test = split_table(_table(cols), "time:t", target="y")[:2]
    res = audit_pair(train, test, target="y", time_column="t",
                     allow_shared=["customer"])
    assert res.design["target_drift"] > 0.6
    assert res.design["target_by_time_decile"][0] < 0.2 < 0.8 < \
        res.design["target_by_time_decile"][-1]


def _texts(n, rng, templates=0.0):
    """Sentences of random words; a share of them from a few templates."""
    words = np.array(["data", "model", "leak", "split", "train", "test", "user",
                      "post", "spam", "time", "value", "feature", "label", "row",
                      "group", "shift", "score", "metric", "city", "price"])
    out = []
    for i in range(n):
        if rng.random() < templates:
            out.append(f"buy cheap watches now at shop number {i % 5} today only")
        else:
            out.append(" ".join(rng.choice(words, 12)) + f" {rng.integers(1e9)}")
    return out


def test_text_near_duplicates_by_minhash():
    rng = np.random.default_rng(11)
    cols = _synthetic(n=4000)
    cols["text"] = np.array(_texts(4000, rng, templates=0.05), dtype=object)
    train, test = _split(_table(cols))
    # the clean twin: templates recur within train as much as across: quiet
    res = audit_pair(train, test, target="y", allow_shared=["customer"])
    assert "near_duplicates_across_splits" not in _checks(res)
    # plant: 4% of test texts are training texts with a word added at the end
    k = int(0.04 * test.num_rows)
    copied = [t + " ok" for t in train.column("text").to_pylist()[100:100 + k]]
    texts = copied + test.column("text").to_pylist()[k:]
    leaky = test.set_column(test.schema.get_field_index("text"), "text",
                            pa.array(texts))
    res = audit_pair(train, leaky, target="y", allow_shared=["customer"])
    f = next(f for f in res.findings if f.check == "near_duplicates_across_splits")
    assert f.columns == ["text"] and f.severity == "medium"
    assert f.evidence["test_rows_near_copy_share"] >= 0.035


def test_a_column_recorded_after_the_outcome_is_found_under_the_auc_cut():
    """Zero for nearly every negative row, a value for every positive one: the
    one-feature AUC (about 0.98) stays under its 0.99 threshold, but the shape
    of the column gives it away (outcome_signature)."""
    rng = np.random.default_rng(7)
    cols = _synthetic()
    n = len(cols["y"])
    hit = (cols["y"] == 1) | (rng.random(n) < 0.03)
    cols["refund_amount"] = np.where(hit, rng.gamma(2.0, 50.0, n), 0.0)
    train, test = _split(_table(cols))
    res = audit_pair(train, test, target="y", allow_shared=["customer"])
    f = next(f for f in res.findings if f.check == "outcome_signature")
    assert f.columns == ["refund_amount"] and f.severity == "high"
    assert "it has a value in 100% of class 1 rows and 3% of the others" in f.message
    one = res.features["refund_amount"]["one_feature_score"]
    assert one < 0.99  # the single-feature check alone would miss it
    assert "single_feature_power" not in _checks(res)


def test_an_outcome_signature_on_a_few_dozen_rows_is_weighed_by_chance():
    """No minimum row count: on 24 training rows a column filled for exactly
    the top targets is found, with its p-value in the words; a column filled
    on a few rows at random is not, however well its rows happen to fall."""
    rng = np.random.default_rng(3)
    n = 32
    x = rng.normal(size=n)
    y = 3 * x + rng.normal(size=n)
    top = y >= np.quantile(y, 0.8)
    cols = {"x": x, "y": y, "bonus_paid": np.where(top, rng.gamma(2, 50, n), 0.0)}
    table = _table(cols)
    train, test = table.slice(0, 24), table.slice(24)
    res = audit_pair(train, test, target="y", task="regression")
    f = next(f for f in res.findings if f.check == "outcome_signature")
    assert f.columns == ["bonus_paid"] and f.severity == "high"
    assert f.evidence["p_value"] <= f.evidence["alpha"]
    assert f"by chance: p = {f.evidence['p_value']:.1g} on 24 rows" in f.message
    # on 12 rows, the 2 rows of the rare class both filled: as clean a shape,
    # but 1 chance in 66 (Fisher), not rare enough for the columns tried
    yb = np.array([1, 0, 0, 1] + [0] * 8 + [1, 0, 1, 0], dtype=np.int64)
    flag = np.array([5.0, 0, 0, 7.0] + [0] * 8 + [0, 0, 3.0, 0])
    clean = _table({"x": x[:16], "y": yb, "flag": flag})
    res = audit_pair(clean.slice(0, 12), clean.slice(12), target="y")
    f = next((f for f in res.findings if f.check == "outcome_signature"), None)
    assert f is None, f
    assert "outcome_signature" not in _checks(res)


def test_missing_more_often_in_one_class_is_no_outcome_signature():
    """Values missing not at random (35% of positives, 5% of negatives) carry
    signal honestly: no finding."""
    rng = np.random.default_rng(8)
    cols = _synthetic()
    n = len(cols["y"])
    gone = rng.random(n) < np.where(cols["y"] == 1, 0.35, 0.05)
    cols["age"] = np.where(gone, np.nan, rng.normal(40, 10, n))
    train, test = _split(_table(cols))
    res = audit_pair(train, test, target="y", allow_shared=["customer"])
    assert "outcome_signature" not in _checks(res)


def test_one_dominant_feature_alone_is_a_low_ablation_finding():
    """A feature the probe cannot do without, that no other check points at,
    is reported low (one strong legitimate feature does the same); with other
    evidence on the same column it stays medium."""
    from mlsd.audit._model import Probe, ablation_findings

    pair = type("P", (), {"task": "binary"})()
    probe = Probe(score=0.99, metric="auc", features=["x"], rows_fit=100,
                  rows_valid=50)
    probe.ablation = [{"feature": "x", "score": 0.80, "suspect": False}]
    alone = ablation_findings(pair, probe)
    assert [f.severity for f in alone] == ["low"]
    assert "no other check points at it" in alone[0].message
    backed = ablation_findings(pair, probe, suspects=["x"])
    assert [f.severity for f in backed] == ["medium"]


def test_an_undeclared_repeated_measures_group_is_found():
    """About a hundred rows, a subject column with a few dozen values, each
    measured a few times: a random split puts one subject on both sides. A
    code with many rows each (a year) is not taken for an entity."""
    rng = np.random.default_rng(9)
    subjects = np.repeat(np.arange(36), 3)
    base = rng.normal(size=36)[subjects]
    cols = {"subject_id": subjects, "x": base + rng.normal(0, 0.05, len(subjects)),
            "year": rng.choice([2020, 2021, 2022], len(subjects)),
            "y": (base + rng.normal(0, 0.5, len(subjects)) > 0).astype(np.int64)}
    train, test = _split(_table(cols), test_share=0.3, seed=2)
    res = audit_pair(train, test, target="y")
    f = next(f for f in res.findings if f.check == "group_overlap")
    assert f.columns == ["subject_id"] and f.severity == "medium"
    assert "3.0 rows each" in f.message or "rows each on average" in f.message
    assert not [g for g in res.findings if g.columns == ["year"]
                and g.severity != "low"]
    # declared shared, it is low
    res = audit_pair(train, test, target="y", allow_shared=["subject_id"])
    assert {f.severity for f in res.findings if f.columns == ["subject_id"]} == \
        {"low"}
