"""One row judged alone (the service's fast path) gets the batch path's
answer: the same typed values and the same reasons, in the same words."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pyarrow as pa
from hypothesis import given
from hypothesis import strategies as st

from mlsd.etl import DataSchema, Validator
from mlsd.etl._coerce import arrow_type
from mlsd.spec import ValidateSpec

COLUMNS = {"name": "string", "country": "string", "n": "int64", "x": "float64",
           "ok": "bool", "at": "timestamp"}
RULES = ValidateSpec(
    required=["name", "n"], null_values=["", "NA", "null"],
    ranges={"n": (0, 100), "x": (-1.5, None), "at": (1.6e9, 1.8e9)},
    allowed={"country": ["FR", "DE", "NA "], "n": [1, 2, 3, 50, 150]},
    patterns={"name": r"^[a-z]+$"})
VALIDATOR = Validator(schema=DataSchema(COLUMNS), rules=RULES)

texts = st.one_of(st.none(), st.sampled_from(
    ["", " ", "NA", " NA ", "\u00a0NA", "null", "abc", "ABC", " abc", "FR", "DE",
     "NA ", "x" * 70]), st.text(max_size=8))
times = st.one_of(st.none(), st.datetimes(
    min_value=datetime(2015, 1, 1), max_value=datetime(2030, 1, 1),
    timezones=st.sampled_from([None, UTC, timezone(timedelta(hours=-5))])))
rows = st.fixed_dictionaries({
    "name": texts, "country": texts,
    "n": st.one_of(st.none(), st.integers(-5, 200)),
    "x": st.one_of(st.none(), st.floats(-3, 3, allow_nan=False)),
    "ok": st.one_of(st.none(), st.booleans()), "at": times})


def _batch(row: dict) -> pa.RecordBatch:
    arrays = []
    for col, typ in COLUMNS.items():
        v = row[col]
        if typ == "timestamp" and v is not None:
            v = v.replace(tzinfo=UTC) if v.tzinfo is None else v.astimezone(UTC)
        arrays.append(pa.array([v], type=arrow_type(typ)))
    return pa.RecordBatch.from_arrays(arrays, names=list(COLUMNS))


@given(rows)
def test_one_row_alone_is_judged_as_in_a_batch(row):
    assert VALIDATOR.row_path()
    typed, reasons = VALIDATOR.typed(_batch(row))
    values, found = VALIDATOR.check_row(row)
    assert found == reasons.get(0, [])
    assert values == {c: typed[c][0].as_py() for c in COLUMNS}


def test_rules_the_row_path_cannot_judge_send_rows_to_the_batch_path():
    checks = ValidateSpec(checks={"pos": "n > 0"})
    assert not Validator(schema=DataSchema({"n": "int64"}), rules=checks).row_path()
    nested = DataSchema({"a": {"b": "int64"}})
    assert not Validator(schema=nested, rules=ValidateSpec()).row_path()


def test_the_row_path_says_what_is_wrong():
    row = {"name": " NA", "country": "US", "n": 120, "x": -2.0, "ok": None,
           "at": datetime(2030, 1, 1)}
    values, found = VALIDATOR.check_row(row)
    assert values["name"] is None and values["at"].tzinfo is not None
    assert [(c, r) for c, r, _ in found] == [
        ("name", "required"), ("country", "allowed"), ("n", "range"),
        ("n", "allowed"), ("x", "range"), ("at", "range")]
    assert found == VALIDATOR.typed(_batch(row))[1][0]


@given(st.integers(-(2**63), 2**63 - 1),
       st.sampled_from([0.5, -0.5, 2.0**53, -(2.0**53), 1e30, -1e30, 2.5, 0.0]),
       st.sampled_from([float("inf"), 1e19, 9.5e18, 3.5, 2.0**60]))
def test_an_int64_column_against_float_bounds_is_judged_exactly(n, lo, hi):
    """A value past 2**53 in an int64 column with a float bound stopped the
    validator (Arrow refused to make the integers doubles); the verdict is
    the exact comparison, on both paths."""
    v = Validator(schema=DataSchema({"n": "int64"}),
                  rules=ValidateSpec(ranges={"n": (lo, hi)}))
    _, reasons = v.typed(pa.RecordBatch.from_arrays([pa.array([n], pa.int64())],
                                                    names=["n"]))
    outside = n < lo or n > hi
    assert bool(reasons.get(0)) == outside
    assert bool(v.check_row({"n": n})[1]) == outside
