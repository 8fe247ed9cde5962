from __future__ import annotations

import numpy as np
import pyarrow as pa

from mlsd.audit import audit_splits


def _data(n=1000, seed=0):
    rng = np.random.default_rng(seed)
    return pa.table({"id": [f"r{i}" for i in range(n)],
                     "x": rng.normal(size=n).tolist(),
                     "user": [f"u{i}" for i in rng.integers(0, 300, n)]})


def _splits(n, seed=0):
    return np.random.default_rng(seed).choice(["train", "valid", "test"], n,
                                              p=[0.7, 0.1, 0.2])


def test_clean_data_gives_no_finding():
    t = _data()
    s = _splits(t.num_rows)
    assert audit_splits(t, s, feature_columns=["x"], key="id") == []


def test_planted_duplicates_across_splits_are_high():
    t = _data()
    s = _splits(t.num_rows)
    test_rows = np.flatnonzero(s == "test")[:7]
    train_rows = np.flatnonzero(s == "train")[:7]
    x = np.array(t.column("x").to_pylist())
    x[test_rows] = x[train_rows]
    t = t.set_column(1, "x", pa.array(x))
    [f] = audit_splits(t, s, feature_columns=["x"], key="id")
    assert f.check == "duplicates_across_splits" and f.severity == "high"
    assert f.evidence["test_rows_also_in_train"] == 7
    assert len(f.evidence["example_keys"]) == 5


def test_group_overlap_declared_or_not():
    t = _data()
    s = _splits(t.num_rows)
    [f] = audit_splits(t, s, feature_columns=["x"], key="id", group="user")
    assert f.check == "group_overlap" and f.severity == "high"
    assert f.evidence["test_rows_with_entity_in_train"] > 0
    [f] = audit_splits(t, s, feature_columns=["x"], key="id",
                       allow_shared=["user"])
    assert f.severity == "low"
    # split by user: no overlap, no finding
    users = np.array(t.column("user").to_pylist())
    by_user = np.where(np.isin(users, [f"u{i}" for i in range(60)]), "test",
                       "train")
    assert audit_splits(t, by_user, feature_columns=["x"], key="id",
                        group="user") == []


def test_repeated_key_across_splits_is_flagged():
    t = _data(100)
    ids = t.column("id").to_pylist()
    ids[1] = ids[0]
    t = t.set_column(0, "id", pa.array(ids))
    s = np.array(["train"] + ["test"] * 99)
    found = audit_splits(t, s, feature_columns=["x"], key="id")
    assert [f.check for f in found] == ["group_overlap"]
    assert "row key id" in found[0].message
