"""Operators see what the issues promise on /metrics. (The suite runs the three services in one
process, so each /metrics shows the shared registry; series carry a service label where
several services report the same metric.)"""

import re
from pathlib import Path

import promql_parser
import pytest
import yaml

from conftest import API_KEY, Stack
from devstack.testing import eventually

EXPECTED = {
    "intake": [
        "mm_http_requests",
        "mm_http_request_duration_seconds",
        "mm_reports_accepted",
        "mm_reports_refused",
        "mm_photos",
        "mm_outbox_backlog",
        "mm_outbox_oldest_age_seconds",
        "mm_reports_resubmitted",
        "mm_ticket_transitions",
        "mm_open_ticket_age_seconds",
        "mm_open_tickets",
    ],
    "geo_router": [
        "mm_reports_routed",
        "mm_reports_routing_failed",
        "mm_routing_batch_seconds",
        "mm_routing_batch_size",
        "mm_routing_cache_age_seconds",
        "mm_consumer_lag_messages",
    ],
    "notifier": [
        "mm_notifications",
        "mm_notification_delivery_seconds",
        "mm_messages_dead_lettered",
    ],
}


@pytest.mark.parametrize("service", EXPECTED)
async def test_every_promised_metric_is_exposed(stack: Stack, service: str) -> None:
    text = (await getattr(stack, service).get("/metrics")).text
    declared = set(re.findall(r"^# TYPE (\S+)", text, flags=re.M))
    assert set(EXPECTED[service]) <= {re.sub(r"_total$", "", name) for name in declared}


def value(text: str, series: str) -> float:
    found = re.search(rf"^{re.escape(series)} (\S+)$", text, flags=re.M)
    return float(found.group(1)) if found else 0.0


async def test_a_report_moves_the_counters(stack: Stack) -> None:
    before = (await stack.intake.get("/metrics")).text
    response = await stack.intake.post(
        "/open311/v2/requests.json",
        data={
            "api_key": API_KEY,
            "service_code": "009",
            "lat": "51.3397",
            "long": "12.3731",
            "email": "metrics@example.org",
        },
    )
    assert response.status_code == 201
    accepted = 'mm_reports_accepted_total{service_code="009"}'
    routed = 'mm_reports_routed_total{jurisdiction="leipzig",office="ASG"}'
    sent = 'mm_notifications_total{channel="email",outcome="sent"}'
    request = (
        'mm_http_requests_total{method="POST",route="/open311/v2/requests.{fmt}",'
        'service="intake",status="201"}'
    )

    async def counted():  # type: ignore[no-untyped-def]
        after = (await stack.intake.get("/metrics")).text
        return all(value(after, s) > value(before, s) for s in (accepted, routed, sent, request))

    await eventually(counted)


ALERTS = Path(__file__).resolve().parents[1] / "deploy" / "prometheus" / "alerts.yml"


async def test_every_alert_parses_and_watches_metrics_that_exist(stack: Stack) -> None:
    exposed = {"up"}  # Prometheus' own, per scrape target
    for service in EXPECTED:
        text = (await getattr(stack, service).get("/metrics")).text
        for family, kind in re.findall(r"^# TYPE (\S+) (\S+)", text, flags=re.M):
            suffixes = {"histogram": ("_bucket", "_sum", "_count")}.get(kind, ("",))
            exposed |= {family + s for s in suffixes} | {family}
    rules = [r for g in yaml.safe_load(ALERTS.read_text())["groups"] for r in g["rules"]]
    assert len(rules) >= 8
    for rule in rules:
        promql_parser.parse(rule["expr"])  # raises on a syntax error
        if "for" in rule:
            promql_parser.parse_duration(rule["for"])
        assert rule["labels"]["severity"] in {"page", "warning"}
        assert rule["annotations"]["summary"]
        assert rule["annotations"]["description"]
        metrics = set(re.findall(r"\b(up|mm_[a-z_]+)\b", rule["expr"]))
        assert metrics, rule["alert"]
        assert metrics <= exposed, (rule["alert"], metrics - exposed)
