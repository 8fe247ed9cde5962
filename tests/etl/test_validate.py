from __future__ import annotations

import json
from datetime import UTC, datetime

import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mlsd.connectors import FileConnector
from mlsd.errors import SpecError
from mlsd.etl import DataSchema, Validator, coerce, infer_schema, infer_type, nullify
from mlsd.formats import raw_schema
from mlsd.spec import ValidateSpec


def _raw(columns: dict[str, list]) -> pa.RecordBatch:
    n = len(next(iter(columns.values())))
    arrays = [pa.array(v, pa.string()) for v in columns.values()]
    arrays += [pa.array(range(1, n + 1), pa.int64()),
               pa.array([f"raw{i}" for i in range(n)]), pa.nulls(n, pa.string())]
    return pa.RecordBatch.from_arrays(arrays, schema=raw_schema(list(columns)))


@pytest.mark.parametrize("values, expected", [
    (["1", "2", "-3", " 4 "], "int64"),
    (["1", "2.5", "1e3", ".5"], "float64"),
    (["true", "False", "yes", "no"], "bool"),
    (["0", "1", "1", "0"], "int64"),  # 0/1 stays a number
    (["2024-01-01T10:00:00Z", "2024-01-02 11:00", "2024-01-03"], "timestamp"),
    (["a", "1", "2"], "string"),
    ([None, None], "string"),
])
def test_infer_type(values, expected):
    assert infer_type(pa.array(values, pa.string()), 0.95) == expected


def test_one_bad_number_does_not_make_a_column_text():
    values = [str(i) for i in range(200)] + ["12a"]
    assert infer_type(pa.array(values), 0.95) == "int64"
    assert infer_type(pa.array(values[:10] + ["x"]), 0.95) == "string"


def test_coerce_marks_only_present_unparseable_values():
    typed, bad = coerce(pa.array(["1", None, "x", " 7", "99999999999999999999",
                                  "+5"]), "int64")
    assert typed.to_pylist() == [1, None, None, 7, None, 5]
    assert bad.tolist() == [False, False, True, False, True, False]
    typed, bad = coerce(pa.array(["2024-01-01T10:00:00+02:00", "2024-01-01",
                                  "2024-13-45", "noon"]), "timestamp")
    assert typed.to_pylist()[:2] == [datetime(2024, 1, 1, 8, tzinfo=UTC),
                                     datetime(2024, 1, 1, tzinfo=UTC)]
    assert bad.tolist() == [False, False, True, True]
    typed, bad = coerce(pa.array(["Y", "no", "maybe"]), "bool")
    assert typed.to_pylist() == [True, False, None] and bad.tolist()[2]


def test_null_tokens():
    assert nullify(pa.array(["", "NA", " null ", "x"]), ["", "NA", "null"]
                   ).to_pylist() == [None, None, None, "x"]


def test_every_reason_is_kept():
    schema = DataSchema({"id": "string", "n": "int64", "c": "string"})
    rules = ValidateSpec(required=["id", "n"], ranges={"n": (0, 10)},
                         allowed={"c": ["a", "b"]})
    raw = _raw({"id": ["1", None, "3", "4"], "n": ["5", "x", "11", None],
                "c": ["a", "z", "b", None]})
    out = Validator(schema=schema, rules=rules).validate(raw, source="s",
                                                         sha256="h", load_id="L")
    assert out.accepted.num_rows == 1
    rej = out.rejected.to_pylist()
    assert [r["_line"] for r in rej] == [2, 3, 4]
    reasons = {r["_line"]: sorted((x["column"], x["rule"]) for x in r["reasons"])
               for r in rej}
    assert reasons[2] == [("c", "allowed"), ("id", "required"), ("n", "type")]
    assert reasons[3] == [("n", "range")]
    assert reasons[4] == [("n", "required")]
    assert rej[0]["raw"] == "raw1" and rej[0]["_source"] == "s"
    acc = out.accepted.to_pylist()[0]
    assert acc["_load_id"] == "L" and acc["_source_sha256"] == "h"


def test_rules_must_name_schema_columns():
    v = Validator(schema=DataSchema({"a": "string"}),
                  rules=ValidateSpec(ranges={"a": (0, 1)}))
    with pytest.raises(SpecError, match="a range needs a number"):
        v.check_rules("src")
    v = Validator(schema=DataSchema({"a": "string"}),
                  rules=ValidateSpec(required=["b"]))
    with pytest.raises(SpecError, match="validate.required: column 'b'"):
        v.check_rules("src")


def test_infer_schema_from_jsonl(tmp_path):
    p = tmp_path / "x.jsonl"
    rows = [{"id": f"r{i}", "n": i, "f": i / 3, "t": "2024-01-01T00:00:00Z",
             "b": i % 2 == 0} for i in range(300)]
    rows[5]["n"] = "oops"
    p.write_text("\n".join(json.dumps(r) for r in rows))
    schema = infer_schema(FileConnector(path="x.jsonl", root=tmp_path),
                          null_values=[""], threshold=0.95)
    assert schema.columns == {"id": "string", "n": "int64", "f": "float64",
                              "t": "timestamp", "b": "bool"}


def test_typed_columns_coerce_without_loss():
    from mlsd.etl import coerce_any

    vals, bad = coerce_any(pa.array([1.0, None, 2.5, 1e30, -3.0]), "int64", [""])
    assert vals.to_pylist() == [1, None, None, None, -3]
    assert bad.tolist() == [False, False, True, True, False]
    vals, bad = coerce_any(pa.array([1, 2], pa.int32()), "float64", [""])
    assert vals.type == pa.float64() and not bad.any()
    naive = pa.array([datetime(2024, 1, 1, 10)], pa.timestamp("ms"))
    vals, _ = coerce_any(naive, "timestamp", [""])
    assert vals.to_pylist() == [datetime(2024, 1, 1, 10, tzinfo=UTC)]
    vals, bad = coerce_any(pa.array([{"a": 1}, None]), "string", [""])
    assert vals.to_pylist() == ['{"a":1}', None]
    vals, bad = coerce_any(pa.array(["NA", "7"]), "int64", ["NA"])
    assert vals.to_pylist() == [None, 7] and not bad.any()


def test_patterns_unique_keys_and_sql_checks():
    schema = DataSchema({"id": "string", "email": "string", "paid": "float64",
                         "total": "float64"})
    rules = ValidateSpec(patterns={"email": r"^[^@\s]+@[^@\s]+\.[a-z]+$"},
                         unique=["id"], checks={"paid_le_total": "paid <= total"})
    v = Validator(schema=schema, rules=rules)
    v.check_rules("src")
    first = _raw({"id": ["1", "2", "2", "3"],
                  "email": ["a@b.org", "nope", "c@d.org", None],
                  "paid": ["1", "1", "1", "5"], "total": ["2", "2", "2", "4"]})
    out = v.validate(first, source="s", sha256="h", load_id="L")
    got = {r["_line"]: [(x["column"], x["rule"]) for x in r["reasons"]]
           for r in out.rejected.to_pylist()}
    # row 2 fails its pattern, so row 3 may claim id 2; row 4 fails the check
    assert got == {2: [("email", "pattern")], 4: [(None, "check")]}
    assert out.accepted.column("id").to_pylist() == ["1", "2"]
    # keys are remembered across the batches of one load
    second = _raw({"id": ["1", "9"], "email": ["x@y.org", "z@y.org"],
                   "paid": ["0", "0"], "total": ["1", "1"]})
    out = v.validate(second, source="s", sha256="h", load_id="L")
    assert [r["_line"] for r in out.rejected.to_pylist()] == [1]
    assert out.rejected.to_pylist()[0]["reasons"][0]["rule"] == "unique"


def test_bad_sql_check_is_a_spec_error():
    v = Validator(schema=DataSchema({"a": "int64"}),
                  rules=ValidateSpec(checks={"c": "b > 1"}))
    with pytest.raises(SpecError, match="validate.checks.c"):
        v.check_rules("src")
    with pytest.raises(Exception, match="no ';'"):
        ValidateSpec(checks={"c": "a > 1; DROP TABLE x"})


_EDGE = ["0", "-5", "+5", "0x10", "0X1f", " 12 ", "\u00a012", "1e3", "1.5", ".5", "5.",
         "nan", "inf", "-Infinity", "1e400", "9223372036854775807",
         "9223372036854775808", "", "x", "2024-07-22T17:36:59Z", "2024-07-22T17Z",
         "2024-07-22T17:36:59+02", "2024-07-22T17:36:59+0200", "2024-07-22",
         "2024-07-22 17:36", "2024-07-22T17:36:59.123456789Z", "2024-13-01T00:00Z",
         "2024-07-22T17:36:59z", " 2024-07-22T17:36:59Z", "١٢", "true", None]


@given(st.lists(st.sampled_from(_EDGE) | st.text(alphabet="0123456789+-.exXTZ: ",
                                                 max_size=12), max_size=30),
       st.sampled_from(["int64", "float64", "timestamp", "bool"]))
def test_a_column_coerces_like_each_of_its_values(values, type_name):
    """Whole columns take Arrow's fast cast when it is safe and the checked
    path otherwise: either way every value gets what it gets alone."""
    typed, bad = coerce(pa.array(values, pa.string()), type_name)
    for i, v in enumerate(values):
        one, one_bad = coerce(pa.array([v], pa.string()), type_name)
        assert typed[i].as_py() == one[0].as_py(), (v, type_name)
        assert bad[i] == one_bad[0], (v, type_name)
