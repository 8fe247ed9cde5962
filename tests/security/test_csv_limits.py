"""A CSV cannot exhaust mlsd (issue 11): a header of a million columns is one
line at once (the duplicate check was quadratic), and a line of hundreds of
megabytes is never read whole: it is quarantined with a short excerpt and
the rest of the file loads."""

from __future__ import annotations

import time

import pytest

from mlsd.errors import DataError
from mlsd.formats import FormatOptions, get_format


def _rows(path, options=None):
    fmt = get_format("csv")
    options = options or FormatOptions()
    columns = fmt.columns(path, options)
    out = []
    for batch in fmt.read(path, options, columns=columns):
        out += batch.to_pylist()
    return out


def test_a_million_columns_is_one_line_at_once(tmp_path):
    path = tmp_path / "wide.csv"
    path.write_text(",".join(f"c{i}" for i in range(1_000_000)) + "\n1\n")
    started = time.monotonic()
    with pytest.raises(DataError, match=r"1,000,000 columns, over `max_columns`"):
        get_format("csv").columns(path, FormatOptions())
    assert time.monotonic() - started < 30
    # the duplicate check is linear: a wide header within the limit is fine
    path.write_text(",".join(f"c{i}" for i in range(50_000)) + "\n")
    assert len(get_format("csv").columns(path, FormatOptions(max_columns=60_000))
               ) == 50_000


@pytest.mark.parametrize("quoted", [False, True])
def test_a_giant_record_is_quarantined_with_an_excerpt(tmp_path, quoted):
    path = tmp_path / "big.csv"
    giant = ('"' + "x" * 3_000_000 + '"') if quoted else "y" * 3_000_000
    path.write_text(f"a,b\n1,ok\n2,{giant}\n3,fine\n")
    rows = _rows(path, FormatOptions(max_record_bytes=1 << 20))
    assert [r["a"] for r in rows if r["_error"] is None] == ["1", "3"]
    [bad] = [r for r in rows if r["_error"]]
    assert bad["_line"] == 3 and "over `max_record_bytes`" in bad["_error"]
    assert len(bad["_raw"]) <= 210
    # under the limit the same file loads whole
    assert len([r for r in _rows(path) if r["_error"] is None]) == 3


def test_a_giant_header_line_is_refused(tmp_path):
    path = tmp_path / "h.csv"
    path.write_text("a" * 2_000_000 + "\n1\n")
    with pytest.raises(DataError, match="line 1: the header is 2,000,001 bytes"):
        get_format("csv").columns(path, FormatOptions(max_record_bytes=1 << 20))
