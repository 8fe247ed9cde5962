"""The statistics of every sampling method, and its bias report."""

from __future__ import annotations

import itertools

import numpy as np
import pyarrow as pa
import pytest
from scipy import stats

from mlsd.errors import DataError, SpecError
from mlsd.spec import SampleSpec
from mlsd.trainingdata import (
    Reservoir,
    WeightedReservoir,
    _sampling,
    allocate,
    draw,
    inclusion_probabilities,
)


def _population(n=20_000, seed=0):
    rng = np.random.default_rng(seed)
    return pa.table({
        "id": [f"k{i}" for i in range(n)],
        "c": rng.choice(["a", "b", "c", "rare"], n, p=[0.6, 0.3, 0.0995, 0.0005]),
        "x": rng.normal(size=n),
        "age": rng.integers(0, 365, n),
        "link": [f"k{(3 * i + 1) % n}" for i in range(n)],
    })


def _stream(values, size):
    for start in range(0, len(values), size):
        yield pa.array(values[start:start + size])


# -- reservoirs ---------------------------------------------------------------
def test_reservoir_is_uniform_over_many_seeds():
    """Every item of a stream of 60 is kept by as many seeds, by a chi-squared
    test, whatever the batch sizes (the fill and the skips cross batches)."""
    n, k, seeds = 60, 6, 3000
    counts = np.zeros(n)
    for s in range(seeds):
        r = Reservoir(k, seed=s)
        r.extend(_stream(np.arange(n), 1 + s % 13))
        rows, pos = r.result()
        assert rows.num_rows == k and (rows.column("value").to_numpy() == pos).all()
        counts[pos] += 1
    assert stats.chisquare(counts).pvalue > 1e-3
    # the kept rows come back in stream order
    assert (np.diff(pos) > 0).all()


def test_reservoir_memory_does_not_grow_with_the_stream():
    r = Reservoir(100, seed=1)
    for batch in _stream(np.arange(2_000_000), 65_536):
        r.add(batch)
        assert r._kept.pool_rows <= 2 * r.k + 65_536
    rows, pos = r.result()
    assert rows.num_rows == 100 and r.seen == 2_000_000
    # a short stream is kept whole
    short = Reservoir(10, seed=0).extend(_stream(np.arange(4), 3))
    assert short.result()[1].tolist() == [0, 1, 2, 3]


def test_weighted_reservoir_follows_its_weights():
    """k = 1: a row is kept with probability w / sum(w); k = 2: the inclusion
    probabilities of successive sampling, computed exactly over every order."""
    w = np.array([1.0, 2.0, 3.0, 4.0, 0.0, 10.0])
    seeds = 6000
    counts = np.zeros((2, len(w)))
    for s in range(seeds):
        for j, k in enumerate((1, 2)):
            r = WeightedReservoir(k, seed=s)
            r.add(pa.array(np.arange(3)), w[:3])
            r.add(pa.array(np.arange(3, 6)), w[3:])
            counts[j, r.result()[1]] += 1
    assert counts[:, 4].sum() == 0  # weight 0: never
    pos = w > 0
    assert stats.chisquare(counts[0, pos], seeds * w[pos] / w.sum()).pvalue > 1e-3
    exact = np.zeros(len(w))
    for a, b in itertools.permutations(np.flatnonzero(pos), 2):
        p = w[a] / w.sum() * w[b] / (w.sum() - w[a])
        exact[[a, b]] += p
    assert np.isclose(exact.sum(), 2)
    assert stats.chisquare(counts[1, pos], seeds * exact[pos]).pvalue > 1e-3


def test_weighted_reservoir_refuses_bad_weights():
    r = WeightedReservoir(2, seed=0)
    with pytest.raises(DataError, match="row 1 of the stream is -1"):
        r.add(pa.array([1, 2]), [1.0, -1.0])
    with pytest.raises(DataError, match="3 weights for 2 rows"):
        r.add(pa.array([1, 2]), [1.0, 1.0, 1.0])


# -- probability samples on the engine ----------------------------------------
def _keys_over_seeds(n_ids: int, seeds: int, weights=None) -> np.ndarray:
    """The sampling key of every id under every seed, by the SQL the samplers
    run: a uniform (random, stratified) or log(u) / w (weighted)."""
    import duckdb

    unit = _sampling.unit_expression(["id"], "s::BIGINT")
    con = duckdb.connect()
    u = con.sql(f"SELECT {unit} AS u FROM range({seeds}) q(s), range({n_ids}) t(id) "
                f"ORDER BY s, id").fetchnumpy()["u"].reshape(seeds, n_ids)
    return u if weights is None else np.log(u) / np.asarray(weights)


def test_random_sample_is_uniform_and_seeded():
    """Under 20,000 seeds, each of 40 ids is among the 4 smallest hashes as
    often as the others, and so is each pair (no correlation between ids)."""
    u = _keys_over_seeds(40, 20_000)
    top = np.argsort(u, axis=1)[:, :4]
    assert stats.chisquare(np.bincount(top.ravel(), minlength=40)).pvalue > 1e-3
    first = np.argmin(u[:, :6], axis=1)  # which of 6 ids comes first
    assert stats.chisquare(np.bincount(first, minlength=6)).pvalue > 1e-3
    # and through draw(), the same rows for the same seed
    t = pa.table({"id": np.arange(40)})
    got = draw(t, SampleSpec(method="random", n=4), seed=7, key="id")
    assert sorted(got.rows.column("id").to_pylist()) == sorted(
        np.argsort(_keys_over_seeds(40, 8)[7])[:4].tolist())
    a = draw(_population(), SampleSpec(method="random", n=300), seed=5, key="id")
    b = draw(_population(), SampleSpec(method="random", n=300), seed=5, key="id")
    assert a.rows.equals(b.rows) and a.rows.num_rows == 300


def test_random_with_replacement_counts_each_draw():
    got = draw(_population(200), SampleSpec(method="random", n=1000, replace=True),
               seed=1, key="id")
    w = got.rows.column("_weight").to_numpy()
    assert w.sum() == 1000 and w.max() > 1  # 1,000 draws of 200 rows repeat
    assert got.summary()["drawn"] == 1000


def test_stratified_sample_keeps_proportions_and_equal_allocation():
    pop = _population()
    got = draw(pop, SampleSpec(method="stratified", n=2000, by="c"), seed=3,
               key="id")
    shares = {r["c"]: r["n"] / 2000 for r in got.rows.group_by("c").aggregate(
        [("c", "count")]).rename_columns(["c", "n"]).to_pylist()}
    full = {r["c"]: r["n"] / pop.num_rows for r in pop.group_by("c").aggregate(
        [("c", "count")]).rename_columns(["c", "n"]).to_pylist()}
    for c, p in full.items():  # largest remainders: within one row of exact
        assert abs(shares.get(c, 0.0) - p) <= 1 / 2000 + 1e-12, c
    eq = draw(pop, SampleSpec(method="stratified", n=400, by="c",
                              allocation="equal"), seed=3, key="id")
    sizes = dict(zip(*[eq.rows.group_by("c").aggregate([("c", "count")]).column(i)
                       .to_pylist() for i in (0, 1)], strict=True))
    rare = int(np.sum(np.array(pop.column("c").to_pylist()) == "rare"))
    assert sizes["rare"] == rare and sum(sizes.values()) == 400
    assert len({sizes[c] for c in "abc"}) <= 2  # the rest shared equally
    # reweighting stands each row for its stratum: weighted shares = population
    rw = draw(pop, SampleSpec(method="stratified", n=400, by="c",
                              allocation="equal", reweight=True), seed=3, key="id")
    w = rw.rows.column("_weight").to_numpy()
    c = np.array(rw.rows.column("c").to_pylist())
    for k, p in full.items():
        assert abs(w[c == k].sum() / w.sum() - p) < 1e-9


def test_strata_of_a_column_of_many_values_are_named_as_rounding():
    """Stratifying by a number or an identifier (more strata than drawn rows)
    works, and the sample says its allocation is mostly rounding; a column
    of few values says nothing of the kind."""
    pop = _population(2000)
    many = draw(pop, SampleSpec(method="stratified", n=100, by="x"), seed=1,
                key="id")
    assert many.rows.num_rows == 100
    assert any("strata for 100 drawn rows" in n for n in many.notes), many.notes
    few = draw(pop, SampleSpec(method="stratified", n=100, by="c"), seed=1,
               key="id")
    assert not any("strata for" in n for n in few.notes), few.notes


def test_stratified_threshold_pass_equals_the_full_ranking(monkeypatch):
    """The fast path (rank only the rows under each stratum's share plus a
    margin) and ranking every row give the same sample."""
    t = _population(5000)
    t = t.set_column(1, "c", pa.array([None if v == "rare" else v
                                       for v in t.column("c").to_pylist()]))
    spec = SampleSpec(method="stratified", n=333, by="c")
    fast = draw(t, spec, seed=9, key="id").rows
    monkeypatch.setattr(_sampling, "MARGIN_SD", -50.0)  # every stratum falls short
    assert draw(t, spec, seed=9, key="id").rows.equals(fast)


def test_allocate():
    assert allocate({"a": 10, "b": 20, "c": 70}, 10, "proportional") == {
        "a": 1, "b": 2, "c": 7}
    assert allocate({"a": 3, "b": 100, "c": 100}, 30, "equal") == {
        "a": 3, "b": 14, "c": 13}
    assert sum(allocate({"a": 1, "b": 1}, 50, "equal").values()) == 2


def test_weighted_sample_favours_heavy_rows_and_reweights():
    pop = _population()
    spec = SampleSpec(method="weighted", n=2000, weights="exp(-age / 60.0)",
                      reweight=False)
    got = draw(pop, spec, seed=2, key="id")
    assert np.mean(got.rows.column("age").to_numpy()) < 100  # population ~182
    assert np.allclose(got.rows.column("_weight").to_numpy(), 1.0)
    # with reweighting (the default), weighted means come back to the
    # population's: 1 / inclusion probability undoes the unequal chances
    rw = draw(pop, spec.model_copy(update={"reweight": True}), seed=2, key="id")
    w = rw.rows.column("_weight").to_numpy()
    assert abs(np.average(rw.rows.column("age").to_numpy(), weights=w)
               - np.mean(pop.column("age").to_numpy())) < 25
    assert rw.summary()["effective_size"] < 2000
    wr = draw(pop, SampleSpec(method="weighted", n=3000, weights="age",
                              replace=True), seed=2, key="id")
    w = wr.rows.column("_weight").to_numpy()
    assert abs(np.average(wr.rows.column("age").to_numpy(), weights=w)
               - np.mean(pop.column("age").to_numpy())) < 15


def test_inclusion_probabilities_sum_to_n_and_match_a_simulation():
    w = np.array([1.0, 1.0, 2.0, 4.0, 8.0, 0.0])
    pi = inclusion_probabilities(w, 3)
    assert np.isclose(pi.sum(), 3) and pi[-1] == 0 and (np.diff(pi[:5]) >= 0).all()
    keys = _keys_over_seeds(6, 20_000, np.where(w > 0, w, np.nan))
    keys = np.where(np.isnan(keys), -np.inf, keys)
    top = np.argsort(-keys, axis=1)[:, :3]  # the 3 largest log(u) / w
    counts = np.bincount(top.ravel(), minlength=6)
    # the exact inclusion probabilities of successive sampling, over every order
    exact = np.zeros(6)
    for order in itertools.permutations(np.flatnonzero(w > 0), 3):
        left, p = w.sum(), 1.0
        for i in order:
            p *= w[i] / left
            left -= w[i]
        exact[list(order)] += p
    seen = counts / 20_000
    z = (seen - exact)[:5] / np.sqrt(exact[:5] * (1 - exact[:5]) / 20_000)
    assert np.abs(z).max() < 4 and counts[5] == 0
    assert np.abs(pi - exact).max() < 0.05  # Rosén's approximation, on 5 rows
    # draw() keeps those rows
    t = pa.table({"id": np.arange(6), "w": w})
    got = draw(t, SampleSpec(method="weighted", n=3, weights="w", reweight=False),
               seed=11, key="id")
    assert sorted(got.rows.column("id").to_pylist()) == sorted(top[11].tolist())


def test_importance_estimates_match_the_target_mean():
    """Draws from a uniform proposal, weighted by density / proposal, estimate
    the mean under the density (a self-normalised importance estimate)."""
    pop = _population()
    x = pop.column("x").to_numpy()
    density = np.exp(x)  # tilts the normal: the target mean of x is about 1
    truth = np.sum(x * density) / density.sum()
    estimates = []
    for s in range(5):
        got = draw(pop, SampleSpec(method="importance", n=4000, density="exp(x)"),
                   seed=s, key="id")
        w = got.rows.column("_weight").to_numpy()
        estimates.append(np.average(got.rows.column("x").to_numpy(), weights=w))
        assert 0 < got.ess < 4000
    assert abs(np.mean(estimates) - truth) < 0.05
    assert abs(truth - 1.0) < 0.05
    # a proposal that misses part of the density says so
    got = draw(pop, SampleSpec(method="importance", n=500, density="1",
                               proposal="CASE WHEN c = 'a' THEN 1 ELSE 0 END"),
               seed=0, key="id")
    assert any("proposal 0" in n for n in got.notes)


def test_reservoir_method_on_a_table_and_weighted():
    pop = _population()
    got = draw(pop, SampleSpec(method="reservoir", n=500), seed=4, key="id")
    assert got.rows.num_rows == 500
    heavy = draw(pop, SampleSpec(method="reservoir", n=500, weights="age"), seed=4,
                 key="id")
    assert heavy.rows.column("age").to_numpy().mean() > 200


# -- non-probability samples ---------------------------------------------------
def test_convenience_quota_judgment_snowball():
    pop = _population(2000)
    first = draw(pop, SampleSpec(method="convenience", n=5, where="c = 'b'"),
                 seed=0, key="id")
    ids = np.array(pop.column("id").to_pylist())
    expected = ids[np.array(pop.column("c").to_pylist()) == "b"][:5]
    assert first.rows.column("id").to_pylist() == expected.tolist()

    quota = draw(pop, SampleSpec(method="quota", by="c", quota={"a": 3, "b": 2,
                                                               "zz": 1}),
                 seed=0, key="id")
    c = quota.rows.column("c").to_pylist()
    assert c.count("a") == 3 and c.count("b") == 2
    assert any("'zz': 0 rows for a quota of 1" in n for n in quota.notes)

    judged = draw(pop, SampleSpec(method="judgment", keys=["k1", "k7", "nope"],
                                  chosen_by="dr. ann"), seed=0, key="id")
    assert judged.rows.column("id").to_pylist() == ["k1", "k7"]
    assert judged.settings["chosen_by"] == "dr. ann"
    assert any("nope" in n for n in judged.notes)

    # links: k_i -> k_(3i+1): breadth-first from k0 is k0, k1, k4, k13, k40 ...
    ball = draw(pop, SampleSpec(method="snowball", n=4, keys=["k0"], link="link"),
                seed=0, key="id")
    assert ball.rows.column("id").to_pylist() == ["k0", "k1", "k4", "k13"]
    assert ball.rows.column("_depth").to_pylist() == [0, 1, 2, 3]
    edges = pa.table({"src": ["k0", "k0", "k0", "k5"], "dst": ["k5", "k6", "k9",
                                                               "k11"]})
    spec = SampleSpec.model_validate({"method": "snowball", "max_depth": 2,
                                      "keys": ["k0"], "edges": {
                                          "dataset": "sources/links", "from": "src",
                                          "to": "dst"}})
    net = draw(pop, spec, seed=0, key="id", edges=edges)
    assert sorted(net.rows.column("id").to_pylist()) == ["k0", "k11", "k5", "k6",
                                                         "k9"]


# -- the bias report and mistakes ---------------------------------------------
def test_bias_report_names_vanished_categories_and_shifts():
    pop = _population()
    got = draw(pop, SampleSpec(method="random", n=300), seed=1, key="id")
    by = {b["column"]: b for b in got.report["bias"]}
    assert "rare" in by["c"]["vanished"]
    assert any("'rare'" in w and "absent" in w for w in got.report["warnings"])
    assert not any(w.startswith("x:") for w in got.report["warnings"])
    # a convenience sample of one category: biased, and said with numbers
    conv = draw(pop, SampleSpec(method="convenience", n=300, where="age < 30"),
                seed=1, key="id")
    msg = " ".join(conv.report["warnings"])
    assert "age: mean" in msg and "standard errors" in msg
    assert conv.summary()["probability"] is False


def test_sample_mistakes_are_clear():
    pop = _population(100)
    with pytest.raises(SpecError, match=r"sample\.weights: .*nope"):
        draw(pop, SampleSpec(method="weighted", n=5, weights="nope + 1"), seed=0,
             key="id")
    with pytest.raises(SpecError, match="not one SQL expression"):
        draw(pop, SampleSpec(method="weighted", n=5, weights="1); DROP x; (1"),
             seed=0, key="id")
    with pytest.raises(SpecError, match="refused"):
        draw(pop, SampleSpec(method="convenience", n=5,
                             where="(SELECT count(*) FROM read_text('/etc/hostname'))"
                                   " > 0"), seed=0, key="id")
    with pytest.raises(DataError, match="weight of the row .*'k3'.* is -3"):
        draw(pop, SampleSpec(method="weighted", n=5,
                             weights="CASE WHEN id = 'k3' THEN -3 ELSE 1 END"),
             seed=0, key="id")
    with pytest.raises(SpecError, match="sample.by: column 'zz'"):
        draw(pop, SampleSpec(method="stratified", n=5, by="zz"), seed=0, key="id")
    for bad, msg in [({"method": "random"}, "needs `n` or `fraction`"),
                     ({"method": "random", "n": 3, "by": "c"}, "does not read it"),
                     ({"method": "judgment", "keys": [1]}, "chosen_by"),
                     ({"method": "importance", "n": 5}, "density")]:
        with pytest.raises(ValueError, match=msg):
            SampleSpec.model_validate(bad)


def test_reservoir_keeps_the_same_rows_whatever_the_batch_kind():
    """Bare arrays of numbers (kept in a numpy buffer), record batches (kept
    as Arrow rows) and a stream that turns to nulls half-way (the buffer
    hands over to the pool) keep the same positions and values."""
    values = np.arange(300_000, dtype=np.int64) * 3
    plain = Reservoir(500, seed=4).extend(_stream(values, 7_000))
    as_batches = Reservoir(500, seed=4).extend(
        pa.record_batch({"value": b}) for b in _stream(values, 7_000))
    mixed = Reservoir(500, seed=4)
    for i, b in enumerate(_stream(values, 7_000)):
        if i >= 20:  # from here on, arrays that hold a null (never kept)
            b = pa.array(b.to_pylist()[:-1] + [None], pa.int64())
        mixed.add(b)
    (a, pa_), (b, pb), (c, pc_) = (plain.result(), as_batches.result(),
                                   mixed.result())
    assert (pa_ == pb).all() and (pa_ == pc_).all()
    assert a.column("value").to_pylist() == b.column("value").to_pylist()
    got = c.column("value").to_pylist()
    assert got == [None if (p + 1) % 7_000 == 0 and p >= 140_000 else 3 * p
                   for p in pc_.tolist()]


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("stop_at", [0, 3, 11, 19])
def test_a_reservoir_restored_from_its_state_keeps_what_it_would_have_kept(
        weighted, stop_at):
    """A consumer stores a reservoir's rows, slots and state with each commit
    and goes on from them after a restart: the sample is the one it would have
    drawn without the restart (before it is full, after, and at the end)."""
    import json

    from mlsd.trainingdata import Reservoir, WeightedReservoir

    def run(seed: int, stop: int | None) -> list[int]:
        r = WeightedReservoir(7, seed=seed) if weighted else Reservoir(7, seed=seed)
        for i, start in enumerate(range(0, 2000, 100)):
            if i == stop:
                rows, pos = r.result()
                state = json.loads(json.dumps(r.state()))  # as stored
                r = (WeightedReservoir.restore(state, rows, pos, r.slots(), r.keys())
                     if weighted else Reservoir.restore(state, rows, pos, r.slots()))
            b = pa.record_batch({"x": np.arange(start, start + 100)})
            if weighted:
                r.add(b, weights=(b.column(0).to_numpy() % 10).astype(float))
            else:
                r.add(b)
        return r.result()[0].column("x").to_pylist()

    for seed in range(5):
        assert run(seed, stop_at) == run(seed, None)
