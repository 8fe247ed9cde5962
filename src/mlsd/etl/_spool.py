"""The spool: a load's accepted and rejected rows, kept on disk until committed.

Arrow IPC files: writing them is little more than a copy, and reading them back
is a memory map, so spooling costs a fraction of the commit itself. Repeated keys
(the ``unique`` rule, and ``transform.dedupe``) are settled here, over the whole
load at once, with DuckDB.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.dataset as pads

ACCEPTED, REJECTED = "accepted.arrow", "rejected.arrow"


def writer(path: Path, schema: pa.Schema) -> pa.ipc.RecordBatchFileWriter:
    return pa.ipc.new_file(pa.OSFile(str(path), "wb"), schema)


def batches(path: Path) -> Iterator[pa.RecordBatch]:
    """The spooled batches, memory-mapped."""
    with pa.memory_map(str(path)) as source:
        reader = pa.ipc.open_file(source)
        for i in range(reader.num_record_batches):
            yield reader.get_batch(i)


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def move_repeats(folder: Path, key: list[str], *, order: str, rule: str,
                 message: str, load_id: str) -> int:
    """Keep one accepted row per key (the first by ``order``), and move the
    others to the rejected spool with ``rule``. Returns how many moved."""
    from ..formats import to_text
    from ._validate import QUARANTINE_SCHEMA

    acc_path, rej_path = folder / ACCEPTED, folder / REJECTED
    acc = pads.dataset(str(acc_path), format="arrow")
    keys = ", ".join(_quote(k) for k in key)
    con = duckdb.connect()
    try:
        con.execute("SET threads = 2")
        con.register("spool", acc)
        ranked = (f"SELECT *, row_number() OVER (PARTITION BY {keys} ORDER BY "
                  f"{order}) AS __rank FROM spool")
        dropped = con.sql(f"SELECT * EXCLUDE (__rank) FROM ({ranked}) "
                          f"WHERE __rank > 1").to_arrow_table()
        if dropped.num_rows == 0:
            return 0
        kept = con.sql(f"SELECT * EXCLUDE (__rank) FROM ({ranked}) WHERE __rank = 1 "
                       f'ORDER BY "_source", "_line"').to_arrow_table()
    finally:
        con.close()
    data_cols = [c for c in dropped.column_names if not c.startswith("_")]
    label = ", ".join(key)
    moved = pa.Table.from_pylist([{
        "_source": r["_source"], "_source_sha256": r["_source_sha256"],
        "_line": r["_line"], "_load_id": load_id,
        "raw": to_text({c: r[c] for c in data_cols}),
        "reasons": [{"column": key[0], "rule": rule,
                     "message": f"{label}: {message}"}]}
        for r in dropped.to_pylist()], schema=QUARANTINE_SCHEMA)
    schema = acc.schema
    # read into memory (not mapped): the file is rewritten just below
    with pa.OSFile(str(rej_path), "rb") as fh:
        old_rejected = pa.ipc.open_file(fh).read_all()
    with writer(rej_path, QUARANTINE_SCHEMA) as w:
        w.write_table(old_rejected)
        w.write_table(moved)
    tmp = folder / "accepted.tmp.arrow"
    with writer(tmp, schema) as w:
        w.write_table(kept.select(schema.names).cast(schema))
    tmp.replace(acc_path)
    return dropped.num_rows
