from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pytest

from mlsd.errors import DataError
from mlsd.spec import SplitSpec
from mlsd.trainingdata import assign_splits


def _table(n=2000, seed=0):
    rng = np.random.default_rng(seed)
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    return pa.table({
        "id": [f"r{i}" for i in range(n)],
        "y": (rng.random(n) < 0.1).tolist(),
        "g": [f"g{i % 97}" for i in range(n)],
        "t": pa.array([t0 + timedelta(minutes=int(m)) for m in rng.integers(0, 10**6,
                                                                            n)],
                      pa.timestamp("us", tz="UTC")),
    })


@pytest.mark.parametrize("strategy", ["random", "stratified", "time", "group"])
def test_fractions_and_determinism(strategy):
    t = _table()
    spec = SplitSpec(strategy=strategy, time="t", group="g", test=0.2, valid=0.1)
    a = assign_splits(t, spec, target="y", seed=1, key="id")
    b = assign_splits(t, spec, target="y", seed=1, key="id")
    assert (a == b).all()
    share = {s: float(np.mean(a == s)) for s in ("train", "valid", "test")}
    tol = 0.06 if strategy == "group" else 0.03
    assert abs(share["test"] - 0.2) < tol and abs(share["valid"] - 0.1) < tol


@pytest.mark.parametrize("strategy", ["random", "stratified", "group"])
def test_row_order_does_not_matter(strategy):
    t = _table()
    spec = SplitSpec(strategy=strategy, group="g")
    a = assign_splits(t, spec, target="y", seed=3, key="id")
    perm = np.random.default_rng(5).permutation(t.num_rows)
    b = assign_splits(t.take(perm), spec, target="y", seed=3, key="id")
    assert (a[perm] == b).all()
    c = assign_splits(t, spec, target="y", seed=4, key="id")
    assert (a != c).any()  # the seed matters


def test_time_split_puts_newest_rows_in_test():
    t = _table()
    s = assign_splits(t, SplitSpec(strategy="time", time="t"), target="y", seed=0,
                      key="id")
    ts = np.array(t.column("t").cast(pa.int64()))
    assert ts[s == "train"].max() <= ts[s == "valid"].min()
    assert ts[s == "valid"].max() <= ts[s == "test"].min()


def test_group_split_never_shares_a_group():
    t = _table()
    s = assign_splits(t, SplitSpec(strategy="group", group="g"), target="y", seed=0,
                      key="id")
    g = np.array(t.column("g").to_pylist())
    for a, b in (("train", "test"), ("train", "valid"), ("valid", "test")):
        assert not set(g[s == a]) & set(g[s == b])


def test_stratified_keeps_class_shares():
    t = _table(5000)
    s = assign_splits(t, SplitSpec(strategy="stratified"), target="y", seed=0,
                      key="id")
    y = np.array(t.column("y").to_pylist())
    rates = [y[s == p].mean() for p in ("train", "valid", "test")]
    assert max(rates) - min(rates) < 0.005


def test_split_errors():
    t = _table(50)
    with pytest.raises(DataError, match="missing values"):
        bad = t.set_column(3, "t", pa.nulls(50, pa.timestamp("us", tz="UTC")))
        assign_splits(bad, SplitSpec(strategy="time", time="t"), target="y", seed=0)
    with pytest.raises(DataError, match="at least 10"):
        assign_splits(t.slice(0, 5), SplitSpec(), target="y", seed=0)


def test_rows_with_an_equal_time_land_in_one_split():
    """A time split never cuts between rows of the same time value (the same
    day, the same year): their twins would sit on both sides of the cut."""
    years = np.repeat(np.arange(2000, 2012), [37, 5, 60, 12, 80, 9, 41, 3, 70,
                                              22, 50, 31])
    t = pa.table({"year": pa.array(years), "y": pa.array(years % 2)})
    s = assign_splits(t, SplitSpec(strategy="time", time="year"), target="y",
                      seed=0)
    owner = {}
    for year, part in zip(years.tolist(), s.tolist(), strict=True):
        assert owner.setdefault(year, part) == part, year
    assert set(s) == {"train", "valid", "test"}
    last = {p: max(y for y, q in owner.items() if q == p) for p in set(s)}
    assert last["train"] < last["valid"] < last["test"]
    with pytest.raises(DataError, match="2 distinct value"):
        two = pa.table({"year": pa.array([1] * 30 + [2] * 30), "y": [0, 1] * 30})
        assign_splits(two, SplitSpec(strategy="time", time="year"), target="y",
                      seed=0)
