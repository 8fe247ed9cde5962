"""Every transform, one conformance suite: batch and one-row outputs identical
(hypothesis, with missing, unseen and extreme values), names as wide as the
block, state as JSON that reproduces the outputs."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mlsd.engine import DuckDBEngine
from mlsd.features import (
    BinsFeature,
    CrossFeature,
    FeaturePipeline,
    FourierFeature,
    FrequencyFeature,
    HashedNgramsFeature,
    HashingFeature,
    NumericFeature,
    OneHotFeature,
    OrdinalFeature,
    PeriodicFeature,
    Target,
    TargetFeature,
    TfidfFeature,
    TimeFeature,
)

TS = pa.timestamp("us", tz="UTC")
T0 = datetime(2024, 1, 1, tzinfo=UTC)
WORDS = ["free", "crypto", "now", "hello", "world", "cat", "dog", "buy"]
CATS = ["a", "b", "c", "d", "e"]


def training_table(n: int = 400, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    x = rng.lognormal(size=n)
    x[rng.random(n) < 0.1] = np.nan
    cats = rng.choice(CATS[:4], size=n, p=[0.5, 0.3, 0.15, 0.05]).tolist()
    cats = [None if rng.random() < 0.05 else c for c in cats]
    texts = [" ".join(rng.choice(WORDS, size=rng.integers(0, 6))) for _ in range(n)]
    return pa.table({
        "_row": pa.array(np.arange(n)),
        "x": pa.array(x, from_pandas=True),
        "z": pa.array(rng.normal(size=n)),
        "k": pa.array(rng.integers(0, 50, size=n)),
        "flag": pa.array(rng.random(n) < 0.3),
        "c": pa.array(cats, pa.string()),
        "txt": pa.array([t if i % 17 else None for i, t in enumerate(texts)]),
        "ts": pa.array([T0 + timedelta(minutes=int(m))
                        for m in rng.integers(0, 60 * 24 * 90, size=n)], TS),
        "y": pa.array((rng.random(n) < 0.3).tolist()),
    })


# the conformance list: a new transform is tested by adding it here
CASES = {
    "numeric-median-standard": lambda: NumericFeature(column="x"),
    "numeric-mean-minmax": lambda: NumericFeature(column="x", impute="mean",
                                                  scale="minmax"),
    "numeric-most_frequent-robust": lambda: NumericFeature(
        column="k", impute="most_frequent", scale="robust"),
    "numeric-constant-maxabs": lambda: NumericFeature(
        column="z", impute="constant", fill_value=-1.0, scale="maxabs"),
    "numeric-zero-log1p": lambda: NumericFeature(column="x", impute="zero",
                                                 scale="log1p"),
    "numeric-quantile": lambda: NumericFeature(column="x", scale="quantile",
                                               n_quantiles=20),
    "numeric-none-none": lambda: NumericFeature(column="x", impute="none",
                                                scale="none"),
    "numeric-bool": lambda: NumericFeature(column="flag"),
    "onehot": lambda: OneHotFeature(column="c", max_categories=2),
    "onehot-int": lambda: OneHotFeature(column="k", max_categories=5),
    "onehot-bool": lambda: OneHotFeature(column="flag"),
    "ordinal": lambda: OrdinalFeature(column="c", order=["a", "b", "c"]),
    "ordinal-sorted": lambda: OrdinalFeature(column="k"),
    "frequency": lambda: FrequencyFeature(column="c", max_categories=2),
    "target": lambda: TargetFeature(column="c", folds=3),
    "target-int": lambda: TargetFeature(column="k"),
    "hashing": lambda: HashingFeature(column="c", buckets=8, seed=3),
    "hashing-bool": lambda: HashingFeature(column="flag", buckets=4),
    "bins-quantile": lambda: BinsFeature(column="x", bins=5),
    "bins-uniform-ordinal": lambda: BinsFeature(column="z", strategy="uniform",
                                                bins=4, output="ordinal"),
    "bins-edges": lambda: BinsFeature(column="k", strategy="edges",
                                      edges=[10, 20, 30]),
    "cross-cat-cat": lambda: CrossFeature(columns=["c", "flag"], buckets=16),
    "cross-num-cat": lambda: CrossFeature(columns=["x", "c"], buckets=32, bins=3),
    "cross-num-num": lambda: CrossFeature(columns=["x", "z"]),
    "fourier": lambda: FourierFeature(columns=["x", "z", "k"], dim=8, gamma=0.5,
                                      seed=1),
    "periodic-time": lambda: PeriodicFeature(column="ts", period="24h",
                                             harmonics=2),
    "periodic-number": lambda: PeriodicFeature(column="k", period=7),
    "time": lambda: TimeFeature(column="ts", parts=("hour", "weekday", "month")),
    "hashed_ngrams": lambda: HashedNgramsFeature(column="txt", buckets=16),
    "tfidf": lambda: TfidfFeature(column="txt", min_df=2, ngram_range=(1, 2)),
}
TARGET = Target(column="y", task="binary", positive=True)


@pytest.fixture(scope="module")
def fitted():
    engine = DuckDBEngine(threads=1)
    table = engine.from_arrow(training_table())
    return {name: make().analyze(engine, table, target=TARGET)
            for name, make in CASES.items()}


# new rows: missing, unseen, extreme and odd values in every column
floats_ = st.one_of(st.none(), st.just(math.nan), st.just(0.0),
                    st.floats(allow_nan=False, allow_infinity=False, width=64),
                    st.floats(-1e3, 1e3))
new_rows = st.lists(st.fixed_dictionaries({
    "x": st.one_of(st.none(), st.just(math.nan), st.floats(0, 1e300),
                   st.floats(0, 10)),
    "z": floats_,
    "k": st.one_of(st.none(), st.integers(-2**40, 2**40), st.integers(0, 60)),
    "flag": st.one_of(st.none(), st.booleans()),
    "c": st.one_of(st.none(), st.sampled_from(CATS), st.text(max_size=5)),
    "txt": st.one_of(st.none(), st.text(max_size=20),
                     st.lists(st.sampled_from(WORDS + ["zzz"]), max_size=6)
                     .map(" ".join)),
    "ts": st.one_of(st.none(), st.datetimes(
        min_value=datetime(1970, 1, 2), max_value=datetime(2200, 1, 1),
        timezones=st.just(UTC))),
}), min_size=1, max_size=6)

SCHEMA = pa.schema([("x", pa.float64()), ("z", pa.float64()), ("k", pa.int64()),
                    ("flag", pa.bool_()), ("c", pa.string()), ("txt", pa.string()),
                    ("ts", TS)])


def _dense_rows(t, rows: list[dict]) -> np.ndarray:
    """The rows through ``apply_row`` and through the serving loop's
    ``row_function``: both must give the same entries."""
    width = len(t.names())
    out = np.zeros((len(rows), width))
    fast = t.row_function()
    for i, row in enumerate(rows):
        idx, vals = t.apply_row(row)
        assert len(idx) == len(set(idx)) and all(0 <= j < width for j in idx)
        out[i, idx] = vals
        again = np.zeros(width)
        idx2, vals2 = fast(*[row[c] for c in t.inputs])
        again[idx2] = vals2
        np.testing.assert_array_equal(again, out[i])
    return out


@pytest.mark.parametrize("name", list(CASES))
@given(rows=new_rows)
def test_batch_and_one_row_outputs_are_identical(fitted, name, rows):
    t = fitted[name]
    table = pa.Table.from_pylist(rows, schema=SCHEMA)
    batch = t.apply(table).toarray()
    assert batch.shape == (len(rows), len(t.names()))
    one = _dense_rows(t, table.to_pylist())
    np.testing.assert_array_equal(batch, one)  # NaN equals NaN here


@pytest.mark.parametrize("name", list(CASES))
def test_state_is_json_and_reproduces_the_outputs(fitted, name):
    t = fitted[name]
    pipe = FeaturePipeline(transforms=[t])
    pipe.state_ = [t.to_dict()]
    text = pipe.to_json()  # allow_nan=False: a NaN in a state fails here
    again = FeaturePipeline.from_json(text)
    assert again.to_json() == text
    table = training_table(50, seed=9)
    np.testing.assert_array_equal(again.apply(table).toarray(),
                                  t.apply(table).toarray())
    assert len(set(t.names())) == len(t.names()), "names must be unique"
    json.dumps(t.notes())


@pytest.mark.parametrize("name", list(CASES))
def test_pipeline_one_row_equals_batch(fitted, name):
    pipe = FeaturePipeline(transforms=[fitted[name], fitted["numeric-median-standard"]])
    pipe.state_ = [t.to_dict() for t in pipe.transforms]
    table = training_table(30, seed=4)
    batch = pipe.apply(table).toarray()
    for i, row in enumerate(table.to_pylist()):
        np.testing.assert_array_equal(pipe.apply_one(row).toarray()[0], batch[i])
