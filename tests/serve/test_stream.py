"""Scoring from a broker (`mlsd serve --stream`) against the real RabbitMQ and
Redis: the REST service's answers, to reply_to or the predictions queue, and
the same prediction log."""

from __future__ import annotations

import json
import os
import secrets
from datetime import UTC, datetime

import pytest
import yaml
from fastapi.testclient import TestClient

from mlsd.pipeline import Project
from mlsd.serve import create_app
from mlsd.serve._stream import project_stream
from tests._helpers import require_service, run_cli, stop_with_sigterm
from tests.serve.test_production import _rows

pytestmark = pytest.mark.slow


def _with_stream(project: Project, **stream) -> Project:
    path = project.spec_path
    doc = yaml.safe_load(path.read_text())
    doc.setdefault("serve", {})["stream"] = stream
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return Project.of(project.root)


def _drain(ch, queue: str) -> list[tuple]:
    got = []
    while True:
        method, props, body = ch.basic_get(queue, auto_ack=True)
        if method is None:
            return got
        got.append((props, json.loads(body)))


def test_rows_from_rabbitmq_get_the_rest_answers_and_are_logged(project):
    require_service("RabbitMQ", 5672)
    import pika

    requests, predictions = (f"mlsd-test-{secrets.token_hex(4)}" for _ in range(2))
    conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1"))
    ch = conn.channel()
    ch.queue_declare(requests, durable=True)
    reply = ch.queue_declare("", exclusive=True).method.queue  # a client's own
    proj = _with_stream(project, broker="rabbitmq://guest@127.0.0.1:5672/",
                        queue=requests, predictions=predictions,
                        id_from="message_id", batch_rows=16, batch_seconds=0.05)
    rows = _rows(proj.root, 30)
    try:
        for i, row in enumerate(rows):
            props = {"message_id": f"r{i}"}
            if i < 10:  # request/response: answered to reply_to
                props |= {"reply_to": reply, "correlation_id": f"c{i}"}
            ch.basic_publish("", requests, json.dumps(row).encode(),
                             pika.BasicProperties(**props))
        ch.basic_publish("", requests, json.dumps({**rows[0], "colour": "red"})
                         .encode(), pika.BasicProperties(message_id="bad-field"))
        ch.basic_publish("", requests, b"{oops", pika.BasicProperties(
            message_id="bad-json"))
        res = project_stream(proj, idle_seconds=1.5)
        assert (res["messages"], res["scored"], res["refused"]) == (32, 30, 2)
        replies = _drain(ch, reply)
        answers = _drain(ch, predictions)
        assert [p.correlation_id for p, _ in replies] == [f"c{i}" for i in range(10)]
        by_id = {d["request_id"]: d for _, d in replies + answers}
        assert set(by_id) == {f"r{i}" for i in range(30)} | {"bad-field", "bad-json"}
        assert by_id["bad-field"]["error"][0]["loc"] == ["body", "colour"]
        assert by_id["bad-json"]["error"][0]["type"] == "json_invalid"
        # the REST service's answers for the same rows
        folder, _ = proj.which_model(None)
        with TestClient(create_app(folder)) as c:
            rest = c.post("/predict", json=rows).json()["predictions"]
        for i, want in enumerate(rest):
            got = by_id[f"r{i}"]["prediction"]
            assert got["label"] == want["label"]
            assert got["score"] == pytest.approx(want["score"], abs=1e-12)
        assert _queue_depth(ch, requests) == 0
    finally:
        ch.queue_delete(requests)
        ch.queue_delete(predictions)
        conn.close()
    log = proj.lake.dataset("predictions", proj.spec.name).to_table().to_pylist()
    assert sorted(r["request_id"] for r in log) == sorted(f"r{i}" for i in range(30))


def _workers_of(pid: int) -> list[int]:
    """The scoring processes `mlsd serve --stream --workers` (process ``pid``)
    started (multiprocessing's spawned children, not its resource tracker)."""
    from pathlib import Path

    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [int(c) for c in children
            if "spawn_main" in Path(f"/proc/{c}/cmdline").read_text()]


def _queue_depth(ch, queue: str) -> int:
    return ch.queue_declare(queue, passive=True).method.message_count


def test_rows_from_a_redis_stream_by_the_command(project):
    require_service("Redis", 6379)
    import redis

    r = redis.Redis.from_url("redis://127.0.0.1:6379/0")
    requests, predictions = (f"mlsd-test-{secrets.token_hex(4)}" for _ in range(2))
    proj = _with_stream(project, broker="redis://127.0.0.1:6379/0", queue=requests,
                        predictions=predictions, id_field="post_id")
    rows = _rows(proj.root, 12)
    try:
        for row in rows:
            r.xadd(requests, {"payload": json.dumps(row)})
        r.xadd(requests, {"body": json.dumps(rows[0])})  # not the payload field
        proc = run_cli("serve", "--stream", "--idle-seconds", "1", cwd=proj.root)
        res = json.loads(proc.stdout)
        assert res["scored"] == 12 and res["stopped_by"] == "idle"
        assert res["refused"] == 1
        first, last = (datetime.fromisoformat(res[k]) for k in ("first_batch_at",
                                                                "last_batch_at"))
        assert first <= last <= datetime.now(UTC)
        answers = [json.loads(f[b"payload"]) for _, f in r.xrange(predictions)]
        refused = [a for a in answers if "error" in a]
        assert [e["msg"] for a in refused for e in a["error"]] == [
            "the entry has no field 'payload' (payload_field); its fields: body"]
        answers = [a for a in answers if "error" not in a]
        assert [a["request_id"] for a in answers] == [row["post_id"] for row in rows]
        assert all("score" in a["prediction"] for a in answers)
        assert r.xpending(requests, "mlsd")["pending"] == 0
    finally:
        r.delete(requests, predictions, f"{requests}.dead")
        r.close()
    log = proj.lake.dataset("predictions", proj.spec.name).to_table()
    assert log.num_rows == 12


def test_two_scoring_processes_share_a_redis_stream(project):
    """`mlsd serve --stream --workers 2`: two consumers of the group, each
    request answered once, every prediction logged, the figures summed."""
    require_service("Redis", 6379)
    import redis

    r = redis.Redis.from_url("redis://127.0.0.1:6379/0")
    requests, predictions = (f"mlsd-test-{secrets.token_hex(4)}" for _ in range(2))
    proj = _with_stream(project, broker="redis://127.0.0.1:6379/0", queue=requests,
                        predictions=predictions, id_from="entry_id", batch_rows=20)
    rows = _rows(proj.root, 200)
    try:
        pipe = r.pipeline(transaction=False)
        for i in range(1200):
            pipe.xadd(requests, {"payload": json.dumps(rows[i % len(rows)])})
        sent = [i.decode() for i in pipe.execute()]
        proc = run_cli("serve", "--stream", "--workers", "2", "--idle-seconds", "2",
                       cwd=proj.root)
        res = json.loads(proc.stdout)
        assert res["scored"] == 1200 and res["messages"] == 1200
        assert [w["source"] for w in res["workers"]] == [f"redis://127.0.0.1:6379/0#"
                                                         f"{requests}"] * 2
        assert sum(w["scored"] for w in res["workers"]) == 1200
        assert res["last_batch_at"] == max(w["last_batch_at"] for w in res["workers"])
        assert res["first_batch_at"] == min(w["first_batch_at"]
                                            for w in res["workers"])
        answered = [f[b"request_id"].decode() if b"request_id" in f else
                    json.loads(f[b"payload"])["request_id"]
                    for _, f in r.xrange(predictions)]
        assert sorted(answered) == sorted(sent)  # each once
        consumers = {c["name"].decode(): c for c in r.xinfo_consumers(requests, "mlsd")}
        assert set(consumers) == {"mlsd-1", "mlsd-1.2"}
        assert all(c["pending"] == 0 for c in consumers.values())
    finally:
        r.delete(requests, predictions, f"{requests}.dead")
        r.close()
    log = proj.lake.dataset("predictions", proj.spec.name).to_table()
    assert log.num_rows == 1200
    assert sorted(log.column("request_id").to_pylist()) == sorted(sent)


def test_a_redis_consumer_takes_over_what_a_gone_one_left_unacknowledged():
    """Entries a consumer of the group was given and never acknowledged (it
    died; it is not started again) are taken over once idle long enough."""
    require_service("Redis", 6379)
    import time

    import redis

    from mlsd.connectors._brokers import RedisStream

    url, stream = "redis://127.0.0.1:6379/0", f"mlsd-test-{secrets.token_hex(4)}"
    r = redis.Redis.from_url(url)
    try:
        ids = [r.xadd(stream, {"payload": json.dumps({"n": i})}).decode()
               for i in range(5)]
        gone = RedisStream(url, stream, consumer="gone")
        assert [m.message_id for m in gone.fetch(3, 0.1)] == ids[:3]
        gone.close()  # died without acknowledging
        time.sleep(0.6)
        busy = RedisStream(url, stream, consumer="busy", claim_idle_seconds=30)
        assert [m.message_id for m in busy.fetch(10, 0.1)] == ids[3:]  # not idle yet
        late = RedisStream(url, stream, consumer="late", claim_idle_seconds=0.5)
        got = late.fetch(10, 0.1)
        assert [m.message_id for m in got] == ids[:3]
        late.ack(got)
        assert late.fetch(10, 0.1) == []
        pending = r.xpending(stream, "mlsd")
        assert pending["pending"] == 2  # the busy one's two, still its own
        assert {c["name"]: c["pending"] for c in pending["consumers"]} == {b"busy": 2}
        late.close()
        busy.close()
    finally:
        r.delete(stream)
        r.close()


def test_sigterm_drains_every_scoring_process_on_rabbitmq(project):
    """`mlsd serve --stream --workers 2` on one RabbitMQ queue, stopped by a
    SIGTERM to the command: both workers finish the batch in hand, what was
    answered was acknowledged, the rest waits in the queue; nothing twice,
    nothing lost."""
    require_service("RabbitMQ", 5672)
    import os
    import subprocess
    import sys

    import pika

    requests, predictions = (f"mlsd-test-{secrets.token_hex(4)}" for _ in range(2))
    conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1"))
    ch = conn.channel()
    ch.queue_declare(requests, durable=True)
    proj = _with_stream(project, broker="rabbitmq://guest@127.0.0.1:5672/",
                        queue=requests, predictions=predictions,
                        id_from="message_id", batch_rows=50, batch_seconds=0.05)
    rows = _rows(proj.root, 100)
    n = 20_000
    try:
        for i in range(n):
            ch.basic_publish("", requests, json.dumps(rows[i % len(rows)]).encode(),
                             pika.BasicProperties(message_id=f"r{i}"))
        proc = subprocess.Popen([sys.executable, "-m", "mlsd", "serve", "--stream",
                                 "--workers", "2"], cwd=proj.root, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env={**os.environ, "NO_COLOR": "1"})
        ch.queue_declare(predictions, durable=True)
        res = stop_with_sigterm(proc, lambda: _queue_depth(ch, predictions) >= 500)
        assert res["stopped_by"] == "SIGTERM"
        assert [w["stopped_by"] for w in res["workers"]] == ["SIGTERM", "SIGTERM"]
        assert all(w["scored"] > 0 for w in res["workers"])
        answered = [d["request_id"] for _, d in _drain(ch, predictions)]
        assert len(answered) == len(set(answered)) == res["scored"] < n
        assert _queue_depth(ch, requests) == n - res["scored"]  # the rest waits
    finally:
        ch.queue_delete(requests)
        ch.queue_delete(predictions)
        conn.close()


def test_a_scoring_worker_stops_when_its_parent_is_killed(project):
    """SIGKILL to `mlsd serve --stream --workers 2` (no handler runs): the
    worker it started notices it is orphaned and stops after its batch,
    rather than scoring on unsupervised."""
    require_service("Redis", 6379)
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    import redis

    r = redis.Redis.from_url("redis://127.0.0.1:6379/0")
    requests, predictions = (f"mlsd-test-{secrets.token_hex(4)}" for _ in range(2))
    proj = _with_stream(project, broker="redis://127.0.0.1:6379/0", queue=requests,
                        predictions=predictions, id_from="entry_id", batch_rows=20)
    row = json.dumps(_rows(proj.root, 1)[0])
    try:
        r.xadd(requests, {"payload": row})
        proc = subprocess.Popen([sys.executable, "-m", "mlsd", "serve", "--stream",
                                 "--workers", "2"], cwd=proj.root,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while r.xlen(predictions) < 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        workers = _workers_of(proc.pid)
        assert len(workers) == 1
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        deadline = time.monotonic() + 20
        while Path(f"/proc/{workers[0]}").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not Path(f"/proc/{workers[0]}").exists()
    finally:
        for pid in locals().get("workers", []):
            if Path(f"/proc/{pid}").exists():
                os.kill(pid, signal.SIGKILL)
        r.delete(requests, predictions, f"{requests}.dead")
        r.close()


def test_a_killed_scoring_worker_stops_the_command_with_an_error(project):
    """One of `mlsd serve --stream --workers 2`'s processes killed (SIGKILL):
    the command stops the other after its batch and fails, naming it, rather
    than score on with half its workers unnoticed."""
    require_service("Redis", 6379)
    import signal
    import subprocess
    import sys
    import time

    import redis

    r = redis.Redis.from_url("redis://127.0.0.1:6379/0")
    requests, predictions = (f"mlsd-test-{secrets.token_hex(4)}" for _ in range(2))
    proj = _with_stream(project, broker="redis://127.0.0.1:6379/0", queue=requests,
                        predictions=predictions, id_from="entry_id", batch_rows=20)
    try:
        r.xadd(requests, {"payload": json.dumps(_rows(proj.root, 1)[0])})
        proc = subprocess.Popen([sys.executable, "-m", "mlsd", "serve", "--stream",
                                 "--workers", "2"], cwd=proj.root, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 120
        while r.xlen(predictions) < 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        os.kill(_workers_of(proc.pid)[0], signal.SIGKILL)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 2 and "Traceback" not in err, err  # mlsd's error
        assert "worker mlsd-stream-2 (exit code -9) ended on its own" in err
    finally:
        if proc.poll() is None:
            proc.kill()
        r.delete(requests, predictions, f"{requests}.dead")
        r.close()
