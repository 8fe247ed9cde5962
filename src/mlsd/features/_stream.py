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

import pyarrow as pa

from .._windows import (
    AGGS,
    KINDS,
    OnlineWindows,
    Window,
    _us,
    aggregate,
    seconds,
)

__all__ = ["AGGS", "KINDS", "OnlineWindows", "Window", "aggregate", "batch_values",
           "joined_values", "seconds"]

def batch_values(table: pa.Table, windows: list[Window]) -> pa.Table:
    """``table`` with one column per window (its :attr:`Window.name`),
    computed over the table's own rows as the events (DuckDB)."""

    if not windows:
        return table
    con, ordinal = _numbered(table, "events")
    try:
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
    return _appended(table, out, windows)


def joined_values(table: pa.Table, events: pa.Table, windows: list[Window]
                  ) -> pa.Table:
    """``table`` with one column per window, each row's value aggregating the
    rows of ``events`` (another table: clicks for orders) of the same entity
    before the row's time: a point-in-time range join (DuckDB), by the rules
    of :func:`batch_values` (which it equals when ``events`` is ``table``)."""

    if not windows:
        return table
    con, ordinal = _numbered(table, "rows_")
    try:
        con.register("events_", events)
        for i, w in enumerate(windows):
            con.execute(_join_sql(w, i, ordinal))
        cols = ", ".join(f"w{i}.v AS w{i}" for i in range(len(windows)))
        joins = " ".join(f"LEFT JOIN w{i} USING ({ordinal})"
                         for i in range(len(windows)))
        out = con.sql(f"SELECT {ordinal}, {cols} FROM rows_ {joins} "
                      f"ORDER BY {ordinal}").to_arrow_table()
    finally:
        con.close()
    return _appended(table, out, windows)


def _join_sql(w: Window, i: int, ordinal: str) -> str:
    """A temporary table ``w{i}(ordinal, v)``: the window's value per row."""
    by, t = _quote(w.by), _quote(w.time)
    value = f"e.{t}" if w.column is None else f"e.{_quote(w.column)}"
    fn = {"count": f"COUNT({value})", "sum": f"SUM({value})",
          "mean": f"AVG({value})", "min": f"MIN({value})",
          "max": f"MAX({value})"}[w.agg]
    size = _us(w.window)
    near = (f"e.{by} = r.{by} AND epoch_us(e.{t}) < epoch_us(r.{t}) AND "
            f"epoch_us(e.{t}) >= ")
    if w.kind == "sliding":
        cond = near + f"epoch_us(r.{t}) - {size}"
        source = "events_"
    elif w.kind == "tumbling":
        cond = near + f"(epoch_us(r.{t}) // {size}) * {size}"
        source = "events_"
    else:
        # the events in sessions; a row's session is its last earlier event's
        # when that one is at most `gap` before it
        gap = _us(w.gap)
        con_sessions = (
            f"(SELECT *, SUM(__starts) OVER (PARTITION BY {by} ORDER BY {t} ROWS "
            f"UNBOUNDED PRECEDING) AS __session FROM (SELECT *, CASE WHEN "
            f"epoch_us({t}) - lag(epoch_us({t})) OVER (PARTITION BY {by} ORDER BY "
            f"{t}) <= {gap} THEN 0 ELSE 1 END AS __starts FROM events_))")
        return (
            f"CREATE TEMP TABLE w{i} AS WITH s AS {con_sessions}, "
            f"last AS (SELECT r.{ordinal}, r.{by} AS __by, r.{t} AS __t, "
            f"e.__session, e.{t} AS __last FROM rows_ r ASOF LEFT JOIN s e "
            f"ON e.{by} = r.{by} AND e.{t} < r.{t}) "
            f"SELECT l.{ordinal}, {fn} AS v FROM last l LEFT JOIN s e ON "
            f"e.{by} = l.__by AND e.__session = l.__session AND "
            f"epoch_us(l.__t) - epoch_us(l.__last) <= {gap} AND "
            f"epoch_us(e.{t}) < epoch_us(l.__t) AND "
            f"epoch_us(e.{t}) >= epoch_us(l.__t) - {size} "
            f"GROUP BY l.{ordinal}")
    return (f"CREATE TEMP TABLE w{i} AS SELECT r.{ordinal}, {fn} AS v FROM rows_ r "
            f"LEFT JOIN {source} e ON {cond} GROUP BY r.{ordinal}")


def _numbered(table: pa.Table, name: str):
    """A one-thread DuckDB connection with ``table`` registered as ``name``,
    each row numbered (the ordinal's column name is returned too)."""
    import duckdb

    con = duckdb.connect()
    con.execute("SET threads TO 1")
    ordinal = "__mlsd_row"
    con.register(name, table.append_column(
        ordinal, pa.array(range(table.num_rows), pa.int64())))
    return con, ordinal


def _appended(table: pa.Table, out: pa.Table, windows: list[Window]) -> pa.Table:
    """``table`` with the windows' values ``out`` holds (``w0``, ``w1``, ...,
    in row order): counts and sums over no event are 0."""
    for i, w in enumerate(windows):
        col = out.column(f"w{i}")
        if w.agg in ("count", "sum"):
            col = col.fill_null(0)
        typ = pa.int64() if w.agg == "count" else pa.float64()
        table = table.append_column(w.name, col.cast(typ))
    return table


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


