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


# -- stability, gaps, time+group, duplicates ---------------------------------
from mlsd.trainingdata._split import split_rows  # noqa: E402


def _grow(t, extra, seed=9):
    """``t`` with ``extra`` new rows appended (new keys, later times)."""
    more = _table(t.num_rows + extra, seed=seed).slice(t.num_rows)
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    later = pa.array([t0 + timedelta(minutes=i) for i in range(extra)],
                     pa.timestamp("us", tz="UTC"))
    more = more.set_column(3, "t", later)
    return pa.concat_tables([t, more])


@pytest.mark.parametrize("strategy", ["random", "stratified", "group", "time",
                                      "time+group"])
def test_appended_rows_never_move_earlier_rows(strategy):
    t = _table(3000)
    spec = SplitSpec(strategy=strategy, time="t", group="g")
    first = split_rows(t, spec, target="y", seed=2, key="id")
    grown = _grow(t, 1500)
    again = split_rows(grown, spec, target="y", seed=2, key="id", cuts=first.cuts)
    assert (again.labels[:t.num_rows] == first.labels).all()
    if strategy == "time":  # the newest rows go to test, by the recorded cut-off
        assert (again.labels[t.num_rows:] == "test").all()


def test_stratified_split_is_exact_at_first_and_keeps_its_cut_points():
    t = _table(5003, seed=4)
    spec = SplitSpec(strategy="stratified", test=0.2, valid=0.1)
    r = split_rows(t, spec, target="y", seed=0, key="id")
    y = np.array(t.column("y").to_pylist())
    for c in (True, False):
        n = int((y == c).sum())
        assert int(((y == c) & (r.labels == "test")).sum()) == round(0.2 * n)
        assert int(((y == c) & (r.labels == "valid")).sum()) == round(0.1 * n)
    # the recorded cut points sit near the nominal shares: rows to come are
    # placed in about the same proportions
    for cut_test, cut_valid in r.cuts["classes"].values():
        assert abs(cut_test - 0.2) < 0.03 and abs(cut_valid - 0.3) < 0.03
    # a rare class still gets its share of test
    rare = t.set_column(1, "y", pa.array(["r" if i < 10 else "c"
                                          for i in range(t.num_rows)]))
    s = split_rows(rare, spec, target="y", seed=0, key="id").labels
    assert (s[:10] == "test").sum() == 2 and (s[:10] == "valid").sum() == 1


def test_time_gap_leaves_the_rows_before_each_cut_out():
    t = _table(4000)
    gap = timedelta(days=20)
    r = split_rows(t, SplitSpec(strategy="time", time="t", gap="20d"), target="y",
                   seed=0, key="id")
    ts = np.array(t.column("t").to_pylist(), dtype=object)
    by = {p: ts[r.labels == p] for p in ("train", "valid", "test", "gap")}
    assert by["train"].max() + gap < by["valid"].min()
    assert by["valid"].max() + gap < by["test"].min()
    assert len(by["gap"]) > 0 and set(r.labels) == {"train", "valid", "test", "gap"}
    start = datetime.fromtimestamp(r.cuts["test_start"] / 1e6, UTC)
    assert by["test"].min() == start
    with pytest.raises(DataError, match="shorter gap"):
        split_rows(t, SplitSpec(strategy="time", time="t", gap="3000d"), target="y",
                   seed=0, key="id")


def test_time_group_split_never_shares_a_group_and_tests_after_training():
    t = _table(4000)
    r = split_rows(t, SplitSpec(strategy="time+group", time="t", group="g",
                                gap="1d"), target="y", seed=0, key="id")
    g = np.array(t.column("g").to_pylist())
    ts = np.array(t.column("t").to_pylist(), dtype=object)
    s = r.labels
    for a, b in (("train", "test"), ("train", "valid"), ("valid", "test")):
        assert not set(g[s == a]) & set(g[s == b])
    assert ts[s == "train"].max() < ts[s == "valid"].min()
    assert ts[s == "valid"].max() < ts[s == "test"].min()
    assert (s == "late").sum() > 0  # rows of earlier groups after their split ends
    assert all((s == p).sum() > 0 for p in ("train", "valid", "test"))


@pytest.mark.parametrize("strategy", ["random", "stratified"])
def test_exact_duplicates_never_straddle_splits(strategy):
    t = _table(1000).drop(["t"])
    t = t.append_column("x", pa.array(np.random.default_rng(1).random(1000)))
    # each of 300 rows appears again under a new key (same content)
    copies = t.slice(0, 300).set_column(0, "id", pa.array(
        [f"copy{i}" for i in range(300)]))
    both = pa.concat_tables([t, copies])
    r = split_rows(both, SplitSpec(strategy=strategy), target="y", seed=0, key="id")
    assert (r.labels[:300] == r.labels[1000:]).all()
    assert r.duplicates == 300
    # without the copies, the same rows are split as before (stable)
    alone = split_rows(t, SplitSpec(strategy=strategy), target="y", seed=0,
                       key="id")
    if strategy == "random":
        assert (alone.labels == r.labels[:1000]).all()
