"""The outbox relay's producer: record batches built and sent on aiokafka's client.

It relies on aiokafka's private classes (``DefaultRecordBatchBuilder``, ``ProduceRequest``, the
client's ``cluster`` and ``send``): tests/test_library_contracts.py checks them."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from aiokafka import AIOKafkaProducer, TopicPartition, errors
from aiokafka.protocol.produce import ProduceRequest
from aiokafka.record.default_records import DefaultRecordBatchBuilder

from mm_shared.kafka.message import Message
from mm_shared.kafka.partitioner import kafka_partitions


class _RecordBatch:
    """One partition's record batch for a produce request (at most 512 kB: below the broker's
    default 1 MB message limit)."""

    def __init__(self) -> None:
        self._builder = DefaultRecordBatchBuilder(
            2,
            0,
            is_transactional=0,
            producer_id=-1,
            producer_epoch=-1,
            base_sequence=0,
            batch_size=512 * 1024,
        )
        self._count = 0

    def append(self, m: Message) -> bool:
        headers = [(k, v.encode()) for k, v in m.headers.items()]
        appended = self._builder.append(
            self._count, None, key=m.key, value=m.payload, headers=headers
        )
        self._count += appended is not None
        return appended is not None

    def data(self) -> bytes:
        return bytes(self._builder.build())


class KafkaPublisher:
    """The relay's own producer: aiokafka's client and record batches, no per-message framework
    overhead. Connects on first use, so a service starts while the broker is away. Nothing is
    retried here: the relay retries a failed publish (broker away, or a partition's error).

    Messages are packed into one record batch per partition (partitioned exactly like Kafka's
    default partitioner, so keys land where every other producer puts them), a fraction of the
    cost of one ``send`` per message at thousands per second, and sent as one produce request
    per broker (acks=all)."""

    def __init__(self, bootstrap_servers: str, client_id: str) -> None:
        self._bootstrap = bootstrap_servers
        self._client_id = client_id
        self._producer: AIOKafkaProducer | None = None

    async def _started(self) -> AIOKafkaProducer:
        if self._producer is None:
            # Its client and metadata only: requests are built and sent in __call__.
            producer = AIOKafkaProducer(
                bootstrap_servers=self._bootstrap,
                client_id=f"{self._client_id}-outbox",
                request_timeout_ms=10_000,
            )
            try:
                await producer.start()
            except BaseException:
                await producer.stop()
                raise
            self._producer = producer
        return self._producer

    async def __call__(self, messages: Sequence[Message]) -> None:
        producer = await self._started()
        by_topic: dict[str, list[Message]] = {}
        for m in messages:
            by_topic.setdefault(m.topic, []).append(m)
        batches: dict[TopicPartition, list[_RecordBatch]] = {}
        for topic, group in by_topic.items():
            known = sorted(await producer.partitions_for(topic))
            keys = [m.key or b"" for m in group]
            for m, i in zip(group, kafka_partitions(keys, len(known)), strict=True):
                # Every event has a key; a keyless message would go to the first partition.
                tp = TopicPartition(topic, known[i] if m.key is not None else known[0])
                built = batches.setdefault(tp, [_RecordBatch()])
                if not built[-1].append(m):
                    built.append(_RecordBatch())
                    if not built[-1].append(m):  # the builder takes any first record
                        raise ValueError(f"{len(m.payload)} bytes do not fit a record batch")
        # Sent by this task itself, not handed to aiokafka's sender task: in a busy process each
        # hand-over waited for its turn in the event loop, longer than the broker took to answer
        # (docs/architecture.md, "Transactional outbox"). A partition's second
        # batch (over 512 kB) goes in the next round, after the first was acknowledged.
        client = producer.client
        for round_ in range(max((len(built) for built in batches.values()), default=0)):
            by_node: dict[int, dict[str, list[tuple[int, bytes]]]] = {}
            for tp, built in batches.items():
                if round_ < len(built):
                    leader = client.cluster.leader_for_partition(tp)
                    if leader is None or leader < 0:
                        client.force_metadata_update()
                        raise errors.KafkaError(f"no leader known for {tp}")
                    topics = by_node.setdefault(leader, {})
                    topics.setdefault(tp.topic, []).append((tp.partition, built[round_].data()))
            requests = [
                client.send(
                    node,
                    ProduceRequest(
                        transactional_id=None,
                        required_acks=-1,  # acks=all
                        timeout=10_000,
                        topics=list(topics.items()),
                    ),
                )
                for node, topics in by_node.items()
            ]
            # One broker (the usual case): awaited here, without a task for it.
            responses = (
                [await requests[0]] if len(requests) == 1 else await asyncio.gather(*requests)
            )
            for response in responses:
                for topic, partitions in response.topics:
                    for partition in partitions:
                        if partition[1]:  # (partition, error_code, …) in every version
                            error = errors.for_code(partition[1])
                            if error.invalid_metadata:
                                client.force_metadata_update()
                            raise error(f"{topic}[{partition[0]}]")

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None
