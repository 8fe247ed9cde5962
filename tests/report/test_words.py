"""The report's words agree with its numbers, at edge values too (no rows, all
rows, tied scores): a verdict or a finding never says what its evidence does not."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pytest

from mlsd.audit import audit_pair
from mlsd.audit._leakage import duplicates_across_splits
from mlsd.report._html import run_checklist, run_verdict


def _model(task, score, one, prior, name):
    return {"task": task, "metrics": {
        "primary": name, "model": {"test": {name: score, "r2": score}},
        "baselines": {"prior": {"description": "class prior (majority)",
                                "test": {name: prior, "r2": prior}},
                      "one_feature": {"description": "depth-2 tree on likes",
                                      "test": {name: one, "r2": one}}}}}


@pytest.mark.parametrize("score, one, prior, words", [
    (0.80, 0.80, 0.10, "one feature does nearly as well"),      # tied scores
    (0.80, 0.795, 0.10, "one feature does nearly as well"),
    (0.80, 0.32, 0.10, "clear margin"),                          # 2.5x the rule
    (0.12, 0.11, 0.10, "barely beats"),
    (0.0, 0.0, 0.0, "barely beats"),                             # nothing learnt
])
def test_the_verdict_follows_the_metrics_it_quotes(score, one, prior, words):
    for task, name in (("binary", "pr_auc"), ("regression", "rmse")):
        text = run_verdict(_model(task, score, one, prior, name))
        assert words in text, (task, text)
        quoted = [float(x) for x in re.findall(r"\d\.\d{3}", text)]
        assert round(score, 3) in quoted  # the model's own number is in the words
        if task == "regression":
            assert text.count("r2") == 1  # R2, not RMSE (which has no scale)


def test_no_verdict_without_a_test_score():
    assert run_verdict({}) is None
    assert run_verdict(_model("binary", float("nan"), 0.5, 0.1, "pr_auc")) is None


def _dupes(splits, rows):
    t = pa.table({"x": rows, "k": [f"r{i}" for i in range(len(rows))]})
    return duplicates_across_splits(t, np.array(splits), columns=["x"], key="k")


def test_duplicate_findings_say_which_split_holds_the_copies():
    # copies only between train and valid: the test metric is not the problem
    f = _dupes(["train", "train", "valid", "test"], [1, 2, 1, 3])
    assert f.severity == "medium" and f.evidence["test_rows_also_in_train"] == 0
    assert f.message.startswith("No test row copies a training row, but 1 valid "
                                "rows also in train")
    assert "overstates" not in f.message
    # every test row is a copy
    f = _dupes(["train", "train", "test", "test"], [1, 2, 1, 2])
    assert f.severity == "high" and f.message.startswith("2 of 2 test rows are exact")
    # none
    assert _dupes(["train", "valid", "test"], [1, 2, 3]) is None
    assert _dupes([], []) is None


def test_target_drift_skips_time_deciles_without_rows():
    """Three distinct times over 300 rows leave most deciles empty: their mean
    is no value, and the drift is measured over the deciles that hold rows."""
    rng = np.random.default_rng(0)
    n = 300
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    times = [t0 + timedelta(days=int(d)) for d in np.repeat([0, 1, 2], n // 3)]
    y = (rng.random(n) < 0.3).astype(int)
    table = pa.table({"t": pa.array(times, pa.timestamp("us", tz="UTC")),
                      "x": rng.normal(size=n), "y": y})
    res = audit_pair(table.slice(0, 240), table.slice(240), target="y",
                     time_column="t", seed=0)
    deciles = res.design["target_by_time_decile"]
    filled = [m for m in deciles if m is not None]
    assert 2 <= len(filled) < 10 and None in deciles
    assert res.design["target_drift"] == pytest.approx(max(filled) - min(filled),
                                                       abs=1e-4)


def test_the_leakage_checklist_counts_every_finding_of_the_table():
    """The run's findings table lists the split's checks and the probe's; the
    checklist said "quiet" for the split's (it read the probe's alone)."""
    findings = [{"check": "duplicates_across_splits", "severity": "medium"},
                {"check": "group_overlap", "severity": "low"},
                {"check": "group_overlap", "severity": "high"}]
    table = dict(run_checklist({"audit": findings}))
    assert table["duplicates_across_splits"] == "medium"
    assert table["group_overlap"] == "high"
    assert table["time_overlap"] is None
