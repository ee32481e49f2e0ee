"""Helpers for tests over the real broker, database and SMTP: wait for conditions, watch topics,
catch mails."""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any, TypeVar
from uuid import UUID, uuid4

import sqlalchemy as sa
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlalchemy.ext.asyncio import create_async_engine

from mm_shared.events import Event, ReportSubmitted, Topic, utcnow

T = TypeVar("T")

#: Leipzig's Markt (Ortsteil Zentrum, Stadtbezirk Mitte).
MARKT = (51.3397, 12.3731)


def submitted(
    lat: float = MARKT[0], long: float = MARKT[1], service_code: str = "001"
) -> ReportSubmitted:
    """A new report as intake announces it, at a fresh id."""
    return ReportSubmitted(
        report_id=uuid4(),
        jurisdiction="leipzig",
        service_code=service_code,
        lat=lat,
        long=long,
        submitted_at=utcnow(),
    )


async def eventually(
    probe: Callable[[], Awaitable[T | None]], timeout_s: float = 30.0, interval_s: float = 0.05
) -> T:
    """Poll ``probe`` until it returns something truthy (so never None); fail with its last
    value otherwise."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        value = await probe()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout_s}s (last: {value!r})")
        await asyncio.sleep(interval_s)


@dataclass
class Record:
    topic: str
    key: bytes | None
    value: bytes
    headers: dict[str, str]

    def json(self) -> dict[str, Any]:
        import json

        return dict(json.loads(self.value))


@dataclass
class EventTap:
    """Reads every partition of the given topics from the start, without a consumer group (so
    no 5 s join), and keeps what it saw."""

    bootstrap: str
    records: list[Record] = field(default_factory=list)

    @contextlib.asynccontextmanager
    async def running(self, topics: list[str]) -> AsyncIterator[EventTap]:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, enable_auto_commit=False, fetch_max_wait_ms=10
        )
        await consumer.start()
        partitions = [
            TopicPartition(t, p)
            for t in topics
            for p in sorted(consumer.partitions_for_topic(t) or {0})
        ]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)

        async def pump() -> None:
            async for msg in consumer:
                self.records.append(
                    Record(
                        msg.topic,
                        msg.key,
                        msg.value,
                        {k: v.decode() for k, v in (msg.headers or ())},
                    )
                )

        task = asyncio.create_task(pump())
        try:
            yield self
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            try:
                await consumer.stop()
            except asyncio.CancelledError:
                # After the session's loop stood still for minutes (the browser tests run last,
                # and Playwright's sync API holds the main thread meanwhile), aiokafka's fetcher
                # ends its timed-out requests by cancellation; only a cancellation of this task
                # itself is passed on.
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise

    def about(self, report_id: UUID, topic: Topic | None = None) -> list[Record]:
        key = str(report_id).encode()
        return [r for r in self.records if r.key == key and (topic is None or r.topic == topic)]


async def publish(bootstrap: str, *events: Event) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for e in events:
            await producer.send_and_wait(
                e.topic.value,
                e.model_dump_json().encode(),
                key=e.key,
                headers=[(k, v.encode()) for k, v in e.headers().items()],
            )
    finally:
        await producer.stop()


class RecordingSmtp:
    """An SMTP server on 127.0.0.1 that keeps every mail; ``refuse`` makes it answer 451."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.messages: list[EmailMessage] = []
        self.refuse = False
        self._controller = Controller(self, hostname="127.0.0.1", port=port)

    async def handle_DATA(  # noqa: N802 - aiosmtpd's hook name
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        if self.refuse:
            return "451 4.3.0 try again later"
        raw = envelope.original_content or b""
        self.messages.append(email.message_from_bytes(raw, policy=email.policy.default))
        return "250 OK"

    def to(self, address: str) -> list[EmailMessage]:
        return [m for m in self.messages if m["To"] == address]

    def start(self) -> None:
        self._controller.start()

    def stop(self) -> None:
        self._controller.stop()


def body_text(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    return str(part.get_content()) if part else ""


def scraped_metrics(base_url: str) -> set[str]:
    """The metric names a service's ``/metrics`` offers to queries: each family, counters with
    their ``_total``, histograms with their ``_bucket``, ``_sum`` and ``_count`` series."""
    import re

    import httpx

    text = httpx.get(f"{base_url}/metrics", timeout=10).text
    names = set()
    for family, kind in re.findall(r"^# TYPE (\S+) (\S+)", text, flags=re.M):
        suffixes = {"histogram": ("_bucket", "_sum", "_count"), "counter": ("_total",)}
        names |= {family} | {family + s for s in suffixes.get(kind, ())}
    return names


async def run_sql(database_url: str, statement: str, **parameters: Any) -> list[Any]:
    """One statement against the test database, committed; the rows it returns, if any (for
    setting up what the APIs cannot, such as a report resolved a month ago)."""
    engine = create_async_engine(database_url)
    try:
        async with engine.begin() as conn:
            result = await conn.execute(sa.text(statement), parameters)
            return list(result.all()) if result.returns_rows else []
    finally:
        await engine.dispose()
