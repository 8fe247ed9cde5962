"""Stream features: the same windowed aggregates in batch (DuckDB over a
table) and online (Redis, fed event by event, out of order within the allowed
lateness). The real Redis on 127.0.0.1."""

from __future__ import annotations

import random
import secrets
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pytest

from mlsd.features._stream import OnlineWindows, Window, batch_values, seconds
from tests._helpers import require_service

LATENESS = 600.0
WINDOWS = [
    Window("amount", "sum", 3600, "user", "at", lateness=LATENESS),
    Window(None, "count", 1800, "user", "at", lateness=LATENESS),
    Window("amount", "mean", 7200, "user", "at", lateness=LATENESS),
    Window("amount", "min", 3600, "user", "at", lateness=LATENESS),
    Window("amount", "max", 3600, "user", "at", lateness=LATENESS),
    Window("amount", "sum", 3600, "user", "at", kind="tumbling", lateness=LATENESS),
    Window(None, "count", 86400, "user", "at", kind="session", gap=900,
           lateness=LATENESS),
]


def _events(n: int, seed: int = 3):
    rng = random.Random(seed)
    t0 = datetime(2024, 5, 1, tzinfo=UTC)
    rows = []
    for i in range(n):
        at = t0 + timedelta(seconds=rng.uniform(0, 3 * 86400))
        if i % 50 == 7 and rows:  # ties: the same instant as another event
            at = rows[rng.randrange(len(rows))]["at"]
        at = at.replace(microsecond=at.microsecond - at.microsecond % 1000)
        rows.append({"id": f"e{i}", "user": f"u{rng.randrange(40)}", "at": at,
                     "amount": round(rng.uniform(1, 500), 2)})
    return rows


def test_durations_and_names():
    assert seconds("90s", "w") == 90 and seconds("1h", "w") == 3600
    assert seconds("7d", "w") == 7 * 86400 and seconds(30, "w") == 30
    with pytest.raises(Exception, match="not a duration"):
        seconds("1 hour", "features[0].window")
    assert WINDOWS[0].name == "amount_sum_1h_by_user"
    assert WINDOWS[5].name == "amount_sum_tumbling_1h_by_user"
    assert WINDOWS[1].name == "events_count_30m_by_user"


def test_batch_and_online_values_agree_event_by_event():
    require_service("Redis", 6379)
    import redis

    events = _events(3000)
    rng = random.Random(5)
    # arrival: by time, each event delayed by up to the lateness; a few far
    # later (beyond it): the stream drops those, so the batch leaves them out
    arrival = sorted(events, key=lambda e: e["at"] + timedelta(
        seconds=rng.uniform(0, LATENESS * 0.9)))
    too_late = set()
    for k in range(0, 3000, 300):
        e = arrival.pop(k)
        arrival.insert(min(len(arrival), k + 200), e)
        too_late.add(e["id"])
    client = redis.Redis.from_url("redis://127.0.0.1:6379/0")
    prefix = f"mlsd-test-{secrets.token_hex(4)}"
    store = OnlineWindows(client, WINDOWS, prefix)
    online: dict[str, dict] = {}
    pending = sorted(events, key=lambda e: e["at"])
    newest = None
    try:
        for e in arrival:
            newest = e["at"] if newest is None else max(newest, e["at"])
            # once the watermark passes t, every event before t has come (the
            # ones further behind are dropped): t is answered as a request at
            # that moment would be, before this event moves the store on
            ready = newest - timedelta(seconds=LATENESS)
            while pending and pending[0]["at"] <= ready:
                q = pending.pop(0)
                online[q["id"]] = store.values([q])[0]
            store.add([e], [e["id"]])
        for e in pending:
            online[e["id"]] = store.values([e])[0]
    finally:
        for key in client.scan_iter(f"{prefix}:*"):
            client.delete(key)
        client.close()
    # the events that came more than the lateness behind were dropped, by
    # every window; the batch is computed without them
    assert store.late == len(too_late) * len(WINDOWS)
    table = pa.Table.from_pylist([e for e in events if e["id"] not in too_late])
    checked = 0
    for row in batch_values(table, WINDOWS).to_pylist():
        got = online[row["id"]]
        for w in WINDOWS:
            want = row[w.name]
            if want is None or got[w.name] is None:
                assert want is None and got[w.name] is None, (row, w.name)
            else:
                assert got[w.name] == pytest.approx(want, rel=1e-9, abs=1e-9), (
                    row["id"], w.name, got[w.name], want)
        checked += 1
    assert checked == 3000 - len(too_late)
    nonzero = sum(1 for r in online.values() if r["events_count_30m_by_user"])
    assert nonzero > 300  # windows that hold events, not only empty ones


def test_the_point_in_time_join_equals_the_window_query():
    """Events from another table go through a range join; over the table's
    own rows it must give what the window query gives (the same rules)."""
    from mlsd.features._stream import joined_values

    events = _events(2000, seed=9)
    table = pa.Table.from_pylist(events)
    by_window = batch_values(table, WINDOWS).to_pylist()
    by_join = joined_values(table, table, WINDOWS).to_pylist()
    for a, b in zip(by_window, by_join, strict=True):
        for w in WINDOWS:
            if a[w.name] is None:
                assert b[w.name] is None, (a["id"], w.name, b[w.name])
            else:
                assert b[w.name] == pytest.approx(a[w.name], rel=1e-9), (
                    a["id"], w.name, b[w.name], a[w.name])
    # orders joined to another table of clicks: only earlier clicks count
    clicks = pa.Table.from_pylist(events[:1000])
    orders = pa.Table.from_pylist(events[1000:])
    got = joined_values(orders, clicks, WINDOWS[:2]).to_pylist()
    for row in got[:200]:
        want = [e for e in events[:1000] if e["user"] == row["user"]
                and row["at"] - timedelta(hours=1) <= e["at"] < row["at"]]
        assert row["amount_sum_1h_by_user"] == pytest.approx(
            sum(e["amount"] for e in want))
