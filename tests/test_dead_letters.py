"""A message that can never be processed goes to the dead-letter topic and does not block."""

from uuid import uuid4

from aiokafka import AIOKafkaProducer

from conftest import Stack
from devstack.testing import eventually, publish, submitted
from mm_shared.dead_letters import read_dead_letters, redrive, select
from mm_shared.events import ReportSubmitted, Topic


async def test_a_poison_message_is_dead_lettered_and_the_partition_moves_on(stack: Stack) -> None:
    report_id = uuid4()
    key = str(report_id).encode()
    producer = AIOKafkaProducer(bootstrap_servers=stack.kafka)
    await producer.start()
    try:
        # Same key → same partition as the valid report below, which must not be held up.
        await producer.send_and_wait(Topic.REPORT_SUBMITTED.value, b"{not json", key=key)
        await producer.send_and_wait(
            Topic.REPORT_SUBMITTED.value, b'{"event_type": "ReportSubmitted"}', key=key
        )
    finally:
        await producer.stop()
    valid = submitted().model_copy(update={"report_id": report_id})
    await publish(stack.kafka, valid)

    async def dead_letters():  # type: ignore[no-untyped-def]
        found = [r for r in stack.tap.records if r.topic == Topic.DEAD_LETTER and r.key == key]
        return found if len(found) == 2 else None

    poison, invalid = await eventually(dead_letters)
    assert poison.value == b"{not json"
    assert poison.headers["dlq_source_topic"] == Topic.REPORT_SUBMITTED
    assert poison.headers["dlq_service"] == "geo-router"
    assert invalid.headers["dlq_reason"] == "ValidationError"
    await eventually(lambda: _routed(stack, valid))


async def _routed(stack: Stack, event: ReportSubmitted):  # type: ignore[no-untyped-def]
    return stack.tap.about(event.report_id, Topic.REPORT_ROUTED)


async def test_a_dead_letter_sent_back_after_its_fix_is_processed(stack: Stack) -> None:
    """As if geo-router had refused a report (say, a bug since fixed): the operator lists the
    dead letters and sends this one back; geo-router routes it as if it were new."""
    report = submitted()
    headers = {
        **report.headers(),
        "dlq_service": "geo-router",
        "dlq_source_topic": Topic.REPORT_SUBMITTED.value,
        "dlq_source_partition": "0",
        "dlq_source_offset": "0",
        "dlq_reason": "RuntimeError",
        "dlq_error": "a bug, since fixed",
    }
    producer = AIOKafkaProducer(bootstrap_servers=stack.kafka)
    await producer.start()
    try:
        await producer.send_and_wait(
            Topic.DEAD_LETTER.value,
            report.model_dump_json().encode(),
            key=report.key,
            headers=[(k, v.encode()) for k, v in headers.items()],
        )
    finally:
        await producer.stop()
    letters = select(await read_dead_letters(stack.kafka), reason="RuntimeError")
    [letter] = [x for x in letters if x.key == report.key]
    assert "geo-router" in letter.describe()
    assert "reports.submitted.v1" in letter.describe()
    await redrive(stack.kafka, [letter])
    [routed] = await eventually(lambda: _routed(stack, report))
    assert routed.json()["office"]["code"] == "VTA-OST"
