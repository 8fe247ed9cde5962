"""Why values are missing: planted mechanisms get their hint, with evidence."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from mlsd.audit import audit_pair


def _planted(n=4000, seed=0, task="binary"):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    group = rng.choice(["a", "b", "c"], n)
    if task == "binary":
        y = (x + rng.logistic(size=n) > 0.8).astype(np.int64)
        high = y == 1
    else:
        y = 3 * x + rng.normal(size=n)
        high = y > np.quantile(y, 0.7)
    salary = rng.lognormal(size=n)
    # not at random: hidden far more often when the label is high
    salary[rng.random(n) < np.where(high, 0.5, 0.05)] = np.nan
    # at random: one group of users skips the field
    age = rng.normal(40, 10, n)
    age[(group == "a") & (rng.random(n) < 0.6)] = np.nan
    # completely at random
    score = rng.normal(size=n)
    score[rng.random(n) < 0.2] = np.nan
    cols = {"x": x, "group": pa.array(group.tolist()), "salary": salary,
            "age": age, "score": score, "y": y}
    t = pa.table({k: pa.array(v, from_pandas=True) if isinstance(v, np.ndarray)
                  else v for k, v in cols.items()})
    return t.slice(0, int(n * 0.8)), t.slice(int(n * 0.8))


@pytest.mark.parametrize("task", ["binary", "regression"])
def test_each_mechanism_gets_its_hint_with_evidence(task):
    train, test = _planted(task=task)
    res = audit_pair(train, test, target="y", task=task, seed=0)
    by = {d["column"]: d for d in res.missingness}
    assert set(by) == {"salary", "age", "score"}
    assert by["salary"]["verdict"] == "not_at_random"
    assert by["salary"]["label"]["p_holm"] < 1e-6
    assert by["age"]["verdict"] == "at_random"
    assert by["age"]["predictable"]["by"] == "group"
    assert by["age"]["predictable"]["cramers_v"] > 0.3
    assert "group" in by["age"]["advice"]
    assert by["score"]["verdict"] == "completely_at_random"
    assert by["score"]["missing_train"] == pytest.approx(0.2, abs=0.03)
    assert by["score"]["missing_test"] == pytest.approx(0.2, abs=0.05)
    # each with its evidence, in the JSON `mlsd audit` writes
    doc = res.to_dict()
    assert doc["missingness"] == res.missingness
    if task == "binary":
        eff = by["salary"]["label"]["effect"]
        assert eff["positive_rate_missing"] > 2 * eff["positive_rate_present"]
    else:
        assert by["salary"]["label"]["test"] == "mann-whitney u"


def test_no_missing_value_no_diagnosis_and_few_rows_say_so():
    train, test = _planted(n=400)
    res = audit_pair(train.drop_columns(["salary", "age", "score"]), test.drop_columns(
        ["salary", "age", "score"]), target="y", seed=0)
    assert res.missingness == []
    few = train.set_column(train.schema.get_field_index("score"), "score",
                           pa.array([None] * 3 + [1.0] * (train.num_rows - 3),
                                    pa.float64()))
    res = audit_pair(few, test, target="y", seed=0)
    by = {d["column"]: d for d in res.missingness}
    assert by["score"]["verdict"] == "too_few"


def test_clean_data_with_rare_categories_raises_no_false_hint():
    """Completely-at-random gaps (2% of 800 rows: about 16 a column) next to
    Zipf-distributed categories with many rare values: pooling the small
    categories keeps the chi-square honest, so no column is called
    predictable (without the pooling, rare categories that happen to hold a
    missing row or two made 8 of 25 such columns "at random")."""
    rng = np.random.default_rng(0)
    n = 1000
    levels = np.array([f"level_{j}" for j in range(40)])
    cols = {f"c{k}": pa.array(levels[rng.zipf(1.6, n) % 40]) for k in range(8)}
    for k in range(30):
        x = rng.normal(size=n)
        x[rng.random(n) < 0.02] = np.nan
        cols[f"f{k}"] = pa.array(x, from_pandas=True)
    cols["y"] = pa.array((rng.random(n) < 0.3).astype(np.int64))
    t = pa.table(cols)
    res = audit_pair(t.slice(0, 800), t.slice(800), target="y", seed=0)
    verdicts = {d["column"]: d["verdict"] for d in res.missingness}
    assert len(verdicts) == 25  # the 25 most missing are diagnosed
    assert set(verdicts.values()) <= {"completely_at_random", "too_few"}
