"""Writes of consumed batches in consumption order, and their offsets committed behind them."""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import TopicPartition
from aiokafka.errors import KafkaError

from mm_shared.kafka.dead_lettering import Records

log = logging.getLogger(__name__)


class OrderedWrites:
    """The writes of consumed batches, as tasks: ``run(write, records)`` performs one (until it
    succeeds), then ``written(records)`` is called, in consumption order, so offsets never get
    past a write still running. With ``concurrency`` 1 a write starts once the previous one is
    done; above, it starts while earlier ones run, up to that many, unless it shares a record
    key with one of them: writes of one key stay in order, which is all Kafka orders anyway."""

    def __init__(
        self,
        run: Callable[[Callable[[], Awaitable[None]], Records], Awaitable[None]],
        written: Callable[[Records], None],
        concurrency: int = 1,
    ) -> None:
        self._run = run
        self._written = written
        self._concurrency = concurrency
        #: Running writes, oldest first, with the keys of their records.
        self._running: collections.deque[tuple[asyncio.Task[None], set[bytes | None]]] = (
            collections.deque()
        )

    async def start(self, write: Callable[[], Awaitable[None]], records: Records) -> None:
        """Start ``write`` once the rules allow; returns when it has started, not finished."""
        keys = {record.key for record in records}
        while self._running and (
            len(self._running) >= self._concurrency
            or any(keys & running for _, running in self._running)
        ):
            await self._running.popleft()[0]
        previous = self._running[-1][0] if self._running else None
        task = asyncio.create_task(self._run_in_order(write, records, previous))
        self._running.append((task, keys))

    async def _run_in_order(
        self,
        write: Callable[[], Awaitable[None]],
        records: Records,
        previous: asyncio.Task[None] | None,
    ) -> None:
        await self._run(write, records)
        if previous is not None:
            await previous
        self._written(records)


class ThrottledCommits:
    """Offsets of written batches, committed together at most every ``interval_s``. At a few
    records per batch, a commit per batch cost the local broker a noticeable share of a core
    (docs/architecture.md, "Consumers are pipelined"); a redelivery after a crash or a rebalance now covers at most the interval, which idempotent
    writers absorb like any other."""

    def __init__(self, subscriber: Any, interval_s: float) -> None:
        self._subscriber = subscriber
        self._interval_s = interval_s
        self._offsets: dict[TopicPartition, int] = {}
        self._flush: asyncio.Task[None] | None = None

    def add(self, records: Records) -> None:
        for record in records:
            tp = TopicPartition(record.topic, record.partition)
            self._offsets[tp] = max(self._offsets.get(tp, 0), record.offset + 1)
        if self._flush is None or self._flush.done():
            self._flush = asyncio.create_task(self._commit_soon())

    async def _commit_soon(self) -> None:
        await asyncio.sleep(self._interval_s)
        offsets, self._offsets = self._offsets, {}
        consumer = self._subscriber.consumer
        if consumer is None:  # stopped meanwhile: the batches come again, idempotently
            return
        try:
            await consumer.commit(offsets)
        except KafkaError as exc:
            # Revoked meanwhile: the partition's new owner consumes the batches again.
            log.info("offsets of written batches not committed: %r", exc)
