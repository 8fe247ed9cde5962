"""Property-based fuzzing of every reader with damaged files: a clear error
naming the file, or every record either stored or quarantined."""

from __future__ import annotations

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlsd.connectors import FileConnector
from mlsd.errors import DataError
from mlsd.etl import DataSchema, Validator
from mlsd.formats import FORMAT_CLASSES, FormatOptions, get_format
from mlsd.spec import ValidateSpec

SCHEMA = DataSchema({"s": "string", "i": "int64", "f": "float64"})
EXT = {"csv": ".csv", "jsonl": ".jsonl", "json": ".json", "parquet": ".parquet",
       "avro": ".avro", "protobuf": ".pb", "pickle": ".pkl"}
OPTS = FormatOptions(trusted=True)
ROWS = [{"s": f"row {i} é", "i": i * 1000, "f": i / 3} for i in range(40)]


def _valid_bytes(tmp_path, fmt: str) -> bytes:
    path = tmp_path / f"seed{EXT[fmt]}"
    get_format(fmt).write(pa.Table.from_pylist(ROWS, schema=SCHEMA.arrow()), path,
                          OPTS)
    return path.read_bytes()


@pytest.mark.parametrize("fmt", sorted(set(FORMAT_CLASSES) - {"pickle"}))
@settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_damaged_files_never_crash_or_lose_rows(tmp_path, fmt, data):
    good = _valid_bytes(tmp_path, fmt)
    damage = data.draw(st.lists(st.tuples(
        st.integers(0, max(len(good) - 1, 0)), st.binary(min_size=1, max_size=8)),
        min_size=1, max_size=4))
    bad = bytearray(good)
    for at, junk in damage:
        bad[at:at + len(junk)] = junk
    cut = data.draw(st.integers(len(bad) // 2, len(bad)))
    path = tmp_path / f"fuzz{EXT[fmt]}"
    path.write_bytes(bytes(bad[:cut]))
    if fmt == "protobuf":
        (tmp_path / "fuzz.proto").write_bytes((tmp_path / "seed.proto").read_bytes())
    conn = FileConnector(path=path.name, root=tmp_path, options=OPTS)
    v = Validator(schema=SCHEMA, rules=ValidateSpec(required=["s"]))
    n_in = n_ok = n_bad = 0
    try:
        for info, raw in conn.read(list(SCHEMA.columns), chunk_rows=16):
            out = v.validate(raw, source=info.path, sha256=info.sha256, load_id="x")
            n_in += raw.num_rows
            n_ok += out.accepted.num_rows
            n_bad += out.rejected.num_rows
    except DataError as err:
        assert path.name in str(err)  # refused with a clear error naming the file
        return
    assert n_in == n_ok + n_bad
