"""Nothing accepted is lost: reports are taken while the broker is down and published once it is
back; a report that stays unrouted is published again by the sweeper."""

from datetime import timedelta
from uuid import UUID

import httpx
from asgi_lifespan import LifespanManager

from conftest import API_KEY, REPORTER_TOKEN_SECRET
from devstack.databases import fresh_database
from devstack.processes import ROOT, free_port, start_broker
from devstack.testing import EventTap, eventually
from intake import handlers
from intake.adapters import db
from intake.bootstrap import create_app
from intake.settings import IntakeSettings
from mm_shared.db import create_engine
from mm_shared.events import Topic
from mm_shared.kafka import ensure_topics, wait_for_broker
from mm_shared.outbox import KafkaPublisher, Outbox

DATABASE = "mangelmelder_test_outage"


async def test_reports_accepted_while_the_broker_is_down_are_delivered_after(tmp_path) -> None:  # type: ignore[no-untyped-def]
    url = await fresh_database(DATABASE, services=("intake",))
    port = free_port()
    bootstrap = f"127.0.0.1:{port}"
    logs = ROOT / "var" / "test-log"
    broker = start_broker(port, log_dir=logs)
    await wait_for_broker(bootstrap)
    await ensure_topics(bootstrap)
    app = create_app(
        IntakeSettings(
            database_url=url,
            kafka_bootstrap_servers=bootstrap,
            api_keys=[API_KEY],
            reporter_token_secret=REPORTER_TOKEN_SECRET,
            photo_dir=str(tmp_path),
            resubmit_after_s=3600,
        )
    )
    try:
        async with (
            LifespanManager(app),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://intake"
            ) as client,
        ):
            broker.terminate()
            broker.wait(10)
            ids = []
            for _ in range(3):
                response = await client.post(
                    "/open311/v2/requests.json",
                    data={
                        "api_key": API_KEY,
                        "service_code": "001",
                        "lat": "51.34",
                        "long": "12.37",
                    },
                )
                assert response.status_code == 201
                ids.append(UUID(response.json()[0]["service_request_id"]))

            # The broker comes back (empty: Tansu keeps nothing across a restart).
            broker = start_broker(port, log_dir=logs)
            await wait_for_broker(bootstrap)
            await ensure_topics(bootstrap)
            tap = EventTap(bootstrap)
            async with tap.running([Topic.REPORT_SUBMITTED.value]):

                async def delivered():  # type: ignore[no-untyped-def]
                    return all(tap.about(i, Topic.REPORT_SUBMITTED) for i in ids)

                await eventually(delivered, timeout_s=60)

                # Nobody routes them on this broker: the sweeper publishes them again.
                engine = create_engine(url)
                outbox = Outbox(engine, db.outbox, db.inbox, KafkaPublisher(bootstrap, "t"), "t")
                assert (
                    await handlers.resubmit_unrouted(db.SqlUnitOfWorks(outbox), timedelta(0)) == 3
                )
                await engine.dispose()

                async def resubmitted():  # type: ignore[no-untyped-def]
                    return all(
                        any(r.json()["resubmission"] for r in tap.about(i, Topic.REPORT_SUBMITTED))
                        for i in ids
                    )

                await eventually(resubmitted, timeout_s=30)
    finally:
        broker.terminate()
        broker.wait(10)
