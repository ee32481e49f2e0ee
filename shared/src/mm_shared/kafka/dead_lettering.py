"""Messages that can never succeed go to the dead-letter topic, with the reason in their
headers, so that they do not block their partition."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar
from uuid import UUID

from aiokafka import ConsumerRecord
from faststream._internal.middlewares import BaseMiddleware
from faststream.kafka import KafkaBroker
from faststream.message import StreamMessage
from pydantic import ValidationError

from mm_shared.events import Event, Topic
from mm_shared.kafka.metrics import DEAD_LETTERED, HANDLER_RETRIES

log = logging.getLogger(__name__)
E = TypeVar("E", bound=Event)
Records = Sequence[ConsumerRecord[Any, Any]]


class PermanentFailure(Exception):
    """Raised by a handler for a message that will never succeed, however often it is retried.
    ``event_ids``: which events of a batch failed (default: all of them)."""

    def __init__(self, message: str, event_ids: Iterable[UUID | str] = ()) -> None:
        super().__init__(message)
        self.event_ids = {str(e) for e in event_ids}


def is_permanent(exc: BaseException) -> bool:
    return isinstance(exc, PermanentFailure | ValidationError | json.JSONDecodeError | UnicodeError)


def dead_letter_middleware(
    service: str, retry_pause_s: float = 1.0
) -> type[BaseMiddleware[Any, Any]]:
    class DeadLetterMiddleware(BaseMiddleware[Any, Any]):
        async def consume_scope(
            self, call_next: Callable[[StreamMessage[Any]], Awaitable[Any]], msg: StreamMessage[Any]
        ) -> Any:
            try:
                return await call_next(msg)
            except Exception as exc:
                topic = getattr(msg.raw_message, "topic", "?")
                if not is_permanent(exc):
                    HANDLER_RETRIES.labels(service, topic).inc()
                    log.warning("transient failure on %s, will retry: %r", topic, exc)
                    await asyncio.sleep(retry_pause_s)
                    raise
                raw = msg.raw_message
                records = raw if isinstance(raw, tuple | list) else [raw]
                await dead_letter_failed(self.context.get("broker"), service, records, exc)
                return None

    return DeadLetterMiddleware


async def dead_letter(
    broker: KafkaBroker, service: str, record: ConsumerRecord[Any, Any], exc: BaseException
) -> None:
    """Copy a consumed record to the dead-letter topic, with where it came from and why."""
    headers = {k: v.decode(errors="replace") for k, v in (record.headers or ())}
    headers.update(
        {
            "dlq_service": service,
            "dlq_source_topic": record.topic,
            "dlq_source_partition": str(record.partition),
            "dlq_source_offset": str(record.offset),
            "dlq_reason": type(exc).__name__,
            "dlq_error": str(exc)[:2000],
        }
    )
    await broker.publish(
        record.value or b"", Topic.DEAD_LETTER.value, key=record.key, headers=headers
    )
    DEAD_LETTERED.labels(service, record.topic, type(exc).__name__).inc()
    log.error("dead-lettered %s[%s]@%s: %r", record.topic, record.partition, record.offset, exc)


async def dead_letter_failed(
    broker: KafkaBroker,
    service: str,
    records: Records,
    exc: BaseException,
) -> None:
    """Dead-letter the records of a batch that failed for good: those a
    :class:`PermanentFailure` names by event id, else all of them."""
    named = exc.event_ids if isinstance(exc, PermanentFailure) else set()
    for record in records:
        event_id = dict(record.headers or ()).get("event_id", b"").decode(errors="replace")
        if not named or event_id in named:
            await dead_letter(broker, service, record, exc)


async def raw_records(msg: StreamMessage[Any]) -> list[ConsumerRecord[Any, Any]]:
    """Decoder for batch subscribers that validate each record themselves, so that one bad
    record is dead-lettered alone instead of failing its whole batch."""
    raw = msg.raw_message
    return list(raw) if isinstance(raw, tuple | list) else [raw]


async def decode_or_dead_letter(
    broker: KafkaBroker,
    service: str,
    records: Records,
    event_types: Mapping[str, type[E]],
) -> list[E]:
    """Decode each record by its topic; what does not decode goes to the dead-letter topic."""
    events: list[E] = []
    for record in records:
        try:
            events.append(event_types[record.topic].model_validate_json(record.value or b""))
        except ValidationError as exc:
            await dead_letter(broker, service, record, exc)
    return events
