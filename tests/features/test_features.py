from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pytest

from mlsd.engine import DuckDBEngine
from mlsd.errors import NotFittedError
from mlsd.features import (
    FeaturePipeline,
    HashedNgramsFeature,
    HashingFeature,
    NumericFeature,
    OneHotFeature,
    TimeFeature,
)

TS = pa.timestamp("us", tz="UTC")


def _train():
    return pa.table({
        "x": pa.array([1.0, None, 3.0, 10.0, 6.0]),
        "c": ["a", "b", "a", None, "a"],
        "u": ["u1", "u2", "u3", "u1", None],
        "txt": ["free crypto now", "hello world", None, "a b", "crypto"],
        "ts": pa.array([datetime(2024, 1, 1, h, tzinfo=UTC) for h in (0, 5, 12, 23)]
                       + [None], TS),
    })


def _pipeline():
    return FeaturePipeline(transforms=[
        NumericFeature(column="x"), OneHotFeature(column="c", max_categories=1),
        HashingFeature(column="u", buckets=16, seed=7),
        HashedNgramsFeature(column="txt", buckets=32),
        TimeFeature(column="ts", parts=("hour", "weekday")),
    ])


@pytest.fixture()
def fitted():
    engine = DuckDBEngine()
    return _pipeline().analyze(engine, engine.from_arrow(_train()))


def test_state_is_learned_from_the_given_rows(fitted):
    state = json.loads(fitted.to_json())["features"]
    num = state[0]["state"]
    assert num["fill"] == 4.5 and num["missing"] == 1 and num["indicator"]
    assert num["mean"] == pytest.approx(5.0)
    assert state[1]["state"]["categories"] == ["a"]  # max_categories=1


def test_apply_batch_equals_apply_one_row_at_a_time(fitted):
    new = pa.table({
        "x": pa.array([None, 1e12, -3.0]), "c": ["zzz", None, "b"],
        "u": ["never", "u1", None], "txt": ["unseen words", "", None],
        "ts": pa.array([None, datetime(2030, 6, 1, 8, tzinfo=UTC),
                        datetime(2024, 3, 3, tzinfo=UTC)], TS)})
    batch = fitted.apply(new).toarray()
    rows = np.vstack([fitted.apply(new.slice(i, 1)).toarray()
                      for i in range(new.num_rows)])
    assert np.array_equal(batch, rows)
    names = fitted.names()
    assert batch.shape == (3, len(names))
    assert batch[0, names.index("c=__other__")] == 1  # unseen category
    assert batch[1, names.index("c=__missing__")] == 1
    assert batch[0, names.index("x__missing")] == 1
    assert batch[2, names.index("u=__missing__")] == 1


def test_state_round_trips_through_json(fitted, tmp_path):
    again = FeaturePipeline.from_json(fitted.to_json())
    assert again.to_json() == fitted.to_json()
    t = _train()
    assert (again.apply(t) != fitted.apply(t)).nnz == 0


def test_apply_before_analyze_is_an_error():
    with pytest.raises(NotFittedError, match="analyze"):
        _pipeline().apply(_train())
    with pytest.raises(NotFittedError, match="call analyze"):
        NumericFeature(column="x").apply(_train())


def test_time_parts_are_cyclic(fitted):
    names = fitted.names()
    X = fitted.apply(_train()).toarray()
    hours = X[:, names.index("ts.hour")]
    assert hours.tolist() == [0, 5, 12, 23, 0]
    s, c = X[:, names.index("ts.hour_sin")], X[:, names.index("ts.hour_cos")]
    # 23h is next to 0h on the circle
    assert np.hypot(s[3] - s[0], c[3] - c[0]) < 0.3
    assert X[4, names.index("ts__missing")] == 1


def test_mirror_hours_get_the_same_wave_in_batch_and_one_row(fitted):
    """cos(2 pi 11/24) and cos(2 pi 13/24) differ in their last bit when
    computed; left so, trees split on that noise (which float32 scorers such
    as ONNX cannot reproduce). Rounded, the twins are equal, in both paths."""
    rows = pa.table({"ts": pa.array([datetime(2024, 1, 1, h, tzinfo=UTC)
                                     for h in range(24)], TS)})
    names = fitted.names()
    full = pa.table({c: pa.nulls(24) for c in ("x", "c", "u", "txt")}).append_column(
        "ts", rows.column("ts"))
    B = fitted.apply(full).toarray()
    cos = B[:, names.index("ts.hour_cos")]
    assert cos[11] == cos[13] and cos[1] == cos[23]
    for h in (11, 13):
        one = fitted.apply_one({"x": None, "c": None, "u": None, "txt": None,
                                "ts": datetime(2024, 1, 1, h, tzinfo=UTC)})
        assert one.toarray()[0][names.index("ts.hour_cos")] == cos[h]


HASH_SNIPPET = """
import pyarrow as pa
from mlsd.features import HashingFeature
t = HashingFeature(column='u', buckets=1024, seed=7)
t.state_ = t._analyze(None, None)
m = t.apply(pa.table({'u': ['alice', 'bob', 'u000123']}))
print(m.indices.tolist())
"""


def test_hashing_is_stable_across_processes():
    outs = {subprocess.run([sys.executable, "-c", HASH_SNIPPET], capture_output=True,
                           text=True, check=True,
                           env={"PYTHONHASHSEED": str(seed), "PATH": ""}).stdout
            for seed in (1, 2, 3)}
    assert len(outs) == 1
    assert json.loads(outs.pop()) == [
        int(x) for x in HashingFeature(column="u", buckets=1024, seed=7).analyze(
            None, None).apply(pa.table({"u": ["alice", "bob", "u000123"]})).indices]


def test_ngrams_capture_word_pairs(fitted):
    t = pa.table({"txt": ["free crypto", "crypto free"]})
    X = HashedNgramsFeature(column="txt", buckets=2**12).analyze(None, None).apply(t)
    a, b = X.toarray()
    assert a.sum() == b.sum() == 3  # two words and one pair each
    assert not np.array_equal(a, b)  # the pairs differ
