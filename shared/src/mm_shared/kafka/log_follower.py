"""Consumers that follow the broker's log when it was replaced: a new cluster, or positions
past their partitions' end."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from aiokafka.protocol.commit import OffsetCommitRequest
from faststream.kafka import KafkaBroker

from mm_shared.kafka.broker import BOOTSTRAP_SERVERS
from mm_shared.kafka.metrics import LOGS_REPLACED
from mm_shared.kafka.subscribers import THROTTLED_COMMITS

log = logging.getLogger(__name__)


class LogFollower:
    """Keeps every consumer of ``broker`` reading the broker's log as it is now.

    A broker that lost its data (the local broker restarted empty, a Kafka cluster rebuilt)
    starts its partitions again at offset 0, while the consumers' positions and the offsets
    they are about to commit belong to the old log. Kafka answers a fetch past a partition's
    end with OffsetOutOfRange, which resets the position; Tansu answers an empty batch, so a
    consumer waited there for good; and Tansu takes a commit of an old offset from a member it
    does not know, so the group's next assignment started where the old log had been, waiting
    or skipping what the new log held before it. Hence, every ``interval_s``:

    - a new cluster id (each broker start is a cluster of its own, ``devstack.processes``)
      voids every position: each consumer reads its partitions from their start again
      (consumers are idempotent) and forgets the offsets it had not committed yet; a group
      member also commits the start, again until the new broker takes it, so that the group's
      next assignment does not begin at an offset committed from the old log meanwhile;
    - a position past its partition's end (highwater) is moved to the partition's start.
    """

    def __init__(self, broker: KafkaBroker, service: str, interval_s: float = 1.0) -> None:
        self.broker = broker
        self.service = service
        self.interval_s = interval_s
        #: The cluster the consumers read from, once known.
        self.cluster_id: str | None = None
        #: Subscribers whose restart at the new log's start the new broker has not yet taken
        #: as their group's committed offsets.
        self._restarting: set[Any] = set()
        self._admin: AIOKafkaAdminClient | None = None

    async def run(self) -> None:
        bootstrap_servers = BOOTSTRAP_SERVERS.get(self.broker)
        if bootstrap_servers is None:
            return
        try:
            while True:
                await self.check(bootstrap_servers)
                await asyncio.sleep(self.interval_s)
        finally:
            if self._admin is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self._admin.close(), 5)

    async def check(self, bootstrap_servers: str) -> None:
        try:
            if self._admin is None:
                self._admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
                await self._admin.start()
            current = (await self._admin.describe_cluster()).get("cluster_id")
        except Exception:
            log.debug("cluster id not readable right now", exc_info=True)
            if self._admin is not None:
                with contextlib.suppress(Exception):
                    await self._admin.close()
                self._admin = None
            return
        if self.cluster_id is not None and current != self.cluster_id:
            log.warning(
                "the broker is a new cluster (%s, was %s): consumers read from the start",
                current,
                self.cluster_id,
            )
            LOGS_REPLACED.labels(self.service, "new_cluster").inc()
            self._restarting = set(self.broker.subscribers)
            for subscriber in self._restarting:
                if (commits := THROTTLED_COMMITS.get(subscriber)) is not None:
                    commits.forget()
        self.cluster_id = current
        for subscriber in list(self.broker.subscribers):
            consumer = getattr(subscriber, "consumer", None)
            if consumer is None:
                continue
            try:
                if subscriber in self._restarting:
                    if await _restart_at_beginning(subscriber, consumer):
                        self._restarting.discard(subscriber)
                    continue
                await _leave_positions_past_the_end(self.service, subscriber, consumer)
            except Exception:
                log.debug("positions not checkable right now", exc_info=True)


async def _restart_at_beginning(subscriber: Any, consumer: Any) -> bool:
    """Seek every assigned partition to its start; for a group member, also commit that
    start. True once done (the commit taken by the new broker)."""
    assigned = consumer.assignment()
    if not assigned:
        return False
    await consumer.seek_to_beginning(*assigned)
    if not getattr(subscriber, "group_id", None):
        return True
    beginnings = await consumer.beginning_offsets(list(assigned))
    if _rejoining(consumer):
        # A commit sent meanwhile goes out without a member id the new broker knows: refused,
        # it voids the join under way, and the group joins once more (a rebalance each).
        return False
    try:
        await consumer.commit(beginnings)
    except KafkaError as exc:
        log.info("start of the new log not committed yet: %r", exc)
        return False
    return True


def _rejoining(consumer: Any) -> bool:
    """Whether the group member has lost its membership and not yet joined again (aiokafka
    0.14 keeps that in its coordinator; tests/test_library_contracts.py checks the names)."""
    coordinator = getattr(consumer, "_coordinator", None)
    if coordinator is None:
        return False
    return bool(coordinator.generation == OffsetCommitRequest.DEFAULT_GENERATION_ID)


async def _leave_positions_past_the_end(service: str, subscriber: Any, consumer: Any) -> None:
    for tp in consumer.assignment():
        highwater = consumer.highwater(tp)
        if highwater is None:
            continue
        position = await asyncio.wait_for(consumer.position(tp), 1.0)
        if position > highwater:
            log.warning(
                "%s[%s]: position %d past the partition's end %d: reading from its start",
                tp.topic,
                tp.partition,
                position,
                highwater,
            )
            LOGS_REPLACED.labels(service, "past_the_end").inc()
            if (commits := THROTTLED_COMMITS.get(subscriber)) is not None:
                commits.forget()
            await consumer.seek_to_beginning(tp)
