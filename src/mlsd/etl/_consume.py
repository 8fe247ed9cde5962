"""Consume a broker source into the lake: micro-batches, exactly-once effect.

``mlsd consume NAME`` reads a RabbitMQ queue or a Redis stream
(:mod:`mlsd.connectors._brokers`) and stores its messages as a file's rows
are stored: each payload decoded (JSON, Avro, Protobuf), typed and checked by
the source's schema and the project's rules (:class:`Validator`), accepted
rows appended to ``sources/NAME`` and refused ones, with their reasons, to
``quarantine/NAME`` and to the dead-letter queue.

A micro-batch closes at ``batch_rows`` messages or ``batch_seconds`` after
its first one. Its order is what makes the effect exactly-once:

1. the quarantine's commit, then the data's (each one atomic Delta commit);
2. the refused messages published to the dead-letter queue (confirmed);
3. one acknowledgement of the whole batch.

A crash before 3 gives the batch back to the broker, which delivers it
again; every stored and quarantined row keeps its message id
(``_message_id``), and a bounded set of the most recent ids (read back from
the lake's newest files at start, ``dedupe_window``) drops what was already
committed. So the lake holds each message once, with no anti-join against
the whole dataset per batch. A dead letter may be published twice after such
a crash (before the acknowledgement); the quarantine holds it once.

SIGTERM or Ctrl-C stops fetching, commits and acknowledges what was
fetched, and returns. Lineage per row: ``_source`` (the broker's URL and
queue, no password), ``_source_sha256`` (the batch's payloads' digest),
``_line`` (the message's place in its batch), ``_load_id`` (the batch),
``_message_id`` and ``_offset`` (Redis: the entry id).
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from ..connectors._brokers import missing_payload
from ..errors import DataError
from ..formats import LINE, RAW
from ..formats._records import flatten, records_to_batch
from ._schema import DataSchema, load_schema, save_schema, vote_types
from ._validate import Validator

MESSAGE_ID, OFFSET = "_message_id", "_offset"
LINEAGE = pa.schema([(MESSAGE_ID, pa.string()), (OFFSET, pa.string())])


class RecentIds:
    """The most recent ``size`` message ids, oldest forgotten first."""

    def __init__(self, size: int):
        self.size = size
        self._order: deque[str] = deque()
        self._set: set[str] = set()

    def __contains__(self, key: str) -> bool:
        return key in self._set

    def __len__(self) -> int:
        return len(self._set)

    def add(self, keys) -> None:
        for k in keys:
            if k in self._set:
                continue
            self._order.append(k)
            self._set.add(k)
        while len(self._order) > self.size:
            self._set.discard(self._order.popleft())


def recent_ids(lake, name: str, size: int) -> RecentIds:
    """The ids of the newest ``size`` rows stored or quarantined for a broker
    source, read from the newest files of both tables (only the id column)."""
    import pyarrow.parquet as pq

    found: list[tuple[int, str, str, int, Any]] = []
    for area in ("sources", "quarantine"):
        if not lake.exists(area, name):
            continue
        adds = pa.table(lake._table(area, name).get_add_actions(flatten=True))
        fs, base = lake.filesystem(area, name)
        for path, mtime, n in zip(adds.column("path").to_pylist(),
                                  adds.column("modification_time").to_pylist(),
                                  adds.column("num_records").to_pylist(),
                                  strict=True):
            found.append((int(mtime or 0), area, f"{base}/{path}", int(n or 0), fs))
    found.sort(key=lambda f: f[0], reverse=True)
    keep, total = [], 0
    for item in found:
        if total >= size:
            break
        keep.append(item)
        total += item[3]
    store = RecentIds(size)
    for _, _, path, _, fs in reversed(keep):  # oldest first: the newest stay
        if MESSAGE_ID not in pq.read_schema(path, filesystem=fs).names:
            continue
        store.add(k for k in pq.read_table(path, columns=[MESSAGE_ID], filesystem=fs)
                  .column(0).to_pylist() if k is not None)
    return store


@dataclass
class ConsumeResult:
    """What one `mlsd consume` did."""

    source: str
    broker: str
    batches: int = 0
    messages: int = 0
    stored: int = 0
    quarantined: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    erased: int = 0
    version: int | None = None
    seconds: float = 0.0
    stopped_by: str = ""
    schema_frozen: bool = False
    reasons: dict[str, int] = field(default_factory=dict)
    sampled: int | None = None  # a reservoir's rows, of `seen` valid ones
    seen: int | None = None
    zero_weights: int = 0  # a weighted reservoir's missing or negative weights
    online: list[str] = field(default_factory=list)  # stream features fed
    late: int = 0  # events the online store dropped (behind its watermark)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Decoder:
    """Payload bytes to a record (a dict), by the source's format."""

    def __init__(self, spec, root: Path):
        self.spec = spec
        self.fmt = spec.format
        if self.fmt == "avro":
            import fastavro

            path = root / spec.avro_schema
            try:
                self.avro = fastavro.parse_schema(json.loads(path.read_text()))
            except (OSError, ValueError) as err:
                raise DataError(f"avro_schema {spec.avro_schema}: {err}") from None
        elif self.fmt == "protobuf":
            from ..formats._proto import message_class

            self.cls = message_class(root / spec.proto, spec.message)

    def __call__(self, body: bytes | None
                 ) -> tuple[dict | None, str | None, str | None]:
        """(record, error, raw text)."""
        if body is None:
            return None, "the message has no payload", None
        if self.fmt == "json":
            text = body.decode("utf-8", "replace")
            try:
                rec = json.loads(text)
            except ValueError as err:
                return None, f"not JSON: {err}", text
            if not isinstance(rec, dict):
                return None, f"the payload is JSON {type(rec).__name__}, not an " \
                             f"object", text
            return (flatten(rec) if self.spec.nested == "flatten" else rec), None, text
        if self.fmt == "avro":
            import io

            import fastavro
            try:
                return fastavro.schemaless_reader(io.BytesIO(body), self.avro,
                                                  None), None, None
            except Exception as err:  # noqa: BLE001 - any decoding failure
                return None, f"not an Avro record of the schema: " \
                             f"{type(err).__name__} {err}", None
        from google.protobuf.message import DecodeError

        from ..formats._proto import to_record
        try:
            return to_record(self.cls.FromString(body)), None, None
        except DecodeError as err:
            return None, f"not a Protobuf {self.cls.DESCRIPTOR.name}: {err}", None


def consume(name: str, spec, rules, *, root: Path, lake, catalog=None,
            transform=None, max_messages: int | None = None,
            idle_seconds: float | None = None, stop: threading.Event | None = None,
            handle_signals: bool = False,
            on_batch: Callable[[ConsumeResult], None] | None = None,
            broker=None, seed: int = 0, windows=(), online_store=None
            ) -> ConsumeResult:
    """Consume the broker source ``name`` (see the module) until ``stop`` is
    set, a signal arrives (``handle_signals``), ``max_messages`` were handled
    or no message came for ``idle_seconds``. ``seed``: a reservoir's draws.
    ``windows``: stream features whose events this source holds, fed to
    ``online_store`` (a dict: url, password_env, prefix) as they come."""
    from contextlib import ExitStack

    from ..connectors._brokers import gather, open_broker, stop_on_signals
    from ._transform import Transformer

    stack = ExitStack()

    where = f"source {name!r}"
    stop = stop or threading.Event()
    decode = _Decoder(spec, root)
    client = broker or open_broker(spec, where=where)
    result = ConsumeResult(source=name, broker=client.display)
    schema = load_schema(root, name)
    reasons: Counter[str] = Counter()
    started = time.monotonic()

    def heard(signal_name: str) -> None:
        result.stopped_by = signal_name
    try:
        stack.enter_context(stop_on_signals(stop, handle_signals, heard))
        seen = recent_ids(lake, name, spec.dedupe_window)
        sampler = None
        if spec.reservoir is not None:
            sampler = _Sampler.load(lake, name, spec.reservoir, seed)
            seen.add(sampler.last_ids)  # a batch committed and not acknowledged
        validator = None
        online = None
        erasures = [e["predicate"] for e in catalog.erasures(name)] if catalog else []
        last_message = time.monotonic()
        while not stop.is_set():
            room = spec.batch_rows
            if max_messages is not None:
                room = min(room, max_messages - result.messages)
                if room <= 0:
                    result.stopped_by = result.stopped_by or "max_messages"
                    break
            batch = gather(client, room, spec.batch_seconds, stop)
            if not batch:
                if idle_seconds is not None and \
                        time.monotonic() - last_message >= idle_seconds:
                    result.stopped_by = result.stopped_by or "idle"
                    break
                continue
            last_message = time.monotonic()
            if schema is None:
                schema = _infer(batch, decode, spec, rules, client.display)
                if schema is not None:
                    save_schema(root, name, schema)
                    result.schema_frozen = True
            if validator is None and schema is not None:
                transformer = Transformer(spec=transform, schema=schema) \
                    if transform else None
                validator = Validator(schema=schema, rules=rules,
                                      transform=transformer)
                validator.check_rules(f"{where} (schemas/{name}.yaml)")
                if windows:  # with the schema known: which windows it feeds
                    online = _online(windows, schema, online_store, where, name)
                    result.online = [w.name for w in online.windows] if online \
                        else []
            # nothing readable yet (no schema to infer): this batch's messages
            # are refused with their decoding errors, the next batch infers
            _one_batch(batch, name, spec, client, decode, validator or Validator(
                schema=DataSchema({}, {}), rules=rules), lake, seen, erasures,
                result, reasons, sampler, online)
            result.reasons = dict(reasons.most_common())
            if on_batch:
                on_batch(result)
    finally:
        stack.close()
        client.close()
        result.seconds = round(time.monotonic() - started, 3)
    if stop.is_set() and not result.stopped_by:
        result.stopped_by = "stop"
    return result


def _online(windows, schema: DataSchema, store: dict | None, where: str,
            source: str):
    """The online store fed with this source's events: the windows whose
    entity, time and value columns the source has (None: none has)."""
    mine = [w for w in windows if w.events in (None, source) and all(
        c in schema.columns for c in (w.by, w.time, w.column) if c)]
    if not mine:
        return None
    if store is None:
        raise DataError(f"{where}: stream features read this source's events but no "
                        f"online_store is set")
    from .._windows import OnlineWindows

    return OnlineWindows.connect(store, mine)


def _infer(batch, decode, spec, rules, display) -> DataSchema | None:
    """The schema of a source seen for the first time, by the file sources'
    vote over the first micro-batch's readable payloads (then frozen)."""
    records = [r for r in (decode(m.body)[0] for m in batch) if r is not None]
    if not records:
        return None
    columns = list(dict.fromkeys(k for r in records for k in r))
    raw = records_to_batch(records, columns, list(range(len(records))), typed=False)
    types = vote_types(pa.Table.from_batches([raw]), columns,
                       null_values=rules.null_values, threshold=rules.infer_threshold,
                       structs=spec.nested == "struct")
    return DataSchema(types, {"inferred_from": display,
                              "rows_sampled": str(len(records)),
                              "threshold": str(rules.infer_threshold)})


def _one_batch(batch, name, spec, client, decode, validator, lake, seen, erasures,
               result: ConsumeResult, reasons: Counter, sampler=None,
               online=None) -> None:
    """Decode, drop redeliveries, validate, commit, dead-letter, acknowledge."""
    columns = list(validator.schema.columns)
    known = set(columns)
    records, errors, raws, ids, offsets, keep = [], [], [], [], [], []
    in_batch: set[str] = set()
    digest = hashlib.sha256()
    for m in batch:
        rec, err, text = decode(m.body)
        if (missing := missing_payload(m, spec)) is not None:
            err = missing
            text = json.dumps(m.headers, ensure_ascii=False)  # kept as it came
        mid = None
        if spec.id_from == "field":
            if rec is not None:
                value = rec.get(spec.id_field)
                mid = None if value is None else str(value)
                if mid is None and err is None:
                    err = f"no message id: the field {spec.id_field!r} is missing"
        else:
            mid = m.message_id
            if mid is None and err is None:
                err = "no message id: the AMQP message_id property is not set"
        # a message with no readable id is known by its payload's digest
        dedupe = mid if mid is not None else "sha256:" + hashlib.sha256(
            m.body or b"").hexdigest()
        if dedupe in seen or dedupe in in_batch:
            result.duplicates += 1
            continue
        in_batch.add(dedupe)
        if rec is not None and err is None and (extra := [k for k in rec
                                                          if k not in known]):
            err = f"fields not in the schema (schemas/{name}.yaml): " + ", ".join(
                sorted(map(str, extra))[:10])
        digest.update(m.body or b"")
        records.append(rec if err is None else None)
        errors.append(err)
        raws.append(text)
        ids.append(dedupe)
        offsets.append(m.offset)
        keep.append(m)
    result.messages += len(batch)
    if keep:
        load_id = f"consume-{uuid.uuid4().hex}"
        raw = records_to_batch(records, columns, list(range(len(keep))), errors)
        raw = raw.set_column(raw.schema.get_field_index(RAW), RAW,
                             pa.array(raws, pa.string()))
        out = validator.validate(raw, source=client.display,
                                 sha256=digest.hexdigest(), load_id=load_id)
        accepted = _with_lineage(pa.Table.from_batches([out.accepted]), ids, offsets)
        rejected = _with_lineage(pa.Table.from_batches([out.rejected]), ids, offsets)
        if erasures and accepted.num_rows:
            from ._load import without_erased

            accepted, gone = without_erased(accepted, erasures, name)
            result.erased += gone
        if online is not None and accepted.num_rows:
            # before the commits: a crash after them drops the batch when it
            # comes again, and adding an event twice changes nothing (by id)
            cols = list(dict.fromkeys(c for w in online.windows
                                      for c in (w.by, w.time, w.column) if c))
            result.late += online.add(accepted.select(cols).to_pylist(),
                                      accepted.column(MESSAGE_ID).to_pylist())
        meta = {"mlsd.load_id": load_id, "mlsd.rows_in": str(len(keep)),
                "mlsd.broker": client.display}
        if rejected.num_rows:
            lake.append("quarantine", name, rejected, metadata=meta)
        if sampler is not None:
            if accepted.num_rows:
                sampler.add(accepted)
                result.version = sampler.commit(lake, name, meta, ids)
            result.sampled, result.seen = sampler.kept, sampler.reservoir.seen
            result.zero_weights = sampler.zero_weights
        elif accepted.num_rows:
            result.version = lake.append("sources", name, accepted, metadata=meta)
        bad = []
        for line, found in zip(rejected.column(LINE).to_pylist(),
                               rejected.column("reasons").to_pylist(), strict=True):
            bad.append((keep[line], found))
            for r in found:
                reasons[f"{r['column'] or '(record)'}: {r['rule']}"] += 1
        if bad:
            client.dead_letter(bad)
        result.stored += accepted.num_rows
        result.quarantined += rejected.num_rows
        result.dead_lettered += len(bad)
        seen.add(ids)
    client.ack(batch)  # after the commits: a crash before this redelivers
    result.batches += 1


class _Sampler:
    """A reservoir over the accepted rows of a broker source, committed as
    ``sources/NAME`` (an overwrite) with each micro-batch: the kept rows, their
    stream positions and slots (and keys, weighted), and in the commit's
    metadata the reservoir's state and the batch's message ids, so a restart
    goes on with the same draws and drops the batch if it comes again."""

    POS, SLOT, KEY = "_position", "_slot", "_reservoir_key"
    META = "mlsd.reservoir"

    def __init__(self, spec, seed: int):
        from .._reservoir import Reservoir, WeightedReservoir

        self.spec = spec
        self.reservoir = (WeightedReservoir(spec.n, seed=seed) if spec.weights
                          else Reservoir(spec.n, seed=seed))
        self.last_ids: list[str] = []
        self.zero_weights = 0

    @property
    def kept(self) -> int:
        rows, _ = self.reservoir.result()
        return 0 if rows is None else rows.num_rows

    @classmethod
    def load(cls, lake, name: str, spec, seed: int) -> _Sampler:
        import numpy as np

        from .._reservoir import Reservoir, WeightedReservoir

        me = cls(spec, seed)
        last = lake.last_write("sources", name)
        if last is None:
            return me
        doc = last.get(cls.META)
        if doc is None:
            raise DataError(f"source {name!r}: sources/{name} holds rows that are "
                            f"not this reservoir's (consumed without `reservoir`, "
                            f"or written otherwise); delete it or sample into "
                            f"another source")
        doc = json.loads(doc)
        if doc["state"]["k"] != spec.n or doc.get("weights") != spec.weights:
            raise DataError(f"source {name!r}: the reservoir changed since its "
                            f"last commit (n {doc['state']['k']} -> {spec.n}, weights "
                            f"{doc.get('weights')} -> {spec.weights}); a sample "
                            f"cannot go on under other rules: delete sources/{name} "
                            f"or sample into another source")
        table = lake.dataset("sources", name).to_table()
        table = table.take(_sort_by(table, cls.POS))
        pos = table.column(cls.POS).to_numpy()
        slots = table.column(cls.SLOT).to_numpy()
        extra = [c for c in (cls.POS, cls.SLOT, cls.KEY) if c in table.column_names]
        rows = table.drop_columns(extra)
        if spec.weights:
            me.reservoir = WeightedReservoir.restore(
                doc["state"], rows, pos, slots,
                np.asarray(table.column(cls.KEY).to_numpy(), dtype=np.float64))
        else:
            me.reservoir = Reservoir.restore(doc["state"], rows, pos, slots)
        me.last_ids = doc.get("last_ids", [])
        return me

    def add(self, accepted: pa.Table) -> None:
        if not self.spec.weights:
            self.reservoir.add(accepted)
            return
        import numpy as np

        col = accepted.column(self.spec.weights)
        w = np.asarray(col.cast(pa.float64()).fill_null(0.0).to_numpy(
            zero_copy_only=False), dtype=np.float64)
        bad = ~np.isfinite(w) | (w < 0)
        self.zero_weights += int(bad.sum())
        self.reservoir.add(accepted, weights=np.where(bad, 0.0, w))

    def commit(self, lake, name: str, meta: dict[str, str], ids: list[str]) -> int:
        rows, pos = self.reservoir.result()
        table = rows.append_column(self.POS, pa.array(pos, pa.int64())).append_column(
            self.SLOT, pa.array(self.reservoir.slots(), pa.int64()))
        if self.spec.weights:
            table = table.append_column(self.KEY, pa.array(self.reservoir.keys(),
                                                           pa.float64()))
        doc = {"state": self.reservoir.state(), "weights": self.spec.weights,
               "last_ids": ids}
        version, _ = lake.write("sources", name, table, write_id=meta["mlsd.load_id"],
                                mode="overwrite",
                                metadata={**meta, self.META: json.dumps(doc)})
        self.last_ids = ids
        return version


def _sort_by(table: pa.Table, column: str) -> pa.Array:
    import pyarrow.compute as pc

    return pc.sort_indices(table, sort_keys=[(column, "ascending")])


def _with_lineage(table: pa.Table, ids: list[str], offsets: list[str | None]
                  ) -> pa.Table:
    lines = table.column(LINE).to_pylist()
    return table.append_column(LINEAGE.field(MESSAGE_ID), pa.array(
        [ids[i] for i in lines], pa.string())).append_column(
        LINEAGE.field(OFFSET), pa.array([offsets[i] for i in lines], pa.string()))


__all__ = ["MESSAGE_ID", "OFFSET", "ConsumeResult", "RecentIds", "consume",
           "recent_ids"]
