"""The Grafana dashboards (deploy/grafana/): every panel's PromQL parses, every metric it names is
exposed by a service (scraped from the running processes; where a panel picks a service by its
label, by that one), every recorded series exists in the rules, and the dashboards show what
operators were promised."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import promql_parser
import pytest
import yaml

from conftest import RunningStack
from devstack import monitoring
from devstack.processes import ROOT
from devstack.testing import scraped_metrics

GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
TARGET_LABELS = {"service", "job", "instance"}  # added by Prometheus per scrape target


def selectors(expr: Any) -> Iterator[promql_parser.VectorSelector]:
    """Every vector selector in a parsed expression."""
    if isinstance(expr, promql_parser.VectorSelector):
        yield expr
    elif isinstance(expr, promql_parser.MatrixSelector):
        yield expr.vector_selector
    elif isinstance(expr, promql_parser.BinaryExpr):
        yield from selectors(expr.lhs)
        yield from selectors(expr.rhs)
    elif isinstance(expr, promql_parser.Call):
        for arg in expr.args:
            yield from selectors(arg)
    elif isinstance(
        expr,
        promql_parser.AggregateExpr
        | promql_parser.ParenExpr
        | promql_parser.UnaryExpr
        | promql_parser.SubqueryExpr,
    ):
        yield from selectors(expr.expr)


def panels() -> Iterator[tuple[str, dict[str, Any]]]:
    for path in DASHBOARDS:
        dashboard = json.loads(path.read_text())
        for panel in dashboard["panels"]:
            yield f"{path.name}: {panel['title']}", panel


def queries() -> Iterator[tuple[str, str]]:
    for where, panel in panels():
        for target in panel["targets"]:
            yield where, target["expr"]


def test_the_dashboards_are_provisioned_with_their_data_source() -> None:
    assert len(DASHBOARDS) >= 2
    sources = yaml.safe_load((GRAFANA / "provisioning/datasources/prometheus.yml").read_text())
    uids = {s["uid"] for s in sources["datasources"]}
    for path in DASHBOARDS:
        dashboard = json.loads(path.read_text())
        ids = [p["id"] for p in dashboard["panels"]]
        assert len(ids) == len(set(ids)), path.name
    for where, panel in panels():
        assert panel["datasource"]["uid"] in uids, where
        assert panel["targets"], where
        assert all(t["datasource"]["uid"] in uids for t in panel["targets"]), where


def test_every_panel_names_metrics_its_services_expose(running_stack: RunningStack) -> None:
    exposure = {
        name: scraped_metrics(service.url) for name, service in running_stack.services.items()
    }
    recorded = {
        rule["record"]
        for group in yaml.safe_load(monitoring.SLO_RULES.read_text())["groups"]
        for rule in group["rules"]
        if "record" in rule
    }
    checked = 0
    for where, expr in queries():
        found = list(selectors(promql_parser.parse(expr)))  # raises on a syntax error
        assert found, (where, expr)
        for selector in found:
            name = selector.name
            assert name, f"{where}: a selector without a metric name: {expr}"
            if name.startswith("slo:"):
                assert name in recorded, (where, name)
                continue
            owners = {s for s, names in exposure.items() if name in names}
            assert owners, f"{where}: no service exposes {name}"
            for matcher in selector.matchers.matchers:
                if matcher.name == "service" and matcher.op == promql_parser.MatchOp.Equal:
                    assert matcher.value in owners, (where, name, matcher.value)
            checked += 1
    assert checked >= 15


WANTED = {
    "pipeline flow": {
        "mm_reports_accepted_total",
        "mm_reports_routed_total",
        "mm_notifications_total",
    },
    "submit → assigned latency": {"mm_report_assignment_seconds_bucket"},
    "outbox age": {"mm_outbox_oldest_age_seconds"},
    "consumer lag": {"mm_consumer_lag_messages"},
    "dead letters": {"mm_messages_dead_lettered_total"},
    "5xx": {"mm_http_requests_total"},
    "open tickets per office": {"mm_open_tickets"},
    "overdue tickets per office": {"mm_overdue_tickets"},
    "error budgets": {f"slo:{slo.name}:error_budget_remaining" for slo in monitoring.OBJECTIVES},
}


@pytest.mark.parametrize("what", WANTED)
def test_the_dashboards_show(what: str) -> None:
    shown = {s.name for _, expr in queries() for s in selectors(promql_parser.parse(expr))}
    assert WANTED[what] <= shown


def test_nothing_in_a_dashboard_loads_from_outside() -> None:
    for path in DASHBOARDS:
        assert not re.search(r"https?://", path.read_text()), path.name
