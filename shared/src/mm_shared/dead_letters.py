"""``python -m mm_shared.dead_letters list | redrive``: what went to the dead-letter topic, and
sending it back once its cause is fixed (a missing office, a bug). Consumers drop what they
processed already (inbox, stored decisions), so a message sent back twice does no harm."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from mm_shared.events import Topic


@dataclass(frozen=True)
class DeadLetter:
    offset: int
    key: bytes | None
    value: bytes
    headers: dict[str, str]

    @property
    def source_topic(self) -> str:
        return self.headers.get("dlq_source_topic", "")

    def describe(self) -> str:
        h = self.headers
        where = f"{self.source_topic}[{h.get('dlq_source_partition')}]@{h.get('dlq_source_offset')}"
        what = h.get("event_type", "?")
        key = self.key.decode(errors="replace") if self.key else "-"
        return (
            f"{self.offset:>6}  {h.get('dlq_service', '?'):<10} {where}  {what} {key}  "
            f"{h.get('dlq_reason', '?')}: {' '.join(h.get('dlq_error', '').split())[:300]}"
        )


async def read_dead_letters(bootstrap: str) -> list[DeadLetter]:
    """The whole topic, read without a consumer group (nothing is committed)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [
            TopicPartition(Topic.DEAD_LETTER.value, p)
            for p in sorted(consumer.partitions_for_topic(Topic.DEAD_LETTER.value) or ())
        ]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        letters: list[DeadLetter] = []

        async def behind() -> bool:
            return any([await consumer.position(tp) < end for tp, end in ends.items()])

        while await behind():
            for records in (await consumer.getmany(timeout_ms=1000)).values():
                letters += [
                    DeadLetter(
                        r.offset,
                        r.key,
                        r.value or b"",
                        {k: v.decode(errors="replace") for k, v in r.headers},
                    )
                    for r in records
                ]
        return letters
    finally:
        await consumer.stop()


async def redrive(bootstrap: str, letters: Sequence[DeadLetter]) -> None:
    """Each message back to where it came from, as it was (the dead-letter headers dropped)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for letter in letters:
            headers = [
                (k, v.encode()) for k, v in letter.headers.items() if not k.startswith("dlq_")
            ]
            headers.append(("redriven_from_dead_letter_offset", str(letter.offset).encode()))
            await producer.send_and_wait(
                letter.source_topic, letter.value, key=letter.key, headers=headers
            )
    finally:
        await producer.stop()


def select(
    letters: Sequence[DeadLetter],
    offsets: Sequence[int] = (),
    service: str | None = None,
    reason: str | None = None,
) -> list[DeadLetter]:
    return [
        letter
        for letter in letters
        if (not offsets or letter.offset in offsets)
        and (service is None or letter.headers.get("dlq_service") == service)
        and (reason is None or letter.headers.get("dlq_reason") == reason)
        and letter.source_topic
    ]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m mm_shared.dead_letters")
    parser.add_argument("--bootstrap", default="127.0.0.1:9092", help="Kafka bootstrap servers")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in [
        ("list", "show the dead letters: offset, service, source, event, key, reason"),
        ("redrive", "send dead letters back to their source topic"),
    ]:
        command = sub.add_parser(name, help=text)
        command.add_argument("offsets", nargs="*", type=int, help="only these dead-letter offsets")
        command.add_argument("--service", help="only those this service dead-lettered")
        command.add_argument("--reason", help="only this reason, e.g. ValidationError")
    args = parser.parse_args()
    letters = select(
        asyncio.run(read_dead_letters(args.bootstrap)), args.offsets, args.service, args.reason
    )
    if args.command == "list":
        print("\n".join(letter.describe() for letter in letters) or "no dead letters")
    elif not letters:
        raise SystemExit("nothing matches: see `list`")
    else:
        asyncio.run(redrive(args.bootstrap, letters))
        print(f"sent back {len(letters)}: offsets {', '.join(str(x.offset) for x in letters)}")


if __name__ == "__main__":
    main()
