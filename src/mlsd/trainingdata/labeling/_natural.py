"""Natural labels: what users did after a prediction.

The prediction log (lake area ``predictions``) holds one row a prediction:
request id, item key, model version, time, raw inputs and outputs (JSON). The
serving issue's service writes it; here it is imported from files. Feedback
events (area ``feedback``: request id, event, time) are joined to the
predictions by request id, the events inside the attribution window after
each prediction counting. The label is one chosen event (a purchase: positive,
none in a closed window: negative) or a weighted score of the events against
a threshold. A prediction whose window has not closed yet stays unlabelled,
not negative: the purchase may still come. The feedback-loop length (from
prediction to the event that decided the label, or to the window's end for a
negative) says how long the loop takes to close.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa

from ...errors import DataError

LOG_SCHEMA = pa.schema([
    pa.field("request_id", pa.string()), pa.field("item", pa.string()),
    pa.field("model_version", pa.string()),
    pa.field("predicted_at", pa.timestamp("us", tz="UTC")),
    pa.field("inputs", pa.string()), pa.field("outputs", pa.string())])
FEEDBACK_SCHEMA = pa.schema([
    pa.field("request_id", pa.string()), pa.field("event", pa.string()),
    pa.field("at", pa.timestamp("us", tz="UTC"))])


def _utc(v: Any) -> datetime | None:
    from ._store import _time

    return _time(v)


def log_rows(table: pa.Table, *, request_id: str, item: str | None,
             model_version: str | None, time: str, inputs: list[str] | None = None,
             outputs: list[str] | None = None) -> pa.Table:
    """A prediction log from a table's columns: the request id, the item key,
    the model version, the time; the other columns (or ``inputs``) kept as
    the raw inputs, ``outputs`` as the outputs (JSON text each)."""
    cols = table.column_names
    for flag, c in (("--request-id", request_id), ("--item", item),
                    ("--model-version", model_version), ("--time", time)):
        if c is not None and c not in cols:
            raise DataError(f"{flag} {c!r} is not a column (columns: "
                            f"{', '.join(cols)})")
    meta = {request_id, item, model_version, time} - {None}
    outs = list(outputs or [])
    ins = list(inputs) if inputs is not None else [c for c in cols
                                                   if c not in meta | set(outs)]
    data = table.to_pylist()
    rows = []
    for r in data:
        at = _utc(r[time])
        if r[request_id] is None or at is None:
            continue
        rows.append({"request_id": str(r[request_id]),
                     "item": None if item is None or r[item] is None else str(r[item]),
                     "model_version": None if model_version is None
                     else r[model_version],
                     "predicted_at": at,
                     "inputs": json.dumps({c: r[c] for c in ins}, default=str),
                     "outputs": json.dumps({c: r[c] for c in outs}, default=str)})
    return pa.Table.from_pylist(rows, schema=LOG_SCHEMA)


def feedback_rows(table: pa.Table, *, request_id: str, event: str, time: str
                  ) -> pa.Table:
    """Feedback events from a table's columns."""
    cols = table.column_names
    for flag, c in (("--request-id", request_id), ("--event", event),
                    ("--time", time)):
        if c not in cols:
            raise DataError(f"{flag} {c!r} is not a column (columns: "
                            f"{', '.join(cols)})")
    rows = [{"request_id": str(r[request_id]), "event": str(r[event]),
             "at": _utc(r[time])} for r in table.to_pylist()
            if r[request_id] is not None and r[event] is not None
            and _utc(r[time]) is not None]
    return pa.Table.from_pylist(rows, schema=FEEDBACK_SCHEMA)


def natural_labels(log: pa.Table, events: pa.Table, spec, *,
                   now: datetime | None = None) -> tuple[list[dict], dict]:
    """Label rows (for the label store) of the logged predictions whose window
    has closed or whose label is already decided, and the figures: labelled,
    positives, still open, without an item, and the feedback-loop length."""
    now = now or datetime.now(UTC)
    window = spec.window_seconds
    by_request = _by_request(events)
    rows, loops, hits, still_open, no_item, outside = [], [], [], 0, 0, 0
    log = log.sort_by([("predicted_at", "ascending")])  # the last one decides
    for rid, item, at in zip(log.column("request_id").to_pylist(),
                             log.column("item").to_pylist(),
                             log.column("predicted_at").to_pylist(), strict=True):
        if item is None:
            no_item += 1
            continue
        positive, when, out = _decide(at, by_request.get(rid, []), spec, window, now)
        outside += out
        if positive is None:
            still_open += 1  # the event may still come
            continue
        loops.append(when.timestamp() - at.timestamp())
        if positive:
            hits.append(loops[-1])
        rows.append({"item": item, "label": spec.positive if positive
                     else spec.negative, "kind": "natural",
                     "source": f"feedback:{spec.event or 'score'}",
                     "confidence": None, "labelled_at": when})
    # an item predicted several times: its last closed prediction decides
    last: dict[str, dict] = {}
    for r in rows:
        last[r["item"]] = r
    labelled = list(last.values())
    loop = np.asarray(loops)
    stats = {"predictions": log.num_rows, "events": events.num_rows,
             "labelled": len(labelled),
             "positives": sum(r["label"] == spec.positive for r in labelled),
             "still_open": still_open, "without_item": no_item,
             "events_outside_window": outside, "window": spec.window,
             # prediction to label: a positive's deciding event, a negative's
             # window end; the positives' alone say how fast users answer
             "feedback_loop_seconds": None if not len(loop) else {
                 "median": round(float(np.median(loop)), 1),
                 "p90": round(float(np.quantile(loop, 0.9)), 1),
                 "max": round(float(loop.max()), 1),
                 "positives_median": round(float(np.median(hits)), 1)
                 if hits else None}}
    return labelled, stats


def _by_request(events: pa.Table) -> dict[str, list[tuple[datetime, str]]]:
    out: dict[str, list[tuple[datetime, str]]] = {}
    for rid, ev, at in zip(events.column("request_id").to_pylist(),
                           events.column("event").to_pylist(),
                           events.column("at").to_pylist(), strict=True):
        out.setdefault(rid, []).append((at, ev))
    return out


def _decide(at: datetime, events: list[tuple[datetime, str]], spec, window: float,
            now: datetime) -> tuple[bool | None, datetime | None, int]:
    """One logged prediction's natural label from its events: positive or
    not (None: its window is still open and nothing decided it yet), when it
    was decided (the deciding event, or the window's end), and how many of
    its events fell outside the window."""
    closes = at.timestamp() + window
    seen = sorted(events)
    inside = [(t, e) for t, e in seen if at <= t and t.timestamp() <= closes]
    decided_at = None
    if spec.event is not None:
        decided_at = next((t for t, e in inside if e == spec.event), None)
    else:
        score = 0.0
        for t, e in inside:
            score += spec.weights.get(e, 0.0)
            if decided_at is None and score >= spec.threshold:
                decided_at = t
    positive = decided_at is not None
    if not positive and now.timestamp() < closes:
        return None, None, len(seen) - len(inside)
    when = decided_at if positive else datetime.fromtimestamp(closes, UTC)
    return positive, when, len(seen) - len(inside)


def request_labels(log: pa.Table, events: pa.Table, spec, *,
                   now: datetime | None = None) -> dict[str, str]:
    """Each logged prediction's natural label by its request id (the
    monitor's live metrics: a request needs no item key), for the ones
    whose window has closed or that are already positive."""
    now = now or datetime.now(UTC)
    by_request = _by_request(events)
    out = {}
    for rid, at in zip(log.column("request_id").to_pylist(),
                       log.column("predicted_at").to_pylist(), strict=True):
        positive, _, _ = _decide(at, by_request.get(rid, []), spec,
                                 spec.window_seconds, now)
        if positive is not None:
            out[rid] = spec.positive if positive else spec.negative
    return out


def store_natural(lake, name: str, spec, *, now: Any = None) -> dict[str, Any]:
    """The logged predictions joined to their feedback within ``spec``'s
    window, into the label store as kind ``natural`` (the store's earlier
    natural labels are replaced: a window that closed since turns an open
    prediction into a label); the figures of :func:`natural_labels`."""

    from ._store import _time, replace_labels

    if not lake.exists("predictions", name):
        raise DataError("the prediction log is empty: `mlsd label log FILE` first")
    log = lake.read("predictions", name)
    events = (lake.read("feedback", name) if lake.exists("feedback", name)
              else pa.Table.from_pylist([], schema=FEEDBACK_SCHEMA))
    rows, stats = natural_labels(log, events, spec,
                                 now=_time(now) if now is not None else None)
    version, _ = replace_labels(lake, name, [
        {**r, "imported_from": "feedback"} for r in rows], kind="natural",
        prefix="n")
    return {**stats, "version": version}
