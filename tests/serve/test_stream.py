"""Scoring from a broker (`mlsd serve --stream`) against the real RabbitMQ and
Redis: the REST service's answers, to reply_to or the predictions queue, and
the same prediction log."""

from __future__ import annotations

import json
import secrets

import pytest
import yaml
from fastapi.testclient import TestClient

from mlsd.pipeline import Project
from mlsd.serve import create_app
from mlsd.serve._stream import project_stream
from tests._helpers import require_service, run_cli
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
        proc = run_cli("serve", "--stream", "--idle-seconds", "1", cwd=proj.root)
        res = json.loads(proc.stdout)
        assert res["scored"] == 12 and res["stopped_by"] == "idle"
        answers = [json.loads(f[b"payload"]) for _, f in r.xrange(predictions)]
        assert [a["request_id"] for a in answers] == [row["post_id"] for row in rows]
        assert all("score" in a["prediction"] for a in answers)
        assert r.xpending(requests, "mlsd")["pending"] == 0
    finally:
        r.delete(requests, predictions, f"{requests}.dead")
        r.close()
    log = proj.lake.dataset("predictions", proj.spec.name).to_table()
    assert log.num_rows == 12
