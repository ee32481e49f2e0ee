"""Two geo-router instances in one consumer group route every report exactly once."""

from asgi_lifespan import LifespanManager

from conftest import Stack, service_settings
from devstack.testing import eventually, publish, submitted
from geo_router.bootstrap import create_app
from mm_shared.events import Topic


async def test_two_instances_share_the_work_and_route_each_report_once(stack: Stack) -> None:
    settings = service_settings(stack.kafka, stack.database_url, stack.smtp.port)["geo_router"]
    second = create_app(settings)  # type: ignore[arg-type]
    async with LifespanManager(second):
        [subscriber] = [s for s in second.state.broker.subscribers if s.group_id]

        async def has_partitions():  # type: ignore[no-untyped-def]
            consumer = subscriber.consumer
            return consumer is not None and consumer.assignment()

        await eventually(has_partitions, timeout_s=30)
        events = [submitted(service_code="005") for _ in range(200)]
        await publish(stack.kafka, *events)

        async def all_routed():  # type: ignore[no-untyped-def]
            return all(stack.tap.about(e.report_id, Topic.REPORT_ROUTED) for e in events)

        await eventually(all_routed, timeout_s=30)
        assert all(len(stack.tap.about(e.report_id, Topic.REPORT_ROUTED)) == 1 for e in events)
        assert len(subscriber.consumer.assignment()) < 8  # the partitions really were shared

    # Leave the session's instance as it was: owning every partition again.
    [first] = [s for s in stack.apps["geo_router"].state.broker.subscribers if s.group_id]

    async def owns_all():  # type: ignore[no-untyped-def]
        return first.consumer is not None and len(first.consumer.assignment()) == 8

    await eventually(owns_all, timeout_s=60)
