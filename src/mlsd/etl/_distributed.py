"""Reading and validating a file source as Spark tasks (``engine: spark``).

Spark's own readers cannot keep mlsd's promises (its CSV reader gives no line
numbers, its permissive mode keeps no reason per row), so each task runs
mlsd's reader and :class:`Validator` on one file: one file a task, the unit
Spark retries. A task writes each validated batch, accepted and rejected rows
apart, as Arrow IPC files in the load's scratch folder (next to the lake, on
storage every node sees) and returns only their names and counts. The driver
then takes the batches in file and batch order, the order a local load reads
them in, and settles them exactly as a local load does (erasures, the spool,
repeats over the whole load, one commit each for the quarantine and the data):
the same rows, the same quarantine, the same load id on either engine.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa

from ..errors import DataError
from ._validate import QUARANTINE_SCHEMA, Validated

RESULT = pa.schema([("unit", pa.int64()), ("batch", pa.int64()),
                    ("rows", pa.int64()), ("accepted", pa.string()),
                    ("rejected", pa.string()), ("error", pa.string())])


def _write(path: Path, batch: pa.RecordBatch) -> None:
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, batch.schema) as w:
        w.write_batch(batch)


def _read(path: Path) -> pa.RecordBatch:
    with pa.OSFile(str(path), "rb") as source:
        reader = pa.ipc.open_file(source)
        batch = reader.get_batch(0) if reader.num_record_batches else \
            pa.RecordBatch.from_pylist([], schema=reader.schema)
    path.unlink()
    return batch


def validated_on_spark(engine, connector, infos: list, columns: list[str],
                       validator, *, chunk_rows: int, load_id: str, folder: Path
                       ) -> Iterator[tuple[Any, int, Validated]]:
    """``(file, rows read, validated batch)`` for every batch of ``infos``'
    files, read and validated by Spark tasks, in read order."""
    folder = Path(folder)

    def task(unit: tuple[int, Any]) -> Iterator[dict[str, Any]]:
        i, info = unit
        batch = 0
        try:
            for _, raw in connector.read(columns, chunk_rows=chunk_rows, only=[info]):
                out = validator.validate(raw, source=info.path, sha256=info.sha256,
                                         load_id=load_id)
                stem = folder / f"u{i:06d}-b{batch:06d}"
                _write(stem.with_suffix(".accepted"), out.accepted)
                if out.rejected.num_rows:
                    _write(stem.with_suffix(".rejected"), out.rejected)
                yield {"unit": i, "batch": batch, "rows": raw.num_rows,
                       "accepted": stem.with_suffix(".accepted").name,
                       "rejected": stem.with_suffix(".rejected").name
                       if out.rejected.num_rows else None, "error": None}
                batch += 1
        except DataError as err:  # said on the driver as a local load says it
            yield {"unit": i, "batch": batch, "rows": 0, "accepted": None,
                   "rejected": None, "error": str(err)}

    done = engine.map_units(list(enumerate(infos)), task, RESULT).to_pylist()
    done.sort(key=lambda r: (r["unit"], r["batch"]))
    failed = [r for r in done if r["error"]]
    if failed:
        raise DataError(failed[0]["error"])
    for r in done:
        accepted = _read(folder / r["accepted"])
        rejected = (_read(folder / r["rejected"]) if r["rejected"]
                    else pa.RecordBatch.from_pylist([], schema=QUARANTINE_SCHEMA))
        yield infos[r["unit"]], r["rows"], Validated(accepted, rejected)

