"""Message brokers as sources: a RabbitMQ queue, a Redis stream, a Kafka topic.

One small interface for both, shaped by what exactly-once storage needs from
a consumer (:mod:`mlsd.etl._consume`): fetch up to n messages, waiting at
most a while; publish refused ones to a dead-letter queue; acknowledge a
whole micro-batch once it is committed, and never before.

Written on the brokers' own clients (pika, redis-py), not on FastStream:
FastStream hands a handler one message at a time and acknowledges each by
itself, while a micro-batch must be acknowledged as one, after its commit
(RabbitMQ: a prefetch as large as the batch, then one ``multiple`` ack; Redis:
one XACK of the batch's entry ids). The clients load only when a broker
source is consumed (the optional extra ``mlsd[brokers]``).
"""

from __future__ import annotations

import json
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

from ..errors import DataError

HEADER_PREFIX = "x-mlsd-"  # the reasons and origin of a dead-lettered message


@dataclass
class Message:
    """One delivered message: its payload, the broker's id for it (AMQP
    ``message_id``; Redis: the entry id), its offset where the broker has one
    (Redis: the entry id), and what acknowledges it (``tag``)."""

    body: bytes | None
    message_id: str | None
    offset: str | None
    tag: Any
    headers: dict[str, Any] = field(default_factory=dict)
    reply_to: str | None = None  # RabbitMQ's request/response properties
    correlation_id: str | None = None


def _password(env: str | None, where: str) -> str | None:
    if env is None:
        return None
    value = os.environ.get(env)
    if value is None:
        raise DataError(f"{where}: the environment variable {env} (password_env) "
                        f"is not set")
    return value


def display_url(url: str) -> str:
    """The broker's URL without a user's password (for lineage and messages)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    user = f"{parts.username}@" if parts.username else ""
    return f"{parts.scheme}://{user}{host}{parts.path or ''}"


def _missing(extra: str) -> DataError:
    return DataError(f"consuming a broker needs the optional extra: pip install "
                     f"'mlsd[brokers]' ({extra} is not installed)")


class RabbitQueue:
    """A RabbitMQ queue read by pika with manual acknowledgements.

    The channel's prefetch is the batch size, so every delivered and
    unacknowledged message is in the batch being built; after its commit one
    ``basic_ack(multiple=True)`` up to the batch's last delivery tag
    acknowledges it. A connection lost before that gives the messages back
    to the queue (redelivered, then dropped by id)."""

    def __init__(self, url: str, queue: str, *, password_env: str | None = None,
                 prefetch: int = 1000, dead_letter: str | None = None,
                 where: str = "broker"):
        try:
            import pika
        except ImportError:
            raise _missing("pika") from None
        self.queue, self.dead_letter_queue = queue, dead_letter
        self.display = f"{display_url(url)}#{queue}"
        parts = urlsplit(url)
        password = _password(password_env, where)
        user = unquote(parts.username) if parts.username else "guest"
        vhost = unquote(parts.path[1:]) if parts.path not in ("", "/") else "/"
        params = pika.ConnectionParameters(
            host=parts.hostname or "127.0.0.1", port=parts.port or 5672,
            virtual_host=vhost, heartbeat=60, blocked_connection_timeout=300,
            credentials=pika.PlainCredentials(user, password if password is not None
                                              else ("guest" if user == "guest"
                                                    else "")))
        try:
            self._conn = pika.BlockingConnection(params)
        except pika.exceptions.AMQPError as err:
            why = str(err).strip() or "no broker answered (refused or timed out)"
            raise DataError(f"{where}: cannot connect to {self.display}: "
                            f"{type(err).__name__}: {why}") from None
        self._ch = self._conn.channel()
        self._declare(queue, where)
        if dead_letter:
            self._declare(dead_letter, where)
        self._ch.confirm_delivery()  # a dead letter is on the broker when published
        self._ch.basic_qos(prefetch_count=max(1, min(prefetch, 65535)))
        self._gen = self._ch.consume(queue, auto_ack=False, inactivity_timeout=0.05)

    def _declare(self, queue: str, where: str) -> None:
        import pika

        try:
            self._ch.queue_declare(queue, durable=True)
        except pika.exceptions.ChannelClosedByBroker as err:
            # it exists with other arguments (a quorum queue, a TTL): use it as is
            self._ch = self._conn.channel()
            try:
                self._ch.queue_declare(queue, passive=True)
            except pika.exceptions.ChannelClosedByBroker:
                raise DataError(f"{where}: queue {queue!r} on {self.display}: "
                                f"{err.reply_text}") from None

    def fetch(self, n: int, timeout: float) -> list[Message]:
        """Up to ``n`` messages, waiting at most ``timeout`` seconds for the
        first ones (what has arrived by then is returned)."""
        out: list[Message] = []
        deadline = time.monotonic() + timeout
        while len(out) < n:
            method, props, body = next(self._gen)
            if method is None:  # nothing for a moment
                if time.monotonic() >= deadline:
                    break
                continue
            out.append(Message(body=body, message_id=props.message_id,
                               offset=None, tag=method.delivery_tag,
                               headers=dict(props.headers or {}),
                               reply_to=props.reply_to,
                               correlation_id=props.correlation_id))
        return out

    def ack(self, messages: list[Message]) -> None:
        if messages:
            self._ch.basic_ack(delivery_tag=max(m.tag for m in messages),
                               multiple=True)

    def publish(self, queue: str, items: list[tuple[bytes, dict[str, Any]]], *,
                declare: bool = True) -> None:
        """Publish messages (body, properties: message_id, correlation_id,
        headers) to a queue; the queue declared (durable) first unless
        ``declare`` is false (a client's reply_to). They go on a channel of
        their own without publisher confirms (a confirm per message held
        answers to ~1,000/s), then one synchronous call on that channel: the
        broker handles a channel's methods in order, so when it answers, every
        message has reached its queue (answers are at least once; a crash
        before the requests' acknowledgement publishes them again)."""
        import pika

        if self.__dict__.get("_pub") is None:
            self._pub = self._conn.channel()
        declared = self.__dict__.setdefault("_declared", set())
        for body, props in items:
            if declare and queue not in declared:
                self._pub.queue_declare(queue, durable=True)
                declared.add(queue)
            self._pub.basic_publish("", queue, body, pika.BasicProperties(
                content_type="application/json", delivery_mode=2, **props))
        self._pub.basic_qos(prefetch_count=0)  # the barrier (see above)

    def dead_letter(self, items: list[tuple[Message, list[dict[str, Any]]]]) -> None:
        """Publish refused messages to the dead-letter queue, each with its
        reasons (JSON) and origin in headers; confirmed by the broker."""
        import pika

        for msg, reasons in items:
            headers = {**msg.headers, f"{HEADER_PREFIX}reasons": json.dumps(reasons),
                       f"{HEADER_PREFIX}queue": self.queue,
                       f"{HEADER_PREFIX}source": self.display}
            self._ch.basic_publish("", self.dead_letter_queue, msg.body or b"",
                                   pika.BasicProperties(
                                       headers=headers, message_id=msg.message_id,
                                       delivery_mode=2))

    def close(self) -> None:
        try:
            if self._conn.is_open:
                self._ch.cancel()  # unacknowledged messages go back to the queue
                self._conn.close()
        except Exception:  # noqa: BLE001 - closing a broken connection
            pass


class RedisStream:
    """A Redis stream read through a consumer group (XREADGROUP).

    The group is created at the stream's start if missing. A consumer first
    takes back its own delivered but unacknowledged entries (a crash between
    a commit and its XACK, or before the commit), then those another consumer
    of the group has held unacknowledged for ``claim_idle_seconds`` (one that
    died or is no longer started: fewer workers than before, a new name;
    XAUTOCLAIM), then new ones; after a commit one XACK acknowledges the
    batch."""

    def __init__(self, url: str, stream: str, *, group: str = "mlsd",
                 consumer: str = "mlsd-1", password_env: str | None = None,
                 payload_field: str = "payload", dead_letter: str | None = None,
                 where: str = "broker", claim_idle_seconds: float = 60.0):
        try:
            import redis
        except ImportError:
            raise _missing("redis") from None
        self.stream, self.group, self.consumer = stream, group, consumer
        self.payload_field = payload_field.encode()
        self.dead_letter_queue = dead_letter
        self.display = f"{display_url(url)}#{stream}"
        password = _password(password_env, where)
        self._r = redis.Redis.from_url(url, password=password, socket_timeout=30)
        try:
            self._r.xgroup_create(stream, group, id="0", mkstream=True)
        except redis.ResponseError as err:
            if "BUSYGROUP" not in str(err):
                raise DataError(f"{where}: {self.display}: {err}") from None
        except redis.RedisError as err:
            raise DataError(f"{where}: cannot connect to {self.display}: "
                            f"{type(err).__name__} {err}") from None
        self._pending: str | None = "0"  # our own unacknowledged entries first
        self._claim: str | None = "0-0"  # then the idle ones of others
        self._claim_ms = max(0, int(claim_idle_seconds * 1000))

    def fetch(self, n: int, timeout: float) -> list[Message]:
        if self._pending is not None:
            entries = self._read(self._pending, n)
            if entries:
                self._pending = entries[-1][0].decode()
                return [self._message(i, f) for i, f in entries]
            self._pending = None
        while self._claim is not None:
            got = self._r.xautoclaim(self.stream, self.group, self.consumer,
                                     self._claim_ms, start_id=self._claim, count=n)
            after = got[0].decode() if isinstance(got[0], bytes) else str(got[0])
            self._claim = None if after == "0-0" else after
            entries = [(i, f) for i, f in got[1] if i is not None]
            if entries:
                return [self._message(i, f) for i, f in entries]
        entries = self._read(">", n, block=max(1, int(timeout * 1000)))
        return [self._message(i, f) for i, f in entries]

    def _read(self, start: str, n: int, block: int | None = None) -> list:
        """XREADGROUP's entries from ``start`` as Redis sends them (id, flat
        field list): redis-py's parsing into dicts is a third of a fetch."""
        got = self._call("XREADGROUP", "GROUP", self.group, self.consumer,
                         "COUNT", n, *(() if block is None else ("BLOCK", block)),
                         "STREAMS", self.stream, start)
        if isinstance(got, dict):  # RESP3 (protocol=3 in the URL): a map
            got = list(got.items())
        return got[0][1] if got else []

    def _message(self, entry_id: bytes, fields: list | dict | None) -> Message:
        eid = entry_id.decode()
        if type(fields) is list and len(fields) == 2 and \
                fields[0] == self.payload_field:  # the payload alone: most entries
            return Message(fields[1], eid, eid, eid, {})
        body, headers = None, {}
        # an entry deleted since its delivery has no fields
        pairs = fields.items() if isinstance(fields, dict) else \
            zip(fields[::2], fields[1::2], strict=True) if fields else ()
        for k, v in pairs:
            if k == self.payload_field:
                body = v
            else:
                headers[k.decode()] = v.decode("utf-8", "replace")
        return Message(body=body, message_id=eid, offset=eid, tag=eid, headers=headers)

    def ack(self, messages: list[Message]) -> None:
        if messages:
            self._send_all([("XACK", self.stream, self.group,
                             *[m.tag for m in messages])])

    def publish(self, queue: str, items: list[tuple[bytes, dict[str, Any]]], *,
                declare: bool = True) -> None:
        """Add entries (the payload, and the properties as fields) to a stream
        (created by its first entry, whatever ``declare``)."""
        self._send_all([("XADD", queue, "*", "payload", body, *(
            x for k, v in props.items() if v is not None
            for x in (k, json.dumps(v) if isinstance(v, dict) else str(v))))
            for body, props in items])

    def dead_letter(self, items: list[tuple[Message, list[dict[str, Any]]]]) -> None:
        commands = []
        for msg, reasons in items:
            ours = {"reasons": json.dumps(reasons), "message_id": msg.message_id or "",
                    "stream": self.stream, "source": self.display}
            # the entry as it came (its other fields too), then why
            fields = {**{k: v for k, v in msg.headers.items() if k not in ours},
                      self.payload_field.decode(): msg.body or b"", **ours}
            commands.append(("XADD", self.dead_letter_queue,
                             "*", *(x for kv in fields.items() for x in kv)))
        self._send_all(commands)

    def _send_all(self, commands: list[tuple]) -> None:
        """Send ``commands`` in one write, then read every reply: redis-py's
        own connection (its packing, authentication, TLS) without its
        pipeline's Python around each command (an answer's XADD: 2-3 us
        instead of 8-10, measured). An error reply is raised, as a DataError
        naming the command and the key, once every reply is read; a lost
        connection as redis-py's commands meet it (retried as the client is
        configured to, else raised: the batch stays
        unacknowledged, and entries written twice by a retry are a
        redelivery's duplicates, which at-least-once allows)."""
        import redis

        try:  # hiredis's packer itself: redis-py's wrapper adds 2 us a command
            from hiredis import pack_command

            packed = [b"".join(map(pack_command, commands))]
        except ImportError:  # redis-py without its C extension
            packed = None

        def send(conn) -> tuple[tuple, redis.ResponseError] | None:
            conn.send_packed_command(packed or conn.pack_commands(commands))
            failed = None
            for command in commands:
                try:
                    conn.read_response()
                except redis.ResponseError as err:
                    failed = failed or (command, err)
            return failed
        if commands and (failed := self._on_connection(send)) is not None:
            (verb, key, *_), err = failed
            raise DataError(f"{self.display}: Redis refused {verb} to {key!r}: {err}"
                            f" (is {key!r} a stream? it must be, or not exist)")

    def _call(self, *args) -> Any:
        """One command's raw reply (nested lists of bytes), without redis-py's
        parsing of it into dicts."""
        def call(conn):
            conn.send_command(*args)
            return conn.read_response()
        return self._on_connection(call)

    def _on_connection(self, use):
        """``use(connection)`` on one of the client's connections, as
        redis-py runs its own commands (its retry policy on a lost
        connection; a connection that failed is dropped, never reused with
        replies unread)."""
        pool = self._r.connection_pool
        conn = pool.get_connection()
        try:
            return conn.retry.call_with_retry(lambda: use(conn),
                                              lambda _err: conn.disconnect())
        except BaseException:
            conn.disconnect()  # replies may be left unread: not for reuse
            raise
        finally:
            pool.release(conn)

    def close(self) -> None:
        try:
            self._r.close()
        except Exception:  # noqa: BLE001
            pass


class KafkaTopic:
    """A Kafka topic read by a consumer group (confluent-kafka), offsets
    committed by hand: after a micro-batch's commit, one synchronous offset
    commit of everything consumed (the batch). A consumer that dies before
    it starts again from the last committed offsets (the batch comes again,
    dropped by id). A message's id is its ``partition:offset`` (or a payload
    field); dead letters and published answers go through a producer.

    No Kafka server can run on the machines mlsd is tested on: the tests run
    this class against mockafka's in-memory consumer and producer (passed as
    ``clients``); the brokers tested on real servers are RabbitMQ and Redis."""

    def __init__(self, url: str, topic: str, *, group: str = "mlsd",
                 password_env: str | None = None, dead_letter: str | None = None,
                 where: str = "broker", clients=None):
        if clients is None:
            try:
                from confluent_kafka import Consumer, Producer
            except ImportError:
                raise _missing("confluent-kafka") from None
            clients = (Consumer, Producer)
        consumer_cls, producer_cls = clients
        parts = urlsplit(url)
        self.topic, self.dead_letter_queue = topic, dead_letter
        self.display = f"{display_url(url)}#{topic}"
        config = {"bootstrap.servers": parts.netloc.split("@")[-1] or
                  "127.0.0.1:9092"}
        password = _password(password_env, where)
        if parts.username:
            config |= {"security.protocol": "SASL_PLAINTEXT",
                       "sasl.mechanisms": "PLAIN",
                       "sasl.username": unquote(parts.username),
                       "sasl.password": password or ""}
        self._consumer = consumer_cls({**config, "group.id": group,
                                       "enable.auto.commit": False,
                                       "auto.offset.reset": "earliest"})
        self._consumer.subscribe([topic])
        self._producer = producer_cls(config)

    def fetch(self, n: int, timeout: float) -> list[Message]:
        deadline = time.monotonic() + timeout
        got = self._consumer.consume(num_messages=n, timeout=timeout)
        out = []
        for m in got:
            if m.error() is not None:
                raise DataError(f"{self.display}: {m.error()}")
            where = f"{m.partition()}:{m.offset()}"
            out.append(Message(body=m.value(), message_id=where, offset=where,
                               tag=m, headers=dict(m.headers() or [])))
        if not out:  # an in-memory client answers at once: do not spin
            time.sleep(max(0.0, deadline - time.monotonic()))
        return out

    def ack(self, messages: list[Message]) -> None:
        if messages:
            self._consumer.commit(asynchronous=False)

    def publish(self, queue: str, items: list[tuple[bytes, dict[str, Any]]], *,
                declare: bool = True) -> None:
        for body, props in items:
            self._producer.produce(queue, value=body, key=props.get("message_id"),
                                   headers=[(k, str(v)) for k, v in props.items()
                                            if v is not None])
        self._producer.flush()

    def dead_letter(self, items: list[tuple[Message, list[dict[str, Any]]]]) -> None:
        for msg, reasons in items:
            self._producer.produce(
                self.dead_letter_queue, value=msg.body or b"", key=msg.message_id,
                headers=[*msg.headers.items(),
                         (f"{HEADER_PREFIX}reasons", json.dumps(reasons)),
                         (f"{HEADER_PREFIX}topic", self.topic),
                         (f"{HEADER_PREFIX}source", self.display)])
        self._producer.flush()

    def close(self) -> None:
        try:
            self._consumer.close()
        except Exception:  # noqa: BLE001
            pass


def missing_payload(message: Message, spec) -> str | None:
    """Why a Redis entry has no body (it lacks the source's payload field,
    naming the fields it has), or None: ``mlsd consume`` quarantines it and
    ``serve --stream`` answers it with this."""
    if message.body is not None or spec.kind != "redis":
        return None
    return (f"the entry has no field {spec.payload_field!r} (payload_field); its "
            f"fields: {', '.join(sorted(message.headers)) or 'none'}")


def gather(client, room: int, seconds: float, stop) -> list[Message]:
    """A micro-batch: up to ``room`` messages, fetched until the first one is
    ``seconds`` old (empty if none came for a moment, or ``stop`` is set)."""
    batch = client.fetch(room, 0.2)
    opened = time.monotonic()
    while batch and len(batch) < room and not stop.is_set():
        left = seconds - (time.monotonic() - opened)
        if left <= 0:
            break
        batch += client.fetch(room - len(batch), min(0.2, left))
    return batch


@contextmanager
def stop_on_signals(stop, enabled: bool, heard):
    """While inside: SIGTERM and Ctrl-C set ``stop`` (the loop finishes its
    batch: committed, acknowledged) and ``heard(name)`` is told; the previous
    handlers come back after. Only in the main thread, and only if
    ``enabled`` (a library caller keeps its own handlers)."""
    import signal
    import threading

    previous = {}
    if enabled and threading.current_thread() is threading.main_thread():
        def halt(signum, _frame):
            heard(signal.Signals(signum).name)
            stop.set()
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, halt)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def open_broker(spec, where: str = "broker", prefetch: int | None = None):
    """The broker client a source spec (``BrokerSourceSpec``) describes."""
    if spec.kind == "rabbitmq":
        return RabbitQueue(spec.broker, spec.queue, password_env=spec.password_env,
                           prefetch=prefetch or spec.batch_rows,
                           dead_letter=spec.dead_letter_queue, where=where)
    if spec.kind == "kafka":
        return KafkaTopic(spec.broker, spec.queue, group=spec.group,
                          password_env=spec.password_env,
                          dead_letter=spec.dead_letter_queue, where=where)
    return RedisStream(spec.broker, spec.queue, group=spec.group,
                       consumer=spec.consumer, password_env=spec.password_env,
                       payload_field=spec.payload_field,
                       dead_letter=spec.dead_letter_queue, where=where,
                       claim_idle_seconds=spec.claim_idle_seconds)


__all__ = ["HEADER_PREFIX", "KafkaTopic", "Message", "RabbitQueue", "RedisStream",
           "display_url",
           "gather", "open_broker", "stop_on_signals"]
