"""The alert rules: valid, unit-tested by promtool (each alert fires, and stays quiet just short
of it), current with the objectives in devstack/monitoring.py, and alive against a running
stack: geo-router stops while reports arrive, the assignment objective's page fires; it starts
again, the page resolves."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import yaml

from conftest import RunningStack
from devstack import monitoring
from devstack.testing import MARKT, eventually

RULE_FILES = [monitoring.CAUSE_RULES, monitoring.SLO_RULES]
UNIT_TESTS = monitoring.PROMETHEUS_DIR / "tests.yml"


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["promtool", *args], capture_output=True, text=True, check=False, timeout=120
    )


def test_rules_are_valid() -> None:
    result = promtool("check", "rules", *map(str, RULE_FILES))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_fires_and_stays_quiet_in_promtool_unit_tests() -> None:
    result = promtool("test", "rules", str(UNIT_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    alerts = {
        rule["alert"]
        for path in RULE_FILES
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
        if "alert" in rule
    }
    fires: set[str] = set()
    quiet: set[str] = set()
    for case in yaml.safe_load(UNIT_TESTS.read_text())["tests"]:
        for check in case.get("alert_rule_test", []):
            (fires if check["exp_alerts"] else quiet).add(check["alertname"])
    assert alerts - fires == set(), "alerts without a test that they fire"
    assert alerts - quiet == set(), "alerts without a test that they stay quiet"


def test_generated_rules_are_current() -> None:
    """slo.yml and the PrometheusRule are written by ``python -m devstack.monitoring rules``."""
    assert monitoring.SLO_RULES.read_text() == monitoring.HEADER + monitoring.dump(
        monitoring.slo_rules()
    )
    assert monitoring.K8S_RULES.read_text() == monitoring.HEADER + monitoring.dump(
        monitoring.prometheus_rule()
    )


def test_scaled_rules_differ_only_in_windows() -> None:
    nominal, scaled = monitoring.slo_rules(), monitoring.slo_rules(scale=monitoring.seconds("1m"))
    alert = scaled["groups"][1]["rules"][2]
    assert alert["alert"] == "AssignmentBudgetBurnFast"
    assert alert["for"] == "2s"
    records = {r["record"]: r["expr"] for r in scaled["groups"][0]["rules"]}
    assert "[1m]" in records["slo:assignment_late:ratio_rate1h"]
    assert "[5s]" in records["slo:assignment_late:ratio_rate5m"]
    assert [r.get("record") for g in nominal["groups"] for r in g["rules"]] == [
        r.get("record") for g in scaled["groups"] for r in g["rules"]
    ]


PAGE = "AssignmentBudgetBurnFast"


@contextlib.asynccontextmanager
async def reports_arriving(intake: str, every_s: float = 0.1) -> AsyncIterator[list[int]]:
    """Citizens submitting reports, one every ``every_s``; yields the answers' status codes."""
    statuses: list[int] = []

    async def submit() -> None:
        async with httpx.AsyncClient(base_url=intake, timeout=10) as client:
            while True:
                response = await client.post(
                    "/api/v1/reports",
                    json={"service_code": "001", "lat": MARKT[0], "long": MARKT[1]},
                    headers={"X-Acknowledge-Duplicate": "true"},
                )
                statuses.append(response.status_code)
                await asyncio.sleep(every_s)

    task = asyncio.create_task(submit())
    try:
        yield statuses
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def query(prometheus: httpx.AsyncClient, path: str, **params: str) -> Any:
    response = await prometheus.get(path, params=params)
    response.raise_for_status()
    return response.json()["data"]


async def alert_state(prometheus: httpx.AsyncClient, name: str) -> str | None:
    alerts = (await query(prometheus, "/api/v1/alerts"))["alerts"]
    return next((a["state"] for a in alerts if a["labels"]["alertname"] == name), None)


async def ratio(prometheus: httpx.AsyncClient, record: str) -> float | None:
    found = (await query(prometheus, "/api/v1/query", query=record))["result"]
    return float(found[0]["value"][1]) if found else None


async def test_geo_router_down_pages_and_the_page_resolves(running_stack: RunningStack) -> None:
    intake, geo_router = running_stack.services["intake"], running_stack.services["geo-router"]
    threshold = 14.4 * 0.01
    async with (
        httpx.AsyncClient(base_url=running_stack.prometheus, timeout=5) as prometheus,
        reports_arriving(intake.url) as statuses,
    ):
        # Healthy: reports are assigned within a minute, the page stays quiet.
        async def healthy() -> bool:
            short = await ratio(prometheus, "slo:assignment_late:ratio_rate5m")
            long = await ratio(prometheus, "slo:assignment_late:ratio_rate1h")
            return short is not None and long is not None and max(short, long) < threshold

        async def page_is(state: str | None) -> bool:
            return await alert_state(prometheus, PAGE) == state

        await eventually(healthy, timeout_s=30, interval_s=0.5)
        # Rules and alerts are evaluated apart: the first reports (sent while consumers were
        # still joining) may leave the page pending for an evaluation or two after the ratios
        # turned healthy; it must go quiet.
        await eventually(lambda: page_is(None), timeout_s=30, interval_s=0.5)

        await asyncio.to_thread(geo_router.stop)
        try:
            await eventually(lambda: page_is("firing"), timeout_s=60, interval_s=0.5)
        finally:
            await asyncio.to_thread(geo_router.start)
        await asyncio.to_thread(geo_router.wait_healthy)
        await eventually(lambda: page_is(None), timeout_s=60, interval_s=0.5)
        assert set(statuses) == {201}, "intake kept accepting reports throughout"


def test_make_up_configures_prometheus_for_every_service_and_web(tmp_path: Path) -> None:
    from devstack.__main__ import SCRAPED

    config = monitoring.prometheus_config(
        {name: f"127.0.0.1:{port}" for name, port in SCRAPED.items()}, RULE_FILES
    )
    path = tmp_path / "prometheus.yml"
    path.write_text(monitoring.dump(config))
    result = promtool("check", "config", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    jobs = config["scrape_configs"]
    assert [j["job_name"] for j in jobs] == ["mangelmelder"]  # as the alerts' up{job=...}
    labelled = {c["labels"]["service"]: c["targets"] for c in jobs[0]["static_configs"]}
    assert labelled == {
        "intake": ["127.0.0.1:8000"],
        "geo-router": ["127.0.0.1:8001"],
        "notifier": ["127.0.0.1:8002"],
        "web": ["127.0.0.1:8003"],
    }
