"""A CSV file read in spans (as Spark tasks read a large file) gives the rows
and line numbers of one read of the whole file, or says it cannot."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mlsd.formats._csv import CsvSpanUnsafe, count_lines, csv_spans, read_csv


def _read_in_spans(path, n: int) -> list[dict]:
    """Each span read on its own, numbered from the line breaks before it."""
    rows, first = [], 2  # the header is line 1
    for start, end in csv_spans(path, n):
        gen = read_csv(path, chunk_rows=7, span=(start, end, first))
        while True:
            try:
                rows += next(gen).to_pylist()
            except StopIteration as done:
                ended = done.value
                break
        lines = count_lines(path, start, end)
        assert ended in (first + lines, first + lines + 1)  # + an unended last line
        first += lines
    return rows


cell = st.text(st.characters(codec="utf-8", exclude_characters='",\r\n'), max_size=6)
line = st.one_of(st.lists(cell, min_size=3, max_size=3).map(",".join),
                 st.lists(cell, min_size=1, max_size=5).map(",".join),  # broken
                 st.just(""))  # blank


@given(lines=st.lists(line, max_size=60), n=st.integers(1, 9),
       eol=st.sampled_from(["\n", "\r\n"]), last_eol=st.booleans())
def test_spans_read_what_one_read_does(tmp_path_factory, lines, n, eol, last_eol):
    path = tmp_path_factory.mktemp("spans") / "f.csv"
    text = eol.join(["a,b,c", *lines]) + (eol if last_eol else "")
    path.write_bytes(text.encode())
    whole = [r for b in read_csv(path, chunk_rows=7) for r in b.to_pylist()]
    spans = csv_spans(path, n)
    assert spans[0][0] is None and spans[-1][1] == len(text.encode())
    assert all(a[1] == b[0] for a, b in zip(spans, spans[1:], strict=False))
    assert _read_in_spans(path, n) == whole


def test_a_quoted_line_break_in_a_span_says_the_file_must_be_read_whole(tmp_path):
    path = tmp_path / "f.csv"
    rows = [f"{i},x{i}" for i in range(200)]
    rows[150] = '150,"two\nlines"'
    path.write_text("a,b\n" + "\n".join(rows) + "\n")
    spans = csv_spans(path, 4)
    assert len(spans) == 4
    with pytest.raises(CsvSpanUnsafe):
        for start, end in spans:
            list(read_csv(path, span=(start, end, 0)))


def test_files_that_cannot_be_cut_are_one_span(tmp_path):
    path = tmp_path / "f.csv"
    path.write_text('a,"b\nc"\n' + "1,2\n" * 100)  # the header holds a line break
    assert csv_spans(path, 4) == [(None, path.stat().st_size)]
    path.write_text("a;b\n" + "1;2\n" * 100)
    assert csv_spans(path, 4, encoding="latin-1") == [(None, path.stat().st_size)]
    assert csv_spans(path, 4, header=False) == [(None, path.stat().st_size)]
    assert len(csv_spans(path, 4, delimiter=";")) == 4


json_line = st.one_of(
    st.fixed_dictionaries({"a": st.integers(), "b": st.text(max_size=5)}).map(
        lambda d: __import__("json").dumps(d)),
    st.text(st.characters(codec="utf-8", exclude_characters="\r\n"), max_size=8),
    st.just(""))


@given(lines=st.lists(json_line, min_size=1, max_size=60), n=st.integers(1, 9),
       last_eol=st.booleans())
def test_jsonl_spans_read_what_one_read_does(tmp_path_factory, lines, n, last_eol):
    """Any line break cuts a JSONL file (a JSON line holds none): spans read
    what one read does, numbered from the line breaks before them."""
    from mlsd.formats._csv import line_spans
    from mlsd.formats._jsonl import read_jsonl

    path = tmp_path_factory.mktemp("jsonl") / "f.jsonl"
    text = "\n".join(lines) + ("\n" if last_eol else "")
    path.write_bytes(text.encode())
    if not any(x.strip() for x in lines):
        return  # an empty file is an error of the whole file
    whole = [r for b in read_jsonl(path, columns=["a", "b"], chunk_rows=7)
             for r in b.to_pylist()]
    rows, first = [], 1
    for start, end in line_spans(path, n):
        gen = read_jsonl(path, columns=["a", "b"], chunk_rows=7,
                         span=(start, end, first))
        while True:
            try:
                rows += next(gen).to_pylist()
            except StopIteration:
                break
        first += count_lines(path, start, end)
    assert rows == whole
