"""Stream features through a whole project: trained from the lake's events
(batch, point in time), served from the online store that `mlsd consume` fills
(Redis on 127.0.0.1), with the same values for the same rows."""

from __future__ import annotations

import csv
import json
import random
import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient

from mlsd.pipeline import Project, consume, run
from tests._helpers import require_service, run_cli

pytestmark = pytest.mark.slow


def _write_events(path: Path, n: int) -> list[dict]:
    rng = random.Random(11)
    t0 = datetime(2024, 6, 1, tzinfo=UTC)
    rows = []
    for i in range(n):
        at = t0 + timedelta(seconds=int(rng.uniform(0, 2 * 86400)))
        user = f"u{rng.randrange(25)}"
        amount = round(rng.lognormvariate(3, 1), 2)
        rows.append({"event_id": i, "user": user, "at": at.isoformat(),
                     "amount": amount})
    rows.sort(key=lambda r: r["at"])
    # the label depends on the recent spend: the window feature carries signal
    spent: dict[str, list] = {}
    for r in rows:
        at = datetime.fromisoformat(r["at"])
        recent = [a for t, a in spent.get(r["user"], [])
                  if at - t <= timedelta(hours=1)]
        r["fraud"] = str(sum(recent) > 150 and rng.random() < 0.9).lower()
        spent.setdefault(r["user"], []).append((at, r["amount"]))
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return rows


def test_stream_features_are_the_same_in_training_and_serving(tmp_path):
    require_service("Redis", 6379)
    import redis

    folder = tmp_path / "shop"
    (folder / "data").mkdir(parents=True)
    events = _write_events(folder / "data" / "events.csv", 1500)
    stream = f"mlsd-test-{secrets.token_hex(4)}"
    prefix = f"mlsd-test-{secrets.token_hex(4)}"
    spec = {
        "name": "shop", "problem": {"task": "binary", "target": "fraud"},
        "sources": {
            "events": {"path": "data/events.csv", "key": "event_id"},
            "live": {"broker": "redis://127.0.0.1:6379/0", "queue": stream,
                     "id_field": "event_id", "batch_rows": 500,
                     "batch_seconds": 0.3}},
        "dataset": {"union": ["events"]},
        "split": {"strategy": "time", "time": "at"},
        "features": [
            {"column": "amount"},
            {"column": "amount", "agg": "sum", "window": "1h", "by": "user",
             "time": "at", "lateness": "3h"},
            {"agg": "count", "window": "30m", "by": "user", "time": "at",
             "lateness": "3h"},
            {"column": "amount", "agg": "max", "window": "1d", "by": "user",
             "time": "at", "window_type": "session", "gap": "20m",
             "lateness": "3h"}],
        "online_store": {"url": "redis://127.0.0.1:6379/0", "prefix": prefix},
        "model": {"kind": "lightgbm"},
    }
    (folder / "mlsd.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    import shutil

    (folder / "schemas").mkdir()
    summary = run(folder)
    shutil.copy(folder / "schemas" / "events.yaml", folder / "schemas" / "live.yaml")
    proj = Project.of(folder)
    names = [w.name for w in proj.spec.windows]
    assert names == ["amount_sum_1h_by_user", "events_count_30m_by_user",
                     "amount_max_session_1d_by_user"]
    training = proj.lake.dataset("training", "shop").to_table()
    assert set(names) <= set(training.column_names)
    r = redis.Redis.from_url("redis://127.0.0.1:6379/0")
    try:
        pipe = r.pipeline(transaction=False)
        for e in events:  # the same events, arriving on the stream in time order
            pipe.xadd(stream, {"payload": json.dumps(e)})
        pipe.execute()
        res = consume(proj, "live", idle_seconds=1.0)
        assert res["stored"] == 1500 and res["online"] == names and res["late"] == 0
        # the recent rows (what a service is asked about: the store keeps the
        # window and the lateness behind its newest event)
        newest = max(datetime.fromisoformat(e["at"]) for e in events)
        recent = {e["event_id"] for e in events
                  if datetime.fromisoformat(e["at"]) >= newest - timedelta(hours=3)}
        assert len(recent) > 50
        from mlsd.models import ModelArtifact
        from mlsd.serve._app import Served, rows_to_arrow

        model = Path(folder) / summary["paths"]["model"]
        served = Served(ModelArtifact.load(model), proj.spec.serve)
        assert not served.fast and served.windows
        batch = {row["event_id"]: row for row in training.to_pylist()
                 if row["event_id"] in recent}
        asked = [e for e in events if e["event_id"] in batch]
        rows, _ = served.validate([{k: v for k, v in e.items() if k != "fraud"}
                                   for e in asked])
        table = served.with_windows(rows_to_arrow(rows, served.artifact.input_schema))
        for got in table.to_pylist():
            want = batch[got["event_id"]]
            for name in names:
                if want[name] is None:
                    assert got[name] is None, (got, name)
                else:
                    assert got[name] == pytest.approx(want[name], rel=1e-9), (
                        got["event_id"], name, got[name], want[name])
        # and over HTTP: the service answers with the store's values
        from mlsd.serve import create_app

        with TestClient(create_app(model)) as c:
            body = [{k: v for k, v in e.items() if k != "fraud"} for e in asked[:20]]
            answer = c.post("/predict", json=body)
            assert answer.status_code == 200, answer.text
            scores = [p["score"] for p in answer.json()["predictions"]]
        import pyarrow as pa

        want_rows = pa.Table.from_pylist([batch[e["event_id"]] for e in asked[:20]])
        offline = served.artifact.score(want_rows.select(
            [*served.artifact.input_schema["columns"], *names]))
        assert scores == pytest.approx(list(offline), abs=1e-9)
    finally:
        r.delete(stream, f"{stream}.dead")
        for key in r.scan_iter(f"{prefix}:*"):
            r.delete(key)
        r.close()
    # a file scored in batch computes the windows over its own rows
    proc = run_cli("predict", "--input", "data/events.csv", "--output", "scored.csv",
                   cwd=folder)
    assert "scored 1500" in proc.stdout


def test_events_of_another_source_are_joined_point_in_time(tmp_path):
    """Orders in a file, clicks on a stream: `events: clicks` joins each order
    to its user's earlier clicks for training, and the service reads the same
    counts from the store that consuming the clicks filled."""
    require_service("Redis", 6379)
    import redis

    folder = tmp_path / "shop"
    (folder / "data").mkdir(parents=True)
    rng = random.Random(4)
    t0 = datetime(2024, 6, 1, tzinfo=UTC)
    clicks = sorted(({"click_id": f"c{i}", "user": f"u{rng.randrange(10)}",
                      "at": (t0 + timedelta(seconds=rng.randrange(86400))).isoformat(),
                      "dwell": round(rng.uniform(1, 60), 1)} for i in range(1200)),
                    key=lambda c: c["at"])
    orders = []
    for i in range(300):
        at = t0 + timedelta(seconds=rng.randrange(3600, 86400))
        orders.append({"order_id": i, "user": f"u{rng.randrange(10)}",
                       "at": at.isoformat(), "total": round(rng.uniform(5, 90), 2),
                       "returned": str(rng.random() < 0.3).lower()})
    with (folder / "data" / "orders.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(orders[0]))
        w.writeheader()
        w.writerows(orders)
    stream = f"mlsd-test-{secrets.token_hex(4)}"
    prefix = f"mlsd-test-{secrets.token_hex(4)}"
    spec = {
        "name": "shop", "problem": {"task": "binary", "target": "returned"},
        "sources": {
            "orders": {"path": "data/orders.csv", "key": "order_id"},
            "clicks": {"broker": "redis://127.0.0.1:6379/0", "queue": stream,
                       "id_field": "click_id", "batch_seconds": 0.3}},
        "dataset": {"union": ["orders"]},
        "features": [
            {"column": "total"},
            {"agg": "count", "window": "2h", "by": "user", "time": "at",
             "events": "clicks", "lateness": "1d"},
            {"column": "dwell", "agg": "mean", "window": "1h", "by": "user",
             "time": "at", "events": "clicks", "lateness": "1d"}],
        "online_store": {"prefix": prefix},
    }
    (folder / "mlsd.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    r = redis.Redis.from_url("redis://127.0.0.1:6379/0")
    try:
        pipe = r.pipeline(transaction=False)
        for c in clicks:
            pipe.xadd(stream, {"payload": json.dumps(c)})
        pipe.execute()
        proj = Project.of(folder)
        res = consume(proj, "clicks", idle_seconds=1.0)
        assert res["stored"] == 1200 and len(res["online"]) == 2
        summary = run(folder)
        proj = Project.of(folder)
        names = [w.name for w in proj.spec.windows]
        assert names == ["events_count_2h_by_user_in_clicks",
                         "dwell_mean_1h_by_user_in_clicks"]
        training = {row["order_id"]: row for row in
                    proj.lake.dataset("training", "shop").to_table().to_pylist()}
        for row in list(training.values())[:50]:  # only earlier clicks count
            want = [c for c in clicks if c["user"] == row["user"]
                    and row["at"] - timedelta(hours=2)
                    <= datetime.fromisoformat(c["at"]) < row["at"]]
            assert row[names[0]] == len(want)
        from mlsd.models import ModelArtifact
        from mlsd.serve._app import Served, rows_to_arrow

        served = Served(ModelArtifact.load(folder / summary["paths"]["model"]),
                        proj.spec.serve)
        asked = [o for o in orders if o["order_id"] in training][:100]
        rows, _ = served.validate([{k: v for k, v in o.items() if k != "returned"}
                                   for o in asked])
        got = served.with_windows(rows_to_arrow(rows, served.artifact.input_schema))
        for row in got.to_pylist():
            want = training[row["order_id"]]
            assert row[names[0]] == want[names[0]]
            if want[names[1]] is None:
                assert row[names[1]] is None
            else:
                assert row[names[1]] == pytest.approx(want[names[1]], rel=1e-9)
    finally:
        r.delete(stream, f"{stream}.dead")
        for key in r.scan_iter(f"{prefix}:*"):
            r.delete(key)
        r.close()
