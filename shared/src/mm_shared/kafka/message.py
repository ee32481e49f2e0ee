"""An event as the outbox stores it and the producer sends it."""

from __future__ import annotations

from dataclasses import dataclass

from mm_shared.events import Event


@dataclass(frozen=True, slots=True)
class Message:
    """An event as it goes to Kafka: serialised once, stored and published as these bytes."""

    topic: str
    key: bytes | None
    payload: bytes
    headers: dict[str, str]

    @classmethod
    def of(cls, event: Event) -> Message:
        return cls(event.topic.value, event.key, event.model_dump_json().encode(), event.headers())
