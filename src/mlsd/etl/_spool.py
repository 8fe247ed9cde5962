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
import pyarrow.compute as pc
import pyarrow.dataset as pads

ACCEPTED, REJECTED = "accepted.arrow", "rejected.arrow"


def writer(path: Path, schema: pa.Schema) -> pa.ipc.RecordBatchFileWriter:
    return pa.ipc.new_file(pa.OSFile(str(path), "wb"), schema)


def batches(path: Path) -> Iterator[pa.RecordBatch]:
    """The spooled batches, read one at a time (plain reads, not a memory map,
    whose touched pages would all count as the process's memory)."""
    with pa.OSFile(str(path), "rb") as source:
        reader = pa.ipc.open_file(source)
        for i in range(reader.num_record_batches):
            yield reader.get_batch(i)


def quote_identifier(name: str) -> str:
    """A column name as a quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def move_repeats(folder: Path, key: list[str], *, order: str, rule: str,
                 message: str, load_id: str, order_columns: list[str] = ()
                 ) -> int:
    """Keep one accepted row per key (the first by ``order``), and move the
    others to the rejected spool with ``rule``. Returns how many moved.

    DuckDB ranks only the key, order and position columns (a narrow scan); the
    spool is then filtered batch by batch, so memory stays bounded.
    """
    from ..formats import to_text
    from ._validate import QUARANTINE_SCHEMA

    acc_path, rej_path = folder / ACCEPTED, folder / REJECTED
    acc = pads.dataset(str(acc_path), format="arrow")
    keys = ", ".join(quote_identifier(k) for k in key)
    narrow = ", ".join(dict.fromkeys([*(quote_identifier(k) for k in key),
                                      *(quote_identifier(c) for c in order_columns),
                                      '"_source"', '"_line"']))
    con = duckdb.connect()
    try:
        con.execute("SET threads = 2")
        con.execute("SET memory_limit = '1GB'")  # spills to disk beyond it
        con.execute("SET temp_directory = ?", [str(folder / "duckdb.tmp")])
        con.execute("SET preserve_insertion_order = false")
        con.register("spool", acc)
        repeats = con.sql(
            f'SELECT "_source" || chr(0) || CAST("_line" AS VARCHAR) AS place FROM ('
            f"SELECT {narrow}, row_number() OVER (PARTITION BY {keys} ORDER BY "
            f"{order}) AS __rank FROM spool) WHERE __rank > 1").to_arrow_table()
    finally:
        con.close()
    if repeats.num_rows == 0:
        return 0
    places = repeats.column("place").combine_chunks()
    label = ", ".join(key)
    tmp = folder / "accepted.tmp.arrow"
    moved_rows = []
    with writer(tmp, acc.schema) as w:
        for batch in batches(acc_path):
            place = pc.binary_join_element_wise(
                batch.column("_source"), pc.cast(batch.column("_line"), pa.string()),
                "\x00")
            hit = pc.is_in(place, value_set=places)
            w.write_batch(batch.filter(pc.invert(hit)))
            if pc.any(hit).as_py():
                moved_rows += batch.filter(hit).to_pylist()
    data_cols = [c for c in acc.schema.names if not c.startswith("_")]
    moved = pa.Table.from_pylist([{
        "_source": r["_source"], "_source_sha256": r["_source_sha256"],
        "_line": r["_line"], "_load_id": load_id,
        "raw": to_text({c: r[c] for c in data_cols}),
        "reasons": [{"column": key[0], "rule": rule,
                     "message": f"{label}: {message}"}]}
        for r in moved_rows], schema=QUARANTINE_SCHEMA)
    # read into memory (not mapped): the file is rewritten just below
    with pa.OSFile(str(rej_path), "rb") as fh:
        old_rejected = pa.ipc.open_file(fh).read_all()
    with writer(rej_path, QUARANTINE_SCHEMA) as w:
        w.write_table(old_rejected)
        w.write_table(moved)
    tmp.replace(acc_path)
    return len(moved_rows)
