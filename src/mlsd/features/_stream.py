"""Stream features: windowed aggregates of an entity's earlier events, the
same in training (batch, over the lake) and serving (Redis, fed by a stream).

A window feature reads an event table: a value column (none for ``count``),
an entity key (``by``) and an event time (``time``). For a row of entity ``k``
at time ``t`` its value aggregates ``k``'s events *before* ``t`` (strictly:
the row itself and events at the same instant are left out, so it does not
matter whether the event being scored has reached the store yet):

* ``sliding``: events in ``[t - window, t)``;
* ``tumbling``: events since the start of ``t``'s window of ``window``
  (windows aligned on the epoch), before ``t``;
* ``session``: events of ``t``'s session (consecutive events no more than
  ``gap`` apart, ``t`` no more than ``gap`` after the last one), at most
  ``window`` back.

Aggregates: ``count``, ``sum`` (0 over no event), ``mean``, ``min``, ``max``
(missing over no event).

Batch: one DuckDB window query over the table (``RANGE ... EXCLUDE GROUP``),
point-in-time correct by construction. Online: :class:`OnlineWindows` keeps
each entity's recent events in a Redis sorted set (score: event time; member:
the event id and value, so a redelivered event is added once), drops events
later than ``lateness`` behind the newest event time seen (the watermark),
evicts what no window can need, and answers ``(k, t)`` with the same rule.
Written here: no library computes event-time windows both over a table and
over a key-value store with one definition.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from .._windows import AGGS, KINDS, Window, seconds

__all__ = ["AGGS", "KINDS", "OnlineWindows", "Window", "batch_values", "seconds"]

def _epoch_us(value: Any) -> int:
    """An event time as whole microseconds since the epoch: Redis scores are
    doubles, exact for integers up to 2**53 (the year 2255 in microseconds),
    so window bounds compare exactly as DuckDB compares them."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        delta = value - datetime(1970, 1, 1, tzinfo=UTC)
        return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds
    return int(round(float(value) * 1e6))


def _us(seconds_: float) -> int:
    return int(round(seconds_ * 1e6))


def batch_values(table: pa.Table, windows: list[Window]) -> pa.Table:
    """``table`` with one column per window (its :attr:`Window.name`),
    computed over the table's own rows as the events (DuckDB)."""
    import duckdb

    if not windows:
        return table
    con = duckdb.connect()
    try:
        con.execute("SET threads TO 1")
        ordinal = "__mlsd_row"
        con.register("events", table.append_column(
            ordinal, pa.array(range(table.num_rows), pa.int64())))
        selects, frames = [], []
        for i, w in enumerate(windows):
            q = _quote
            by, t = q(w.by), q(w.time)
            value = "1" if w.column is None else q(w.column)
            fn = {"count": f"COUNT({value})", "sum": f"SUM({value})",
                  "mean": f"AVG({value})", "min": f"MIN({value})",
                  "max": f"MAX({value})"}[w.agg]
            span = f"INTERVAL '{_us(w.window)} microseconds'"
            if w.kind == "sliding":
                part = by
            elif w.kind == "tumbling":  # integer division, as online
                part = f"{by}, epoch_us({t}) // {_us(w.window)}"
            else:
                part = f"{by}, __session_{i}"
            frames.append(f"w{i} AS (PARTITION BY {part} ORDER BY {t} RANGE BETWEEN "
                          f"{span} PRECEDING AND CURRENT ROW EXCLUDE GROUP)")
            default = " , 0" if w.agg in ("count", "sum") else ""
            selects.append(f"COALESCE({fn} OVER w{i}{default}) AS w{i}"
                           if default else f"{fn} OVER w{i} AS w{i}")
        gaps, sessions = [], []
        for i, w in enumerate(windows):
            if w.kind == "session":  # a new session where the gap is too long
                t, by = _quote(w.time), _quote(w.by)
                gaps.append(f"CASE WHEN epoch_us({t}) - lag(epoch_us({t})) OVER "
                            f"(PARTITION BY {by} ORDER BY {t}) <= {_us(w.gap)} "
                            f"THEN 0 ELSE 1 END AS __starts_{i}")
                sessions.append(f"SUM(__starts_{i}) OVER (PARTITION BY {by} ORDER BY "
                                f"{t} ROWS UNBOUNDED PRECEDING) AS __session_{i}")
        base = "events"
        if sessions:
            base = (f"(SELECT *, {', '.join(sessions)} FROM (SELECT *, "
                    f"{', '.join(gaps)} FROM events))")
        sql = (f"SELECT {ordinal}, {', '.join(selects)} FROM {base} "
               f"WINDOW {', '.join(frames)} ORDER BY {ordinal}")
        out = con.sql(sql).to_arrow_table()
    finally:
        con.close()
    for i, w in enumerate(windows):
        col = out.column(f"w{i}")
        typ = pa.int64() if w.agg == "count" else pa.float64()
        table = table.append_column(w.name, col.cast(typ))
    return table


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class OnlineWindows:
    """The windows' recent events in Redis, by entity (see the module).

    ``client``: a ``redis.Redis``; ``prefix``: the keys' namespace (the
    project's name). One sorted set per window and entity; the watermark (the
    newest event time seen, less ``lateness``) per window in a hash."""

    def __init__(self, client, windows: list[Window], prefix: str):
        self.r, self.windows, self.prefix = client, windows, prefix
        self.late = 0

    def _key(self, w: Window, entity: Any) -> str:
        return f"{self.prefix}:win:{w.name}:{entity}"

    def _marks(self) -> str:
        return f"{self.prefix}:win:watermarks"

    def add(self, rows: list[dict[str, Any]], ids: list[str]) -> int:
        """Add events (dicts with the windows' columns) with their ids; the
        ones later than the lateness allows are dropped and counted."""
        marks = {k.decode(): int(v) for k, v in self.r.hgetall(self._marks()).items()}
        pipe = self.r.pipeline(transaction=False)
        late = 0
        for w in self.windows:
            newest = marks.get(w.name)
            touched: set[str] = set()
            for row, eid in zip(rows, ids, strict=True):
                at, entity = row.get(w.time), row.get(w.by)
                value = 1.0 if w.column is None else row.get(w.column)
                if at is None or entity is None or value is None:
                    continue
                t = _epoch_us(at)
                if newest is not None and t < newest - _us(w.lateness):
                    late += 1  # behind the watermark: as if it never came
                    continue
                newest = t if newest is None else max(newest, t)
                key = self._key(w, entity)
                pipe.zadd(key, {f"{eid}|{float(value)!r}": t})
                touched.add(key)
            for key in touched:  # what no window can need any more
                pipe.zremrangebyscore(key, "-inf", f"({newest - _us(w.retention)}")
            if newest is not None:
                pipe.hset(self._marks(), w.name, str(newest))
        pipe.execute()
        self.late += late
        return late

    def values(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Each row's window values (by its entity and time), one round trip."""
        pipe = self.r.pipeline(transaction=False)
        plan = []
        for row in rows:
            for w in self.windows:
                at, entity = row.get(w.time), row.get(w.by)
                if at is None or entity is None:
                    plan.append(None)
                    continue
                t = _epoch_us(at)
                size = _us(w.window)
                lo = (t // size) * size if w.kind == "tumbling" else t - size
                pipe.zrangebyscore(self._key(w, entity), str(lo), f"({t}",
                                   withscores=True)
                plan.append(t)
        found = iter(pipe.execute())
        out = []
        for _ in rows:
            doc = {}
            for w in self.windows:
                t = plan[len(out) * len(self.windows) + len(doc)]
                events = [] if t is None else next(found)
                if w.kind == "session":
                    events = _session(events, t, _us(w.gap))
                doc[w.name] = aggregate(w.agg, [float(m.rsplit(b"|", 1)[1])
                                                for m, _ in events])
            out.append(doc)
        return out


def _session(events: list[tuple[bytes, float]], t: int, gap: int) -> list:
    """The events of ``t``'s session: walking back from ``t`` while
    consecutive events are no more than ``gap`` apart."""
    kept, last = [], t
    for member, at in reversed(events):
        if last - at > gap:
            break
        kept.append((member, at))
        last = at
    return kept


def aggregate(agg: str, values: list[float]) -> float | int | None:
    if agg == "count":
        return len(values)
    if agg == "sum":
        return float(sum(values))
    if not values:
        return None
    if agg == "mean":
        return float(sum(values) / len(values))
    return float(min(values) if agg == "min" else max(values))
