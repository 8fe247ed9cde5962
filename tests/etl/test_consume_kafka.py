"""`mlsd consume` on a Kafka topic. No Kafka server can run on the machines mlsd
is tested on: the Kafka client (confluent-kafka's interface) runs here against
mockafka's in-memory consumer and producer, which keep per-partition offsets and
hand uncommitted messages to the next consumer, as a consumer group does. What
these tests show is the client's side: offsets committed only after the lake
commit, a redelivered batch dropped by its partition:offset ids, dead letters
produced with their reasons. The brokers tested on real servers are RabbitMQ and
Redis (tests/etl/test_consume.py)."""

from __future__ import annotations

import json

import pytest

from mlsd.connectors import KafkaTopic
from mlsd.etl import consume as consume_source
from tests.etl.test_consume import _CrashBeforeAck, _event, _project, _stored

pytest.importorskip("mockafka")


@pytest.fixture
def kafka():
    """mockafka's consumer and producer, made to do two things a Kafka
    broker does and mockafka leaves out: stamp each message with its offset
    in its partition, and place a message sent without a partition."""
    from confluent_kafka.admin import NewTopic
    from mockafka import FakeAdminClientImpl, FakeConsumer, FakeProducer
    from mockafka.kafka_store import KafkaStore

    class Producer(FakeProducer):
        def produce(self, topic, value=None, key=None, partition=None, **kwargs):
            partition = 0 if partition is None else partition
            offset = KafkaStore().get_partition_next_offset(topic, partition)
            super().produce(topic, value=value, key=key, partition=partition,
                            offset=offset, **kwargs)

    admin = FakeAdminClientImpl(clean=True)
    admin.create_topics([NewTopic("orders", num_partitions=3),
                         NewTopic("orders.dead", num_partitions=1)])
    yield (FakeConsumer, Producer)
    FakeAdminClientImpl(clean=True)


def _topic(spec, clients) -> KafkaTopic:
    return KafkaTopic(spec.broker, spec.queue, group=spec.group,
                      dead_letter=spec.dead_letter_queue, clients=clients)


def test_a_kafka_topic_is_stored_once_across_a_crash_before_the_offset_commit(
        tmp_path, kafka):
    from mockafka import FakeConsumer

    producer = kafka[1]()
    for i in range(250):
        producer.produce("orders", value=json.dumps(_event(i)).encode(),
                         partition=i % 3)
    producer.produce("orders", value=b"{broken", partition=0)
    proj = _project(tmp_path / "p", broker="kafka://127.0.0.1:9092", queue="orders",
                    id_from="offset", batch_rows=100, batch_seconds=0.2)
    spec = proj.spec.sources["events"]
    with pytest.raises(KeyboardInterrupt):  # dies after the lake commit
        consume_source("events", spec, proj.spec.validate_, root=proj.root,
                       lake=proj.lake, idle_seconds=0.5,
                       broker=_CrashBeforeAck(_topic(spec, kafka)))
    assert len(_stored(proj)) + len(_stored(proj, "quarantine")) == 100
    res = consume_source("events", spec, proj.spec.validate_, root=proj.root,
                         lake=proj.lake, idle_seconds=0.5,
                         broker=_topic(spec, kafka))
    assert res.duplicates == 100  # the uncommitted batch came again: dropped
    rows = _stored(proj)
    assert sorted(r["event_id"] for r in rows) == list(range(250))
    assert all(r["_message_id"] == r["_offset"] and ":" in r["_offset"]
               for r in rows)
    (bad,) = _stored(proj, "quarantine")
    assert bad["raw"] == "{broken"
    dead = FakeConsumer()
    dead.subscribe(["orders.dead"])
    (msg,) = dead.consume(10)
    headers = dict(msg.headers())
    assert msg.value() == b"{broken" and "not JSON" in headers["x-mlsd-reasons"]
    # nothing left: a third consumer finds every offset committed
    again = consume_source("events", spec, proj.spec.validate_, root=proj.root,
                           lake=proj.lake, idle_seconds=0.3,
                           broker=_topic(spec, kafka))
    assert again.messages == 0


def test_a_kafka_source_needs_ids_from_offsets_or_a_field(tmp_path):
    from mlsd.errors import SpecError
    from mlsd.pipeline import Project

    with pytest.raises(SpecError, match="offset"):
        Project.of(_project(tmp_path / "p", broker="kafka://127.0.0.1:9092",
                            queue="orders", id_from="entry_id").root)
