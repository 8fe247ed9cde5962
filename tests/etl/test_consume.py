"""`mlsd consume`: broker messages into the lake, against the real RabbitMQ and
Redis on 127.0.0.1 (a fresh queue or stream per test, deleted after)."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mlsd.errors import DataError
from mlsd.pipeline import Project, consume, ingest, run
from tests._helpers import require_service, run_cli, stop_with_sigterm

RABBIT = "rabbitmq://guest@127.0.0.1:5672/"
REDIS = "redis://127.0.0.1:6379/0"


@pytest.fixture
def rabbit():
    require_service("RabbitMQ", 5672)
    import pika

    queue = f"mlsd-test-{secrets.token_hex(4)}"
    conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", 5672))
    ch = conn.channel()
    ch.queue_declare(queue, durable=True)
    yield queue, ch
    for q in (queue, f"{queue}.dead"):
        ch.queue_delete(q)
    conn.close()


@pytest.fixture
def redis_stream():
    require_service("Redis", 6379)
    import redis

    r = redis.Redis.from_url(REDIS)
    stream = f"mlsd-test-{secrets.token_hex(4)}"
    yield stream, r
    r.delete(stream, f"{stream}.dead")
    r.close()


def _project(folder: Path, **source) -> Project:
    spec = {"name": "events",
            "problem": {"task": "binary", "target": "bought"},
            "sources": {"events": {"queue": "q", **source}},
            "validate": {"required": ["event_id", "user"],
                         "ranges": {"amount": [0, None]}},
            "features": [{"column": "amount"}]}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "mlsd.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    (folder / "schemas").mkdir(exist_ok=True)
    (folder / "schemas" / "events.yaml").write_text(yaml.safe_dump({
        "source": "events", "columns": {"event_id": "int64", "user": "string",
                                        "amount": "float64", "bought": "bool"}}))
    return Project.find(start=folder)


def _event(i: int, **change) -> dict:
    return {"event_id": i, "user": f"u{i % 7}", "amount": float(i % 50),
            "bought": i % 3 == 0, **change}


def _stored(proj: Project, area: str = "sources") -> list[dict]:
    if not proj.lake.exists(area, "events"):
        return []
    return proj.lake.dataset(area, "events").to_table().to_pylist()


def _publish_rabbit(ch, queue: str, bodies: list[tuple[bytes, str | None]]) -> None:
    import pika

    for body, mid in bodies:
        ch.basic_publish("", queue, body, pika.BasicProperties(message_id=mid,
                                                               delivery_mode=2))


def _queue_depth(ch, queue: str) -> int:
    return ch.queue_declare(queue, passive=True).method.message_count


def test_rabbitmq_messages_are_stored_once_and_bad_ones_dead_lettered(
        tmp_path, rabbit):
    queue, ch = rabbit
    proj = _project(tmp_path / "p", broker=RABBIT, queue=queue,
                    id_from="message_id", batch_rows=64, batch_seconds=0.5)
    good = [(json.dumps(_event(i)).encode(), f"m{i}") for i in range(200)]
    bad = [(json.dumps(_event(900, amount=-5.0)).encode(), "bad-range"),
           (b"{not json", "bad-json"),
           (json.dumps(_event(901, colour="red")).encode(), "bad-field"),
           (json.dumps(_event(902)).encode(), None)]  # no message id
    _publish_rabbit(ch, queue, good[:120] + bad + good[120:] + good[:30])  # 30 again
    res = consume(proj, "events", idle_seconds=1.5)
    assert res["messages"] == 234 and res["duplicates"] == 30
    assert (res["stored"], res["quarantined"], res["dead_lettered"]) == (200, 4, 4)
    rows = _stored(proj)
    assert sorted(r["event_id"] for r in rows) == list(range(200))
    assert {r["_message_id"] for r in rows} == {f"m{i}" for i in range(200)}
    assert {r["_source"] for r in rows} == {f"rabbitmq://guest@127.0.0.1:5672/#{queue}"}
    quarantined = {r["_message_id"]: r for r in _stored(proj, "quarantine")}
    assert set(quarantined) - {"bad-range", "bad-json", "bad-field"} == {
        "sha256:" + __import__("hashlib").sha256(bad[3][0]).hexdigest()}
    assert quarantined["bad-json"]["raw"] == "{not json"
    assert any("no message id" in r["message"]
               for q in quarantined.values() for r in q["reasons"])
    assert _queue_depth(ch, queue) == 0  # every message acknowledged
    assert _queue_depth(ch, f"{queue}.dead") == 4
    method, props, body = ch.basic_get(f"{queue}.dead", auto_ack=True)
    assert json.loads(props.headers["x-mlsd-reasons"]) and \
        props.headers["x-mlsd-queue"] == queue
    # a second consumer sees nothing new; a redelivery of old ids changes nothing
    _publish_rabbit(ch, queue, good[:10])
    again = consume(proj, "events", idle_seconds=1.0)
    assert (again["stored"], again["duplicates"]) == (0, 10)
    assert len(_stored(proj)) == 200
    # a run reads what was consumed: the broker source is a dataset like another
    summary = ingest(proj)
    assert summary["sources"][0]["version"] == proj.lake.version("sources", "events")


class _CrashBeforeAck:
    """A broker whose acknowledgement never happens: the process dies after
    its commit (the worst moment for exactly-once)."""

    def __init__(self, inner):
        self.inner, self.display = inner, inner.display

    def fetch(self, n, timeout):
        return self.inner.fetch(n, timeout)

    def dead_letter(self, items):
        self.inner.dead_letter(items)

    def ack(self, messages):
        raise KeyboardInterrupt("killed between the commit and the ack")

    def close(self):
        self.inner.close()


@pytest.mark.parametrize("kind", ["rabbitmq", "redis"])
def test_a_crash_between_commit_and_ack_stores_nothing_twice(
        tmp_path, kind, request):
    from mlsd.connectors import open_broker
    from mlsd.etl import consume as consume_source

    if kind == "rabbitmq":
        queue, ch = request.getfixturevalue("rabbit")
        proj = _project(tmp_path / "p", broker=RABBIT, queue=queue,
                        id_from="message_id", batch_rows=50, batch_seconds=0.3)
        _publish_rabbit(ch, queue, [(json.dumps(_event(i)).encode(), f"m{i}")
                                    for i in range(120)])
    else:
        stream, r = request.getfixturevalue("redis_stream")
        proj = _project(tmp_path / "p", broker=REDIS, queue=stream,
                        id_from="entry_id", batch_rows=50, batch_seconds=0.3)
        for i in range(120):
            r.xadd(stream, {"payload": json.dumps(_event(i))})
    spec = proj.spec.sources["events"]
    with pytest.raises(KeyboardInterrupt):
        consume_source("events", spec, proj.spec.validate_, root=proj.root,
                       lake=proj.lake, idle_seconds=1.0,
                       broker=_CrashBeforeAck(open_broker(spec)))
    assert len(_stored(proj)) == 50  # the first batch was committed, not acked
    res = consume(proj, "events", idle_seconds=1.0)
    assert res["duplicates"] == 50  # redelivered, dropped by id
    rows = _stored(proj)
    assert sorted(r["event_id"] for r in rows) == list(range(120))
    if kind == "redis":
        assert r.xpending(stream, "mlsd")["pending"] == 0
        assert all(row["_offset"] == row["_message_id"] for row in rows)


def test_redis_avro_payloads_with_a_field_id(tmp_path, redis_stream):
    import io

    import fastavro

    stream, r = redis_stream
    schema = {"type": "record", "name": "Event", "fields": [
        {"name": "event_id", "type": "long"}, {"name": "user", "type": "string"},
        {"name": "amount", "type": ["null", "double"]},
        {"name": "bought", "type": "boolean"}]}
    proj = _project(tmp_path / "p", broker=REDIS, queue=stream, format="avro",
                    avro_schema="event.avsc", id_field="event_id",
                    batch_rows=40, batch_seconds=0.3)
    (proj.root / "event.avsc").write_text(json.dumps(schema))
    parsed = fastavro.parse_schema(schema)
    for i in [*range(100), *range(20)]:  # 20 sent twice, new entry ids
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, parsed, _event(i))
        r.xadd(stream, {"payload": buf.getvalue()})
    r.xadd(stream, {"payload": b"\x01"})  # not a record of the schema
    res = consume(proj, "events", idle_seconds=1.0)
    assert (res["stored"], res["duplicates"], res["quarantined"]) == (100, 20, 1)
    assert r.xlen(f"{stream}.dead") == 1
    dead = r.xrange(f"{stream}.dead")[0][1]
    assert b"Avro" in dead[b"reasons"] and dead[b"stream"] == stream.encode()


def test_a_source_without_ids_is_refused_and_a_run_says_to_consume_first(tmp_path):
    folder = tmp_path / "p"
    _project(folder, broker=RABBIT, id_from="message_id")
    spec = yaml.safe_load((folder / "mlsd.yaml").read_text())
    del spec["sources"]["events"]["id_from"]
    (folder / "mlsd.yaml").write_text(yaml.safe_dump(spec))
    proc = run_cli("spec", "check", cwd=folder, check=False)
    assert proc.returncode == 2 and "id_from" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    proj = _project(tmp_path / "q", broker=REDIS, id_from="entry_id")
    assert ingest(proj)["sources"][0]["version"] is None  # nothing yet: no error
    with pytest.raises(DataError, match="run `mlsd consume events` first"):
        run(proj.root, until="table")


def test_sigterm_commits_and_acknowledges_what_was_fetched(tmp_path, rabbit):
    queue, ch = rabbit
    proj = _project(tmp_path / "p", broker=RABBIT, queue=queue,
                    id_from="message_id", batch_rows=100_000, batch_seconds=600)
    _publish_rabbit(ch, queue, [(json.dumps(_event(i)).encode(), f"m{i}")
                                for i in range(500)])
    proc = subprocess.Popen([sys.executable, "-m", "mlsd", "consume", "events",
                             "--json"], cwd=proj.root, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    # the batch never fills (100,000 rows, 10 minutes): only the signal ends it
    res = stop_with_sigterm(proc, lambda: _queue_unacked(ch, queue) >= 500, wait=60)
    assert res["stopped_by"] == "SIGTERM" and res["stored"] == 500
    assert len(_stored(proj)) == 500 and _queue_depth(ch, queue) == 0


def _queue_unacked(ch, queue: str) -> int:
    """Messages delivered to a consumer and not yet acknowledged (the
    management API is not needed: ready = 0 once all are delivered)."""
    ready = _queue_depth(ch, queue)
    return 500 - ready


def test_a_reservoir_of_a_stream_survives_a_crash_with_the_same_draws(
        tmp_path, redis_stream):
    """`reservoir: {n: 40}` keeps a sample instead of every row; a crash
    between a commit and its acknowledgement changes neither what is kept
    nor how many rows the reservoir saw."""
    from mlsd.connectors import open_broker
    from mlsd.etl import consume as consume_source

    stream, r = redis_stream
    other = f"{stream}-b"
    try:
        for s in (stream, other):
            pipe = r.pipeline(transaction=False)
            for i in range(3000):
                pipe.xadd(s, {"payload": json.dumps(_event(i))})
            pipe.execute()
        common = {"broker": REDIS, "id_field": "event_id", "batch_rows": 400,
                  "batch_seconds": 0.3, "reservoir": {"n": 40, "weights": "amount"}}
        straight = _project(tmp_path / "a", queue=other, **common)
        crashed = _project(tmp_path / "b", queue=stream, **common)
        spec = crashed.spec.sources["events"]

        class _Dies(_CrashBeforeAck):  # on the third batch's acknowledgement
            calls = 0

            def ack(self, messages):
                _Dies.calls += 1
                if _Dies.calls == 3:
                    raise KeyboardInterrupt("killed")
                self.inner.ack(messages)
        with pytest.raises(KeyboardInterrupt):
            consume_source("events", spec, crashed.spec.validate_, root=crashed.root,
                           lake=crashed.lake, idle_seconds=1.0, seed=42,
                           broker=_Dies(open_broker(spec)))
        res = consume(crashed, "events", idle_seconds=1.0)
        assert res["duplicates"] == 400 and res["seen"] == 3000
        want = consume(straight, "events", idle_seconds=1.0)
        assert want["seen"] == 3000 and want["sampled"] == 40
        a = sorted(x["event_id"] for x in _stored(straight))
        b = sorted(x["event_id"] for x in _stored(crashed))
        assert a == b and len(a) == 40
        assert all(i % 50 for i in a)  # amount 0: weight 0, never kept
        # a changed reservoir cannot go on from the stored one
        changed = _project(tmp_path / "a", queue=other,
                           **{**common, "reservoir": {"n": 10}})
        with pytest.raises(DataError, match="the reservoir changed"):
            consume(changed, "events", idle_seconds=0.5)
    finally:
        r.delete(other, f"{other}.dead")


def test_a_redis_entry_without_the_payload_field_is_kept_whole_with_the_reason(
        tmp_path, redis_stream):
    stream, r = redis_stream
    proj = _project(tmp_path / "p", broker=REDIS, queue=stream, id_from="entry_id",
                    batch_seconds=0.2)
    r.xadd(stream, {"data": json.dumps(_event(1)), "kind": "click"})
    res = consume(proj, "events", idle_seconds=0.8)
    assert res["quarantined"] == 1
    (row,) = _stored(proj, "quarantine")
    assert "no field 'payload'" in row["reasons"][0]["message"]
    assert "data, kind" in row["reasons"][0]["message"]
    assert json.loads(row["raw"])["kind"] == "click"  # nothing lost
    dead = r.xrange(f"{stream}.dead")[0][1]
    assert dead[b"data"] == json.dumps(_event(1)).encode() and dead[b"kind"] == b"click"


def test_protobuf_payloads_on_rabbitmq(tmp_path, rabbit):
    """Each message one Protobuf message of the source's .proto, decoded by
    the formats stage's own code; a payload that is not one is quarantined."""
    from mlsd.formats._proto import message_class

    queue, ch = rabbit
    proj = _project(tmp_path / "p", broker=RABBIT, queue=queue, format="protobuf",
                    proto="event.proto", message="Event", id_from="message_id",
                    batch_seconds=0.3)
    (proj.root / "event.proto").write_text(
        'syntax = "proto3";\nmessage Event {\n  int64 event_id = 1;\n'
        '  string user = 2;\n  optional double amount = 3;\n  bool bought = 4;\n}\n')
    Event = message_class(proj.root / "event.proto", "Event")
    bodies = [(Event(**_event(i)).SerializeToString(), f"m{i}") for i in range(40)]
    bodies.append((b"\xff\xff\xff", "garbage"))
    _publish_rabbit(ch, queue, bodies)
    res = consume(proj, "events", idle_seconds=1.0)
    assert (res["stored"], res["quarantined"]) == (40, 1)
    rows = sorted(_stored(proj), key=lambda r: r["event_id"])
    assert rows[3]["user"] == "u3" and rows[3]["amount"] == 3.0
    (bad,) = _stored(proj, "quarantine")
    assert "not a Protobuf Event" in bad["reasons"][0]["message"]


def test_a_first_batch_with_nothing_readable_does_not_fix_an_empty_schema(
        tmp_path, redis_stream):
    stream, r = redis_stream
    proj = _project(tmp_path / "p", broker=REDIS, queue=stream, id_from="entry_id",
                    batch_seconds=0.2)
    (proj.root / "schemas" / "events.yaml").unlink()  # to be inferred
    r.xadd(stream, {"payload": b"{nope"})
    sent = []

    def then_a_good_one(res) -> None:  # after the first batch, in the same run
        if not sent:
            sent.append(r.xadd(stream, {"payload": json.dumps(_event(1))}))
    res = consume(proj, "events", idle_seconds=1.0, on_batch=then_a_good_one)
    assert (res["batches"], res["quarantined"], res["stored"]) == (2, 1, 1)
    assert res["schema_frozen"]


def test_redis_writes_in_one_go_say_what_failed_and_survive_a_lost_connection(
        redis_stream, monkeypatch):
    """Answers and dead letters go to Redis as one write of packed commands
    (RedisStream._send_all): every reply is read, an error reply is raised
    after them as one line naming the key (the connection stays usable), a
    lost connection is raised and the connection dropped (the next write goes
    through on a new one), and nothing is sent to the wrong stream."""
    import redis

    from mlsd.connectors._brokers import RedisStream

    stream, r = redis_stream
    client = RedisStream(REDIS, stream, group="g")
    out, wrong = f"{stream}.out", f"{stream}.str"
    r.set(wrong, "a string, not a stream")
    try:
        client.publish(out, [(b'{"a": 1}', {"message_id": "m1", "x": None}),
                             (b'{"a": 2}', {"correlation_id": "c2",
                                            "meta": {"k": 1}})])
        entries = r.xrange(out)
        assert [e[1] for e in entries] == [
            {b"payload": b'{"a": 1}', b"message_id": b"m1"},
            {b"payload": b'{"a": 2}', b"correlation_id": b"c2",
             b"meta": b'{"k": 1}'}]
        with pytest.raises(DataError, match=f"XADD to '{wrong}'.*WRONGTYPE"):
            client.publish(wrong, [(b"1", {}), (b"2", {})])
        client.publish(out, [(b"3", {})])  # the replies were all read
        assert r.xrange(out)[-1][1] == {b"payload": b"3"}

        from redis.connection import AbstractConnection

        real, dropped = AbstractConnection.send_packed_command, []

        def lost(self, *args, **kwargs):
            if not dropped:
                dropped.append(self)
                real(self, *args, **kwargs)  # sent, its replies never read
                raise redis.ConnectionError("gone")
            return real(self, *args, **kwargs)
        monkeypatch.setattr(AbstractConnection, "send_packed_command", lost)
        with pytest.raises(redis.ConnectionError):
            client.publish(out, [(b"4", {}), (b"5", {})])
        assert dropped[0]._sock is None  # not back in the pool with replies unread
        client.publish(out, [(b"6", {})])
        assert [e[1][b"payload"] for e in r.xrange(out)][-3:] == [b"4", b"5", b"6"]
    finally:
        client.close()
        r.delete(out, wrong)


@pytest.mark.parametrize("protocol", ["", "?protocol=3"])
def test_redis_entries_are_read_as_sent(redis_stream, protocol):
    """Entries are read from XREADGROUP's reply as Redis sends it (not
    through redis-py's dicts), in RESP2 and RESP3: the payload, the other
    fields as headers, and an entry deleted before it was acknowledged comes
    back without a body, to be answered or quarantined as such."""
    from mlsd.connectors._brokers import RedisStream

    stream, r = redis_stream
    first = r.xadd(stream, {"payload": b'{"a": 1}', "kind": "click", "n": "é"})
    second = r.xadd(stream, {"other": "x"})
    client = RedisStream(REDIS + protocol, stream, group="g")
    try:
        got = client.fetch(10, 0.1)
        assert [(m.message_id, m.body, m.headers) for m in got] == [
            (first.decode(), b'{"a": 1}', {"kind": "click", "n": "é"}),
            (second.decode(), None, {"other": "x"})]
        r.xdel(stream, first)
        again = RedisStream(REDIS + protocol, stream, group="g")  # a restart
        try:
            pending = again.fetch(10, 0.1)
            assert [(m.message_id, m.body, m.headers) for m in pending] == [
                (first.decode(), None, {}), (second.decode(), None, {"other": "x"})]
            again.ack(pending)
            assert again.fetch(10, 0.1) == []
        finally:
            again.close()
    finally:
        client.close()
