"""What mm_shared relies on in aiokafka's and FastStream's private APIs, checked without a broker.

Both libraries are pinned to the minor versions these tests passed on (shared/pyproject.toml).
When an upgrade fails one of them, the assertion names the private class, attribute or method
whose shape changed, and the module of mm_shared that uses it."""

from __future__ import annotations

import inspect
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer, TopicPartition, errors
from aiokafka.client import AIOKafkaClient
from aiokafka.cluster import ClusterMetadata
from aiokafka.protocol import produce
from aiokafka.protocol.types import Array, Schema
from aiokafka.record.memory_records import MemoryRecords
from faststream import AckPolicy
from faststream._internal.middlewares import BaseMiddleware
from faststream.kafka import KafkaBroker, TestKafkaBroker
from faststream.kafka.subscriber.usecase import BatchSubscriber
from faststream.message import StreamMessage

from mm_shared.events import ReportSubmitted
from mm_shared.kafka.dead_lettering import raw_records
from mm_shared.kafka.message import Message
from mm_shared.kafka.producer import _RecordBatch
from mm_shared.kafka.subscribers import _PromptBatchSubscriber, pipelined_batch_subscriber

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

PRODUCER = "mm_shared.kafka.producer.KafkaPublisher"
SUBSCRIBER = "mm_shared.kafka.subscribers._PromptBatchSubscriber"


def parameters(function: Any) -> list[str]:
    return list(inspect.signature(function).parameters)


# aiokafka ----------------------------------------------------------------------------------


def test_default_record_batch_builder_builds_what_memory_records_reads() -> None:
    """aiokafka.record.default_records.DefaultRecordBatchBuilder(magic, compression_type,
    is_transactional=, producer_id=, producer_epoch=, base_sequence=, batch_size=), its
    append(offset, timestamp, key=, value=, headers=) returning None when full, and build()."""
    batch = _RecordBatch()
    sent = [
        Message("t", f"key-{i}".encode(), f"payload-{i}".encode(), {"event_id": str(i)})
        for i in range(3)
    ]
    for message in sent:
        assert batch.append(message), (
            f"DefaultRecordBatchBuilder.append refused a record ({PRODUCER})"
        )
    records = MemoryRecords(batch.data())
    read = records.next_batch()
    assert read is not None, f"DefaultRecordBatchBuilder.build() gave no batch ({PRODUCER})"
    got = [(r.key, r.value, list(r.headers)) for r in read]
    assert got == [
        (m.key, m.payload, [(k, v.encode()) for k, v in m.headers.items()]) for m in sent
    ], f"DefaultRecordBatchBuilder: records do not read back as appended ({PRODUCER})"


def test_default_record_batch_builder_refuses_a_record_once_full() -> None:
    batch = _RecordBatch()
    big = Message("t", b"k", b"x" * 100_000, {})
    appended = [batch.append(big) for _ in range(10)]
    assert appended[0], "DefaultRecordBatchBuilder.append refused the first record"
    assert not appended[-1], (
        f"DefaultRecordBatchBuilder.append no longer returns None once batch_size is reached "
        f"({PRODUCER} relies on it to start a partition's next batch)"
    )


def test_produce_request_takes_the_fields_the_producer_passes() -> None:
    """aiokafka.protocol.produce.ProduceRequest(transactional_id=, required_acks=, timeout=,
    topics=[(topic, [(partition, bytes)])]), built per negotiated version by the client."""
    assert parameters(produce.ProduceRequest.__init__)[1:] == [
        "transactional_id",
        "required_acks",
        "timeout",
        "topics",
    ], f"aiokafka.protocol.produce.ProduceRequest changed its constructor ({PRODUCER})"
    request = produce.ProduceRequest(
        transactional_id=None, required_acks=-1, timeout=10_000, topics=[("t", [(0, b"")])]
    )
    assert request.required_acks == -1
    assert callable(getattr(request, "build", None)), "ProduceRequest.build is gone"


def _names(value: Any) -> tuple[str, ...]:
    schema = value.array_of if isinstance(value, Array) else value
    assert isinstance(schema, Schema)
    return tuple(str(name) for name in schema.names)


def test_every_produce_response_version_has_topics_of_partition_and_error_code() -> None:
    """The producer reads response.topics → (topic, partitions) → (partition, error_code, …)
    whatever version the broker negotiated."""
    versions = [
        getattr(produce, name) for name in dir(produce) if name.startswith("ProduceResponse_v")
    ]
    assert versions, "aiokafka.protocol.produce.ProduceResponse_v* are gone"
    for response in versions:
        schema: Schema = response.SCHEMA
        assert schema.names[0] == "topics", f"{response.__name__}.topics ({PRODUCER})"
        topics = schema.fields[0]
        assert _names(topics)[:2] == ("topic", "partitions"), f"{response.__name__} topics"
        partitions = dict(zip(_names(topics), _array_fields(topics), strict=True))["partitions"]
        assert _names(partitions)[:2] == ("partition", "error_code"), (
            f"{response.__name__} partitions no longer start (partition, error_code) ({PRODUCER})"
        )


def _array_fields(value: Any) -> tuple[Any, ...]:
    schema = value.array_of if isinstance(value, Array) else value
    return tuple(schema.fields)


def test_error_codes_map_to_classes_that_say_whether_metadata_is_stale() -> None:
    """aiokafka.errors.for_code(code) and the class attribute invalid_metadata."""
    not_leader = errors.for_code(6)
    assert issubclass(not_leader, errors.KafkaError)
    assert not_leader.invalid_metadata is True, (
        f"aiokafka.errors.for_code(6).invalid_metadata ({PRODUCER} refreshes metadata on it)"
    )
    assert errors.for_code(2).invalid_metadata is False


async def test_the_producer_exposes_its_client_with_cluster_metadata_and_send() -> None:
    """AIOKafkaProducer.client (an AIOKafkaClient) with .cluster.leader_for_partition(tp),
    .force_metadata_update() and .send(node_id, request): the producer sends its own requests."""
    producer = AIOKafkaProducer(bootstrap_servers="127.0.0.1:1")
    try:
        client = producer.client
        assert isinstance(client, AIOKafkaClient), f"AIOKafkaProducer.client ({PRODUCER})"
        assert isinstance(client.cluster, ClusterMetadata), f"AIOKafkaClient.cluster ({PRODUCER})"
        assert client.cluster.leader_for_partition(TopicPartition("unknown", 0)) is None, (
            f"ClusterMetadata.leader_for_partition: None for an unknown partition ({PRODUCER})"
        )
        assert parameters(client.send)[:2] == ["node_id", "request"], (
            f"AIOKafkaClient.send(node_id, request) ({PRODUCER})"
        )
        assert callable(client.force_metadata_update), "AIOKafkaClient.force_metadata_update"
    finally:
        await producer.stop()


# FastStream --------------------------------------------------------------------------------


def test_a_batch_subscriber_is_faststreams_batch_subscriber_and_takes_the_prompt_class() -> None:
    """broker.subscriber(batch=True, ...) returns exactly faststream's BatchSubscriber, whose
    instance layout lets ``__class__`` be swapped for a subclass without slots of its own, and
    which carries batch_timeout_ms, max_records, group_id and consumer (None until started)."""
    broker = KafkaBroker("127.0.0.1:1")

    @pipelined_batch_subscriber(
        broker,
        "contract",
        {"contract.v1": ReportSubmitted},
        group_id="contract",
        fetch_max_wait_ms=7,
    )
    async def prepare(events: list[ReportSubmitted]) -> Any:
        raise AssertionError("never consumed")

    (subscriber,) = broker.subscribers
    assert type(subscriber) is _PromptBatchSubscriber, (
        f"broker.subscriber(batch=True) is no longer a BatchSubscriber ({SUBSCRIBER})"
    )
    assert subscriber.batch_timeout_ms == 7, f"BatchSubscriber.batch_timeout_ms ({SUBSCRIBER})"
    assert subscriber.max_records == 500, f"BatchSubscriber.max_records ({SUBSCRIBER})"
    assert subscriber.group_id == "contract", "subscriber.group_id (mm_shared.service readiness)"
    assert subscriber.consumer is None, (
        "subscriber.consumer before start (mm_shared.kafka.metrics, writes, subscribers)"
    )


def test_the_consume_loop_fetches_through_get_msg() -> None:
    """_PromptBatchSubscriber overrides get_msg(consumer); the loop must still call it."""
    loop = inspect.getsource(BatchSubscriber._run_consume_loop)
    assert "self.get_msg(consumer)" in loop, (
        f"FastStream's consume loop no longer calls get_msg(consumer) ({SUBSCRIBER})"
    )
    assert parameters(BatchSubscriber.get_msg) == ["self", "consumer"], (
        f"BatchSubscriber.get_msg(self, consumer) ({SUBSCRIBER})"
    )


def test_faststream_still_pauses_after_an_empty_batch_poll() -> None:
    """The reason for _PromptBatchSubscriber. Once this fails, FastStream stopped sleeping
    batch_timeout_ms after an empty getmany: the class swap can go."""
    assert "sleep" in inspect.getsource(BatchSubscriber.get_msg), (
        f"BatchSubscriber.get_msg no longer sleeps after an empty poll: remove {SUBSCRIBER}"
    )


async def test_a_middleware_reaches_the_broker_through_its_context() -> None:
    """faststream._internal.middlewares.BaseMiddleware(msg, context=) with
    consume_scope(call_next, msg) and self.context.get("broker"): the dead-letter middleware
    (mm_shared.kafka.dead_lettering) publishes through the broker it finds there."""
    assert parameters(BaseMiddleware.consume_scope)[1:] == ["call_next", "msg"], (
        "BaseMiddleware.consume_scope(call_next, msg) (mm_shared.kafka.dead_lettering)"
    )
    seen: list[Any] = []

    class Recording(BaseMiddleware[Any, Any]):
        async def consume_scope(self, call_next: Any, msg: StreamMessage[Any]) -> Any:
            seen.append((self.context.get("broker"), msg.raw_message))
            return await call_next(msg)

    broker = KafkaBroker("127.0.0.1:1", middlewares=[Recording])

    @broker.subscriber(
        "contract.v1",
        group_id="contract",
        batch=True,
        decoder=raw_records,
        ack_policy=AckPolicy.MANUAL,
    )
    async def consume(records: list[Any]) -> None:
        pass

    async with TestKafkaBroker(broker) as test_broker:
        await test_broker.publish(b"{}", "contract.v1", key=b"k")
    assert seen, "the middleware's consume_scope was not called"
    found, raw = seen[0]
    assert found is broker, (
        'BaseMiddleware.context.get("broker") is no longer the broker (mm_shared.kafka.dead_lettering)'
    )
    assert raw, "StreamMessage.raw_message of a batch is empty"


def test_a_member_that_lost_its_group_shows_the_default_generation() -> None:
    """LogFollower holds back its commit while a consumer rejoins: it reads the consumer's
    ``_coordinator.generation``, which aiokafka resets to the default while the member is
    unknown to the broker, and sets again when a join completes."""
    from aiokafka import AIOKafkaConsumer
    from aiokafka.consumer.group_coordinator import GroupCoordinator
    from aiokafka.protocol.commit import OffsetCommitRequest

    where = "mm_shared.kafka.log_follower._rejoining"
    assert OffsetCommitRequest.DEFAULT_GENERATION_ID == -1, where
    reset = inspect.getsource(GroupCoordinator.reset_generation)
    assert "self.generation = OffsetCommitRequest.DEFAULT_GENERATION_ID" in reset, where
    assert "self._coordinator = GroupCoordinator(" in inspect.getsource(AIOKafkaConsumer.start), (
        where
    )
