"""The spool: a load's accepted and rejected rows, kept on disk until committed.

Arrow IPC files: writing them is little more than a copy, and a batch is read
back by its number without reading the others. Repeated keys (the ``unique``
rule, and ``transform.dedupe``) are settled over the whole load at once: the
key columns of every accepted row are also kept in memory (a narrow table),
DuckDB ranks them, and the rows that lose are left out when the spool is read
back for the commit. The accepted file is never rewritten.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

ACCEPTED, REJECTED = "accepted.arrow", "rejected.arrow"
PLACE = ("_source", "_source_sha256", "_line")  # where a row was read
BATCH, ROW = "__batch", "__row"


def quote_identifier(name: str) -> str:
    """A column name as a quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def _batches(path: Path) -> Iterator[pa.RecordBatch]:
    """The batches of a spool file, read one at a time (plain reads, not a
    memory map, whose touched pages would all count as the process's memory)."""
    with pa.OSFile(str(path), "rb") as source:
        reader = pa.ipc.open_file(source)
        for i in range(reader.num_record_batches):
            yield reader.get_batch(i)


class Spool:
    """Accepted and rejected rows of one load, in a folder, in read order.

    Parameters
    ----------
    folder : Path
        A fresh folder for this load.
    accepted_schema, rejected_schema : pa.Schema
        The two files' schemas.
    narrow : list[str]
        Columns of accepted rows kept in memory for the repeat checks (keys,
        and the column a dedupe keeps the latest by).
    constant : list[str]
        String columns of accepted rows that hold one value per batch (the
        source file, its hash, the load id): kept once per batch, not once
        per row, which would make the file half as large again.
    raw_text : callable, optional
        Given accepted rows moved by a repeat check (a table), their raw
        records as they were read (e.g. the CSV lines), or None; without it,
        or when it gives None, a row's values as a JSON object are kept.
    """

    def __init__(self, folder: Path, accepted_schema: pa.Schema,
                 rejected_schema: pa.Schema, narrow: list[str] = (),
                 constant: list[str] = (),
                 raw_text: Callable[[pa.Table], pa.Array | None] | None = None):
        self.folder = Path(folder)
        self.accepted_schema = accepted_schema
        self.rejected_schema = rejected_schema
        self._raw_text = raw_text
        self._constant = [c for c in constant if c in accepted_schema.names]
        self._constants: list[tuple] = []  # accepted batch -> constant values
        self._stored = pa.schema([f for f in accepted_schema
                                  if f.name not in self._constant])
        self._narrow_cols = list(dict.fromkeys(narrow))
        self._narrow: list[pa.RecordBatch] = []
        self._dropped: dict[int, np.ndarray] = {}  # batch number -> rows left out
        self._acc = pa.ipc.new_file(pa.OSFile(str(self.folder / ACCEPTED), "wb"),
                                    self._stored)
        self._rej = pa.ipc.new_file(pa.OSFile(str(self.folder / REJECTED), "wb"),
                                    rejected_schema)
        self._counts: list[int] = []  # rows per accepted batch
        self._acc_open = self._rej_open = True

    def add(self, accepted: pa.RecordBatch, rejected: pa.RecordBatch) -> None:
        """Spool one validated batch (accepted rows, and rejected ones if any)."""
        values = []
        for c in self._constant:
            col = accepted.column(c)
            value = col[0].as_py() if len(col) else None
            # the validator builds these from one value; a full comparison
            # would cost a tenth of the load, first and last catch a misuse
            if len(col) and col[len(col) - 1].as_py() != value:
                raise ValueError(f"spool: column {c} is not one value per batch")
            values.append(value)
        self._constants.append(tuple(values))
        self._acc.write_batch(accepted.drop_columns(self._constant))
        if self._narrow_cols:
            n = accepted.num_rows
            self._narrow.append(pa.RecordBatch.from_arrays(
                [accepted.column(c) for c in self._narrow_cols]
                + [pa.array(np.full(n, len(self._counts), np.int32)),
                   pa.array(np.arange(n, dtype=np.int32))],
                names=[*self._narrow_cols, BATCH, ROW]))
        self._counts.append(accepted.num_rows)
        if rejected.num_rows:
            self._rej.write_batch(rejected)

    def move_repeats(self, key: list[str], *, first: str, rule: str, message: str,
                     load_id: str) -> int:
        """Keep one accepted row per key, the first by the SQL order ``first``
        (over the narrow columns, ``__batch`` and ``__row``: read order), and
        move the others to the rejected rows with ``rule``. Returns how many.

        Rows moved by an earlier call take no part. DuckDB ranks the narrow
        table only (it spills to disk beyond its memory limit); the moved rows
        are then read back from their batches alone.
        """
        if not self._narrow:
            return 0
        narrow = pa.Table.from_batches(self._narrow)
        if self._dropped:
            gone = np.zeros(narrow.num_rows, dtype=bool)
            starts = np.cumsum([0] + [b.num_rows for b in self._narrow])
            for b, rows in self._dropped.items():
                gone[starts[b] + rows] = True
            narrow = narrow.filter(pa.array(~gone))
        keys = ", ".join(quote_identifier(k) for k in key)
        con = duckdb.connect()
        try:
            con.execute("SET threads = 2")
            con.execute("SET memory_limit = '1GB'")
            con.execute("SET temp_directory = ?", [str(self.folder / "duckdb.tmp")])
            con.execute("SET preserve_insertion_order = false")
            con.register("spool", narrow)
            repeats = con.sql(
                f"SELECT {BATCH}, {ROW} FROM (SELECT {BATCH}, {ROW}, row_number() "
                f"OVER (PARTITION BY {keys} ORDER BY {first}) AS __rank "
                f"FROM spool) WHERE __rank > 1 ORDER BY 1, 2").to_arrow_table()
        finally:
            con.close()
        if repeats.num_rows == 0:
            return 0
        batch_no = repeats.column(BATCH).to_numpy()
        row_no = repeats.column(ROW).to_numpy()
        self._close_accepted()  # no more adds: the file can be read back
        groups = [(int(b), row_no[batch_no == b]) for b in np.unique(batch_no)]
        for b, rows in groups:
            old = self._dropped.get(b)
            self._dropped[b] = rows if old is None else np.union1d(old, rows)
        moved = self._take(groups, [*PLACE])
        data_cols = [c for c in self.accepted_schema.names if not c.startswith("_")]
        out = moved_rows(moved, lambda: self._take(groups, data_cols), key=key,
                         rule=rule, message=message, load_id=load_id,
                         raw_text=self._raw_text, schema=self.rejected_schema)
        for batch in out.to_batches(max_chunksize=50_000):
            self._rej.write_batch(batch)
        return out.num_rows

    def _take(self, groups: list[tuple[int, np.ndarray]], columns: list[str]
              ) -> pa.Table:
        """Some columns of some accepted rows (rows per batch number), read a
        batch at a time and only those columns: moved rows are spread over
        every batch, and a memory map would count the whole file as the
        process's memory."""
        schema = pa.schema([self.accepted_schema.field(c) for c in columns])
        stored = [c for c in columns if c not in self._constant]
        parts = []
        fields = [self._stored.get_field_index(c) for c in stored]
        with pa.OSFile(str(self.folder / ACCEPTED), "rb") as source:
            reader = pa.ipc.open_file(source, options=pa.ipc.IpcReadOptions(
                included_fields=fields))
            for b, rows in groups:
                batch = reader.get_batch(b) if fields else None
                index = pa.array(rows)
                parts.append(pa.RecordBatch.from_arrays(
                    [constant_text(self._constants[b][self._constant.index(c)],
                                   len(rows)) if c in self._constant
                     else batch.column(c).take(index) for c in columns],
                    schema=schema))
        return pa.Table.from_batches(parts, schema)

    def _restore(self, b: int, batch: pa.RecordBatch) -> pa.RecordBatch:
        """Accepted batch ``b`` as read back, with its constant columns."""
        values = dict(zip(self._constant, self._constants[b], strict=True))
        return pa.RecordBatch.from_arrays(
            [constant_text(values[f.name], batch.num_rows) if f.name in values
             else batch.column(f.name) for f in self.accepted_schema],
            schema=self.accepted_schema)

    def _close_accepted(self) -> None:
        if self._acc_open:
            self._acc.close()
            self._acc_open = False

    def close(self) -> None:
        """Finish both files; they can be read back after this."""
        self._close_accepted()
        if self._rej_open:
            self._rej.close()
            self._rej_open = False

    def set_constant(self, column: str, value: str) -> None:
        """Give a constant column one new value in every accepted batch (the
        load id, when it is known only once every row is read)."""
        i = self._constant.index(column)
        self._constants = [(*v[:i], value, *v[i + 1:]) for v in self._constants]

    def accepted_parts(self, rows: int) -> list[Callable[[], pa.Table]]:
        """The accepted rows, without those moved by repeat checks, in parts of
        at least ``rows`` rows (the last may be smaller), each read when called:
        a writer thread reads, filters and writes its own part, with no thread
        in between."""
        self.close()
        parts, group, n = [], [], 0
        for b, count in enumerate(self._counts):
            group.append(b)
            n += count - len(self._dropped.get(b, ()))
            if n >= rows:
                parts.append(group)
                group, n = [], 0
        if group:
            parts.append(group)
        return [partial(self._read_part, g) for g in parts]

    def _read_part(self, batches: list[int]) -> pa.Table:
        with pa.OSFile(str(self.folder / ACCEPTED), "rb") as source:
            reader = pa.ipc.open_file(source)
            return pa.Table.from_batches(
                [self._kept(b, reader.get_batch(b)) for b in batches],
                self.accepted_schema)

    def _kept(self, b: int, batch: pa.RecordBatch) -> pa.RecordBatch:
        """Accepted batch ``b`` as read back: its moved rows left out, its
        constant columns put back."""
        rows = self._dropped.get(b)
        if rows is not None:
            keep = np.ones(batch.num_rows, dtype=bool)
            keep[rows] = False
            batch = batch.filter(pa.array(keep))
        return self._restore(b, batch)

    def rejected(self) -> Iterator[pa.RecordBatch]:
        """The rejected batches, the moved repeats last."""
        self.close()
        yield from _batches(self.folder / REJECTED)


def moved_rows(moved: pa.Table, values: Callable[[], pa.Table], *, key: list[str],
               rule: str, message: str, load_id: str,
               raw_text: Callable[[pa.Table], pa.Array | None] | None,
               schema: pa.Schema) -> pa.Table:
    """Accepted rows a repeat check moved out (``moved``: where each was read,
    ``PLACE``), as quarantine rows: their raw records (``raw_text``; else
    ``values()``, the data columns, as JSON) and one reason each."""
    from ..formats import to_text

    raw = raw_text(moved) if raw_text else None
    if raw is None:
        raw = pa.array([to_text(r) for r in values().to_pylist()], pa.string())
    n = moved.num_rows
    reason = {"column": key[0], "rule": rule,
              "message": f"{', '.join(key)}: {message}"}
    reasons = pa.ListArray.from_arrays(
        pa.array(np.arange(n + 1, dtype=np.int32)),
        pa.array([reason], schema.field("reasons").type.value_type
                 ).take(pa.array(np.zeros(n, np.int32))))
    return pa.Table.from_arrays(
        [moved.column("_source"), moved.column("_source_sha256"),
         moved.column("_line"), constant_text(load_id, n), raw, reasons],
        schema=schema)


def constant_text(value: str | None, n: int) -> pa.Array:
    """A string array of ``n`` copies of ``value``, built without a Python list
    (a one-entry dictionary, cast)."""
    return pc.cast(pa.DictionaryArray.from_arrays(
        pa.array(np.zeros(n, np.int32)), pa.array([value], pa.string())),
        pa.string())


def set_column(batch: pa.RecordBatch, name: str, value: str) -> pa.RecordBatch:
    """``batch`` with the string column ``name`` set to one value everywhere."""
    i = batch.schema.get_field_index(name)
    return batch.set_column(i, name, constant_text(value, batch.num_rows))
