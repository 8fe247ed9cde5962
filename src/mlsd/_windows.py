"""Windows of event time: their definitions and durations, and the online
store of their events (Redis), shared by the spec (which checks them), the
consumer that feeds the store, the batch computation
(:mod:`mlsd.features._stream`, which documents the rules) and the service."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .errors import SpecError

AGGS = ("count", "sum", "mean", "min", "max")
KINDS = ("sliding", "tumbling", "session")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def seconds(text: str | float | int, where: str) -> float:
    """A duration: ``90s``, ``15m``, ``1h``, ``7d``, ``2w``, or seconds (the
    spec's own parser, ``period_seconds``; its errors named by ``where``)."""
    from .spec._models import period_seconds

    if isinstance(text, str) and re.fullmatch(r"\s*\d+(?:\.\d+)?\s*", text):
        text = float(text)  # a number of seconds, written as text
    try:
        return period_seconds(text)
    except ValueError:
        raise SpecError(f"{where}: {text!r} is not a duration (like 30s, 15m, 1h, "
                        f"7d) or a number of seconds above 0") from None


def _span(s: float) -> str:
    for unit in ("w", "d", "h", "m"):
        if s % _UNITS[unit] == 0:
            return f"{int(s // _UNITS[unit])}{unit}"
    return f"{s:g}s"


@dataclass(frozen=True)
class Window:
    """One windowed aggregate (see the module)."""

    column: str | None
    agg: str
    window: float  # seconds
    by: str
    time: str
    kind: str = "sliding"
    gap: float | None = None  # seconds, session windows
    lateness: float = 0.0  # seconds
    events: str | None = None  # the source holding the events (None: the rows)

    @property
    def name(self) -> str:
        """The column the feature adds: ``amount_sum_1h_by_user_id``."""
        what = "events" if self.agg == "count" and self.column is None else self.column
        kind = "" if self.kind == "sliding" else f"_{self.kind}"
        where = "" if self.events is None else f"_in_{self.events}"
        return f"{what}_{self.agg}{kind}_{_span(self.window)}_by_{self.by}{where}"

    def to_dict(self) -> dict[str, Any]:
        return {"column": self.column, "agg": self.agg, "window": self.window,
                "by": self.by, "time": self.time, "kind": self.kind,
                "gap": self.gap, "lateness": self.lateness, "events": self.events}

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> Window:
        return cls(**doc)

    @property
    def retention(self) -> float:
        """How far behind the watermark an event can still be needed."""
        return self.window + self.lateness


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


class OnlineWindows:
    """The windows' recent events in Redis, by entity (see the module).

    ``client``: a ``redis.Redis``; ``prefix``: the keys' namespace (the
    project's name). One sorted set per window and entity; the watermark (the
    newest event time seen, less ``lateness``) per window in a hash."""

    def __init__(self, client, windows: list[Window], prefix: str):
        self.r, self.windows, self.prefix = client, windows, prefix
        self.late = 0

    @classmethod
    def connect(cls, store: dict[str, Any], windows: list[Window], *,
                timeout: float = 30.0) -> OnlineWindows:
        """The store a spec's ``online_store`` (a dict: url, password_env,
        prefix) names, for ``windows``."""
        import os

        import redis

        env = store.get("password_env")
        client = redis.Redis.from_url(store["url"], socket_timeout=timeout,
                                      password=os.environ.get(env) if env else None)
        return cls(client, windows, store["prefix"])

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
