"""How the pipelined subscriber schedules its batches' writes: one after the other by default;
with more concurrency, batches of other keys overlap, one key's writes stay in order, and
offsets are handed on in consumption order, never past a write still running."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

from aiokafka import ConsumerRecord

from mm_shared.kafka import OrderedWrites

Write = Callable[[], Awaitable[None]]


def batch(offset: int, *keys: str) -> list[ConsumerRecord[bytes, bytes]]:
    return [
        ConsumerRecord("t", 0, offset + i, 0, 0, key.encode(), b"", None, 0, 0, [])
        for i, key in enumerate(keys)
    ]


class Writer:
    """Writes that finish only when the test releases them; records what started and what was
    handed on as written."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.written: list[int] = []
        self._release: dict[str, asyncio.Event] = {}

    def write(self, name: str) -> Write:
        self._release[name] = asyncio.Event()

        async def write() -> None:
            self.started.append(name)
            await self._release[name].wait()

        return write

    def release(self, name: str) -> None:
        self._release[name].set()

    async def run(self, write: Write, _: Sequence[ConsumerRecord[bytes, bytes]]) -> None:
        await write()

    def done(self, records: Sequence[ConsumerRecord[bytes, bytes]]) -> None:
        self.written += [r.offset for r in records]


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_by_default_a_write_waits_for_the_previous_one() -> None:
    writer = Writer()
    writes = OrderedWrites(writer.run, writer.done)
    await writes.start(writer.write("a"), batch(0, "k1"))
    second = asyncio.create_task(writes.start(writer.write("b"), batch(1, "k2")))
    await settle()
    assert writer.started == ["a"]
    writer.release("a")
    await second
    await settle()
    assert writer.started == ["a", "b"]
    assert writer.written == [0]


async def test_other_keys_overlap_and_offsets_follow_consumption_order() -> None:
    writer = Writer()
    writes = OrderedWrites(writer.run, writer.done, concurrency=4)
    await writes.start(writer.write("a"), batch(0, "k1", "k2"))
    await writes.start(writer.write("b"), batch(2, "k3"))
    await settle()
    assert writer.started == ["a", "b"]
    writer.release("b")
    await settle()
    assert writer.written == []  # not past "a", which still runs
    writer.release("a")
    await settle()
    assert writer.written == [0, 1, 2]


async def test_a_write_sharing_a_key_waits_for_the_earlier_one() -> None:
    writer = Writer()
    writes = OrderedWrites(writer.run, writer.done, concurrency=4)
    await writes.start(writer.write("a"), batch(0, "k1"))
    third = asyncio.create_task(writes.start(writer.write("c"), batch(1, "k2", "k1")))
    await settle()
    assert writer.started == ["a"]
    writer.release("a")
    await third
    await settle()
    assert writer.started == ["a", "c"]
    writer.release("c")
    await settle()
    assert writer.written == [0, 1, 2]


async def test_no_more_than_the_given_number_of_writes_run_at_once() -> None:
    writer = Writer()
    writes = OrderedWrites(writer.run, writer.done, concurrency=2)
    await writes.start(writer.write("a"), batch(0, "k1"))
    await writes.start(writer.write("b"), batch(1, "k2"))
    third = asyncio.create_task(writes.start(writer.write("c"), batch(2, "k3")))
    await settle()
    assert writer.started == ["a", "b"]
    writer.release("a")
    await third
    await settle()
    assert writer.started == ["a", "b", "c"]
