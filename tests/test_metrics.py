"""Operators see what the issues promise on /metrics: each service's own endpoint, scraped from
its own process (the services run as `make up` runs them), so a metric counts only where it is
really exposed."""

from __future__ import annotations

import re

import httpx
import promql_parser
import pytest
import sqlalchemy as sa
import yaml
from prometheus_client import REGISTRY

from conftest import RunningStack, Stack
from devstack import monitoring
from devstack.testing import MARKT, eventually, scraped_metrics

#: What each service promises, beside what every service exposes (HTTP, outbox, consumers).
OWN = {
    "intake": [
        "mm_reports_accepted",
        "mm_reports_refused",
        "mm_photos",
        "mm_reports_resubmitted",
        "mm_report_assignment_seconds",
        "mm_ticket_transitions",
        "mm_open_ticket_age_seconds",
        "mm_open_tickets",
        "mm_overdue_tickets",
    ],
    "geo-router": [
        "mm_reports_routed",
        "mm_reports_routing_failed",
        "mm_routing_batch_seconds",
        "mm_routing_batch_size",
        "mm_routing_cache_age_seconds",
    ],
    "notifier": ["mm_notifications", "mm_notification_delivery_seconds"],
}
EVERY = [
    "mm_http_requests",
    "mm_http_request_duration_seconds",
    "mm_outbox_backlog",
    "mm_outbox_oldest_age_seconds",
    "mm_consumer_lag_messages",
    "mm_messages_dead_lettered",
]


def scrape(url: str) -> str:
    return httpx.get(f"{url}/metrics", timeout=10).text


def declared(text: str) -> set[str]:
    return {re.sub(r"_total$", "", n) for n in re.findall(r"^# TYPE (\S+)", text, flags=re.M)}


@pytest.mark.parametrize("service", OWN)
def test_each_service_exposes_its_metrics_and_no_others(
    running_stack: RunningStack, service: str
) -> None:
    exposed = declared(scrape(running_stack.services[service].url))
    assert {*OWN[service], *EVERY} <= exposed
    others = {m for s, metrics in OWN.items() if s != service for m in metrics}
    assert exposed & others == set()


def value(text: str, series: str) -> float:
    found = re.search(rf"^{re.escape(series)} (\S+)$", text, flags=re.M)
    return float(found.group(1)) if found else 0.0


async def test_a_report_moves_the_counters(running_stack: RunningStack) -> None:
    intake, geo_router, notifier = (
        running_stack.services[s] for s in ("intake", "geo-router", "notifier")
    )
    accepted = 'mm_reports_accepted_total{service_code="009"}'
    assigned = "mm_report_assignment_seconds_count"
    timely = 'mm_report_assignment_seconds_bucket{le="60.0"}'  # the SLO's "good" series
    request = (
        'mm_http_requests_total{method="POST",route="/open311/v2/requests.{fmt}",'
        'service="intake",status="201"}'
    )
    routed = 'mm_reports_routed_total{jurisdiction="leipzig",office="ASG"}'
    sent = 'mm_notifications_total{channel="email",outcome="sent"}'
    delivered = 'mm_notification_delivery_seconds_bucket{channel="email",le="300.0"}'
    services = (intake, geo_router, notifier)
    async with httpx.AsyncClient(timeout=10) as client:
        before = {s.name: (await client.get(f"{s.url}/metrics")).text for s in services}
        response = await client.post(
            f"{intake.url}/open311/v2/requests.json",
            data={
                "api_key": "local-dev",
                "service_code": "009",
                "lat": str(MARKT[0]),
                "long": str(MARKT[1]),
                "email": "metrics@example.org",
            },
            headers={"X-Acknowledge-Duplicate": "true"},
        )
        assert response.status_code == 201, response.text
        expected = {
            intake.name: (accepted, assigned, timely, request),
            geo_router.name: (routed,),
            notifier.name: (sent, delivered),
        }

        async def counted() -> bool:
            for service in services:
                after = (await client.get(f"{service.url}/metrics")).text
                old = before[service.name]
                if any(value(after, s) <= value(old, s) for s in expected[service.name]):
                    return False
            return True

        await eventually(counted)


def test_every_rule_watches_metrics_that_exist(running_stack: RunningStack) -> None:
    exposed = {"up"}  # Prometheus' own, per scrape target
    for service in running_stack.services.values():
        exposed |= scraped_metrics(service.url)
    rules = [
        rule
        for path in (monitoring.CAUSE_RULES, monitoring.SLO_RULES)
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
    ]
    recorded = {r["record"] for r in rules if "record" in r}
    assert len([r for r in rules if "alert" in r]) >= 15
    for rule in rules:
        promql_parser.parse(rule["expr"])  # raises on a syntax error
        name = rule.get("alert") or rule["record"]
        if "for" in rule:
            promql_parser.parse_duration(rule["for"])
        if "alert" in rule:
            assert rule["labels"]["severity"] in {"page", "warning"}
            assert rule["annotations"]["summary"]
            assert rule["annotations"]["description"]
        metrics = set(re.findall(r"\b(up|mm_[a-z_]+|slo:[a-z_]+:[a-z_0-9]+)\b", rule["expr"]))
        assert metrics, name
        assert metrics <= exposed | recorded, (name, metrics - exposed - recorded)


async def test_overdue_tickets_are_counted_per_office(stack: Stack) -> None:
    """mm_overdue_tickets counts as the office reminders do (the session's in-process intake)."""
    from intake import handlers
    from intake.adapters import db
    from mm_shared.db import create_engine
    from mm_shared.outbox import KafkaPublisher, Outbox

    response = await stack.intake.post(
        "/api/v1/reports",
        json={"service_code": "006", "lat": MARKT[0], "long": MARKT[1]},
        headers={"X-Acknowledge-Duplicate": "true"},
    )
    assert response.status_code == 201, response.text
    report_id = response.json()["id"]

    async def assigned() -> bool:
        report = (await stack.intake.get(f"/api/v1/reports/{report_id}")).json()
        return bool(report.get("status") == "assigned")

    await eventually(assigned)
    engine = create_engine(stack.database_url)
    outbox = Outbox(engine, db.outbox, db.inbox, KafkaPublisher(stack.kafka, "test"), "test")

    async def overdue_at_srl() -> float:
        await handlers.measure_open_tickets(
            db.SqlUnitOfWorks(outbox), accept_within_working_days=3, work_within_days=14
        )
        sample = REGISTRY.get_sample_value(
            "mm_overdue_tickets",
            {"jurisdiction": "leipzig", "office": "SRL", "reason": "not_accepted"},
        )
        assert sample is not None
        return sample

    try:
        before = await overdue_at_srl()
        async with engine.begin() as conn:
            await conn.execute(
                sa.text(
                    "UPDATE intake.reports SET updated_at = now() - interval '12 days'"
                    " WHERE id = :id"
                ),
                {"id": report_id},
            )
        assert await overdue_at_srl() == before + 1
    finally:
        await engine.dispose()
