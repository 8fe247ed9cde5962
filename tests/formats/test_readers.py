from __future__ import annotations

import json

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlsd.errors import DataError
from mlsd.etl import DataSchema, Validator
from mlsd.formats import read_csv, read_csv_header, read_jsonl, read_jsonl_columns
from mlsd.spec import ValidateSpec


def _rows(batches):
    return pa.Table.from_batches(list(batches)).to_pylist()


def test_csv_line_numbers_survive_quoted_line_breaks(tmp_path):
    p = tmp_path / "a.csv"
    p.write_text('id,text\n1,"two\nlines"\n2,plain\n\n3,"a ""quoted"", word"\n')
    rows = _rows(read_csv(p))
    assert [(r["id"], r["_line"]) for r in rows] == [("1", 2), ("2", 4), ("3", 6)]
    assert rows[0]["text"] == "two\nlines"
    assert rows[0]["_raw"] == '1,"two\nlines"'
    assert rows[2]["text"] == 'a "quoted", word'


def test_csv_broken_lines_and_bad_bytes_become_error_rows(tmp_path):
    p = tmp_path / "a.csv"
    p.write_bytes(b"a,b,c\n1,2,3\n4,5\n6,7,8,9\n\xff\xfe,1,2\n10,11,12\n")
    rows = _rows(read_csv(p))
    assert [r["_line"] for r in rows] == [2, 3, 4, 5, 6]
    errors = [r["_error"] for r in rows]
    assert errors[0] is None and errors[4] is None
    assert "expected 3 fields, found 2" in errors[1]
    assert "found 4" in errors[2]
    assert "not valid utf-8" in errors[3]
    assert rows[1]["a"] is None  # values of a broken record are not guessed


def test_csv_bounded_chunks(tmp_path):
    p = tmp_path / "a.csv"
    p.write_text("x\n" + "".join(f"{i}\n" for i in range(1000)))
    sizes = [b.num_rows for b in read_csv(p, chunk_rows=64)]
    assert max(sizes) == 64 and sum(sizes) == 1000


def test_csv_header_problems(tmp_path):
    p = tmp_path / "e.csv"
    p.write_text("")
    with pytest.raises(DataError, match="empty"):
        read_csv_header(p)
    p.write_text("a,b,a\n1,2,3\n")
    with pytest.raises(DataError, match="repeats column"):
        list(read_csv(p))
    p.write_text("\ufeffa,b\n1,2\n")
    assert read_csv_header(p) == ["a", "b"]
    with pytest.raises(DataError, match="no such data file"):
        list(read_csv(tmp_path / "missing.csv"))


def test_jsonl_records_and_errors(tmp_path):
    p = tmp_path / "a.jsonl"
    p.write_text('{"a": 1, "b": "x"}\n\n{"a": true, "b": {"n": [1]}}\n[1]\n'
                 '{"a": 2, "c": 3}\n{"a": \n')
    assert read_jsonl_columns(p) == ["a", "b", "c"]
    rows = _rows(read_jsonl(p, columns=["a", "b"]))
    assert [r["_line"] for r in rows] == [1, 3, 4, 5, 6]
    assert rows[0]["a"] == "1" and rows[1]["a"] == "true"
    assert json.loads(rows[1]["b"]) == {"n": [1]}
    assert "expected a JSON object" in rows[2]["_error"]
    assert "unexpected field(s) ['c']" in rows[3]["_error"]
    assert "invalid JSON" in rows[4]["_error"]
    lenient = _rows(read_jsonl(p, columns=["a", "b"], strict=False))
    assert lenient[3]["_error"] is None and lenient[3]["a"] == "2"


def test_jsonl_empty(tmp_path):
    p = tmp_path / "e.jsonl"
    p.write_text("\n\n")
    with pytest.raises(DataError, match="empty"):
        list(read_jsonl(p, columns=["a"]))


SCHEMA = DataSchema({"a": "int64", "b": "string", "c": "float64"})
RULES = ValidateSpec(required=["a"], ranges={"c": (0, None)})


@settings(deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.binary(max_size=400))
def test_fuzz_csv_never_crashes_and_loses_no_row(tmp_path, body):
    p = tmp_path / "f.csv"
    p.write_bytes(b"a,b,c\n" + body)
    n_in = n_ok = n_bad = 0
    v = Validator(schema=SCHEMA, rules=RULES)
    for batch in read_csv(p, chunk_rows=7):
        out = v.validate(batch, source="f.csv", sha256="0", load_id="x")
        n_in += batch.num_rows
        n_ok += out.accepted.num_rows
        n_bad += out.rejected.num_rows
        assert all(r for r in out.rejected.column("reasons").to_pylist())
    assert n_in == n_ok + n_bad


@settings(deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(st.one_of(
    st.dictionaries(st.sampled_from(["a", "b", "c", "d"]),
                    st.one_of(st.none(), st.integers(), st.floats(), st.text(),
                              st.booleans()), max_size=4).map(json.dumps),
    st.text(max_size=30)), max_size=20))
def test_fuzz_jsonl_never_crashes_and_loses_no_row(tmp_path, lines):
    p = tmp_path / "f.jsonl"
    p.write_text("\n".join(lines) + "\n{}\n", encoding="utf-8")
    v = Validator(schema=SCHEMA, rules=RULES)
    n_in = n_ok = n_bad = 0
    for batch in read_jsonl(p, columns=list(SCHEMA.columns)):
        out = v.validate(batch, source="f", sha256="0", load_id="x")
        n_in += batch.num_rows
        n_ok += out.accepted.num_rows
        n_bad += out.rejected.num_rows
    assert n_in == n_ok + n_bad
    assert n_in == sum(1 for line in p.read_bytes().split(b"\n") if line.strip())


_field = st.one_of(
    st.text(alphabet="abcxyz019 ", max_size=6),
    st.text(alphabet='ab,"\n\r é', max_size=5),
)
_row = st.lists(_field, min_size=1, max_size=5)


def _csv_text(header: list[str], rows: list[list[str]], quote_all: bool = False
              ) -> str:
    """A CSV file's text by the csv module; an empty row is a blank line."""
    import csv as pycsv
    import io

    buf = io.StringIO()
    w = pycsv.writer(buf, lineterminator="\n",
                     quoting=pycsv.QUOTE_ALL if quote_all else pycsv.QUOTE_MINIMAL)
    w.writerow(header)
    for r in rows:
        if r:
            w.writerow(r)
        else:
            buf.write("\n")
    return buf.getvalue()


@settings(deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.one_of(_row, st.just([])), max_size=40),
       quote_all=st.booleans(), block=st.sampled_from([16, 64, 1 << 20]),
       last_newline=st.booleans())
def test_fast_and_slow_csv_paths_agree(tmp_path, monkeypatch, rows, quote_all,
                                        block, last_newline):
    from mlsd.formats import _csv

    text = _csv_text(["a", "b", "c"], rows, quote_all=quote_all)
    p = tmp_path / "x.csv"
    p.write_bytes((text if last_newline else text.removesuffix("\n")).encode())
    monkeypatch.setattr(_csv, "BLOCK_BYTES", block)
    fast = list(read_csv(p, chunk_rows=7))
    slow = list(read_csv(p, chunk_rows=7, fast=False))
    as_rows = [r for b in fast for r in b.to_pylist()]
    assert as_rows == [r for b in slow for r in b.to_pylist()]
    assert all(b.num_rows <= 7 for b in fast)


@settings(deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.one_of(_row, st.just([])), max_size=30),
       block=st.sampled_from([16, 64, 1 << 20]))
def test_csv_records_are_found_again_by_line(tmp_path, monkeypatch, rows, block):
    """What a repeat check keeps for a moved row: the record that starts at a
    line, exactly as the reader gave it in _raw."""
    from mlsd.formats import _csv, read_csv_records

    p = tmp_path / "x.csv"
    p.write_bytes(_csv_text(["a", "b"], rows).encode())
    monkeypatch.setattr(_csv, "BLOCK_BYTES", block)
    expected = {r["_line"]: r["_raw"] for b in read_csv(p) for r in b.to_pylist()}
    assert read_csv_records(p, list(expected)[::-1]) == expected
