"""Prometheus for the local stack and the tests, and the service level objectives' rules.

The objectives (docs/operations.md) are data here; ``python -m devstack.monitoring rules``
writes their recording and burn-rate alert rules to ``deploy/prometheus/slo.yml`` and, with the
cause alerts of ``deploy/prometheus/alerts.yml``, the Prometheus Operator's ``PrometheusRule``
under ``deploy/kubernetes/``. Tests check that the committed files are what this module writes,
and run a copy with every window scaled down against a running stack."""

from __future__ import annotations

import argparse
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from devstack.processes import ROOT, VAR, spawn, wait_for_port

PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
CAUSE_RULES = PROMETHEUS_DIR / "alerts.yml"
SLO_RULES = PROMETHEUS_DIR / "slo.yml"
K8S_RULES = ROOT / "deploy" / "kubernetes" / "base" / "monitoring" / "prometheus-rule.yaml"
JOB = "mangelmelder"

# What a submission is: the two POSTs that create a report (the city app's and Open311's).
SUBMISSIONS = 'service="intake", method="POST", route=~"/api/v1/reports|/open311/v2/requests.*"'


@dataclass(frozen=True)
class Objective:
    """One SLO: ``error_ratio`` is PromQL for the bad fraction, its range written ``[w]``."""

    name: str  # recording rules are slo:<name>:ratio_rate<window>
    alert: str  # alerts are <alert>BudgetBurnFast (page) and ...BudgetBurnSlow (warning)
    target: float
    summary: str
    error_ratio: str


OBJECTIVES = (
    Objective(
        name="submission_errors",
        alert="Submissions",
        target=0.999,
        summary="submissions answered with a 5xx",
        error_ratio=(
            f'sum(rate(mm_http_requests_total{{{SUBMISSIONS}, status=~"5.."}}[w]))'
            f" / sum(rate(mm_http_requests_total{{{SUBMISSIONS}}}[w]))"
        ),
    ),
    Objective(
        # Reports never assigned (geo-router down, events stuck) are bad too: timely
        # assignments are compared with accepted reports, not with assignments made.
        name="assignment_late",
        alert="Assignment",
        target=0.99,
        summary="reports not assigned to an office within 60 s",
        error_ratio=(
            'clamp_min(1 - sum(rate(mm_report_assignment_seconds_bucket{le="60.0"}[w]))'
            " / sum(rate(mm_reports_accepted_total[w])), 0)"
        ),
    ),
    Objective(
        # Delivered late, or parked after the last attempt (it never arrives).
        name="notification_late",
        alert="Notification",
        target=0.99,
        summary="status-change mails not at the reporter's mail server within 5 min",
        error_ratio=(
            '(sum(rate(mm_notification_delivery_seconds_count{channel="email"}[w]))'
            ' - sum(rate(mm_notification_delivery_seconds_bucket{channel="email", le="300.0"}[w]))'
            ' + (sum(rate(mm_notifications_total{channel="email", outcome="parked"}[w])) or vector(0)))'
            ' / (sum(rate(mm_notification_delivery_seconds_count{channel="email"}[w]))'
            ' + (sum(rate(mm_notifications_total{channel="email", outcome="parked"}[w])) or vector(0)))'
        ),
    ),
)

# The SRE workbook's multiwindow, multi-burn-rate alerts: (burn rate, long, short window).
FAST = ((14.4, "1h", "5m"), (6.0, "6h", "30m"))  # 2 % and 5 % of a 30-day budget: page
SLOW = ((3.0, "1d", "2h"), (1.0, "3d", "6h"))  # 10 % each: a ticket
WINDOWS = ("5m", "30m", "1h", "2h", "6h", "1d", "3d", "30d")
FOR = {"Fast": "2m", "Slow": "15m"}

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def seconds(duration: str) -> int:
    number, unit = re.fullmatch(r"(\d+)([smhd])", duration).groups()  # type: ignore[union-attr]
    return int(number) * _UNITS[unit]


def duration(total_s: int) -> str:
    for unit in ("d", "h", "m"):
        if total_s % _UNITS[unit] == 0:
            return f"{total_s // _UNITS[unit]}{unit}"
    return f"{total_s}s"


def slo_rules(scale: int = 1) -> dict[str, Any]:
    """Recording and alerting rules for every objective. ``scale`` divides every window and
    ``for`` (tests watch a whole burn in a minute); the rule names keep the nominal windows."""

    def window(w: str) -> str:
        return duration(max(seconds(w) // scale, 1))

    recording: list[dict[str, Any]] = []
    alerting: list[dict[str, Any]] = []
    for slo in OBJECTIVES:
        budget = round(1 - slo.target, 6)
        for w in WINDOWS:
            recording.append(
                {
                    "record": f"slo:{slo.name}:ratio_rate{w}",
                    "expr": slo.error_ratio.replace("[w]", f"[{window(w)}]"),
                }
            )
        recording.append(
            {
                "record": f"slo:{slo.name}:error_budget_remaining",
                "expr": f"1 - slo:{slo.name}:ratio_rate30d / {budget}",
            }
        )
        for speed, pairs, severity in (("Fast", FAST, "page"), ("Slow", SLOW, "warning")):
            conditions = [
                f"(slo:{slo.name}:ratio_rate{long} > {rate} * {budget}"
                f" and slo:{slo.name}:ratio_rate{short} > {rate} * {budget})"
                for rate, long, short in pairs
            ]
            horizon = "hours" if speed == "Fast" else "days"
            alerting.append(
                {
                    "alert": f"{slo.alert}BudgetBurn{speed}",
                    "expr": " or ".join(conditions),
                    "for": window(FOR[speed]),
                    "labels": {"severity": severity, "slo": slo.name},
                    "annotations": {
                        "summary": (
                            f"{slo.summary}: {{{{ $value | humanizePercentage }}}} "
                            f"(objective: {slo.target * 100:g} % good)"
                        ),
                        "description": (
                            f"At this rate the 30-day error budget of {budget * 100:g} % is gone in "
                            f"{horizon}. docs/operations.md says where to look first."
                        ),
                    },
                }
            )
    return {
        "groups": [
            {"name": "mangelmelder-slo-recording", "rules": recording},
            {"name": "mangelmelder-slo-alerts", "rules": alerting},
        ]
    }


HEADER = (
    "# Generated by `python -m devstack.monitoring rules` from devstack/monitoring.py (the SLOs\n"
    "# of docs/operations.md); edit there. tests/test_alerts.py checks that it is current.\n"
)


def dump(document: dict[str, Any]) -> str:
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=10_000)


def prometheus_rule() -> dict[str, Any]:
    """The Prometheus Operator's resource with the cause alerts and the SLO rules."""
    causes = yaml.safe_load(CAUSE_RULES.read_text())
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "mangelmelder", "labels": {"app.kubernetes.io/part-of": JOB}},
        "spec": {"groups": causes["groups"] + slo_rules()["groups"]},
    }


def write_rules() -> list[Path]:
    SLO_RULES.write_text(HEADER + dump(slo_rules()))
    K8S_RULES.parent.mkdir(parents=True, exist_ok=True)
    K8S_RULES.write_text(HEADER + dump(prometheus_rule()))
    return [SLO_RULES, K8S_RULES]


def prometheus_config(
    targets: dict[str, str], rule_files: list[Path], interval: str = "15s"
) -> dict[str, Any]:
    """A scrape config of the stack's services (name → host:port), as in the compose file."""
    return {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "rule_files": [str(p) for p in rule_files],
        "scrape_configs": [
            {
                "job_name": JOB,
                "static_configs": [
                    {"targets": [address], "labels": {"service": name}}
                    for name, address in targets.items()
                ],
            }
        ],
    }


def start_prometheus(
    port: int,
    targets: dict[str, str],
    home: Path,
    rule_files: list[Path] | None = None,
    interval: str = "15s",
    log_dir: Path = VAR / "log",
) -> subprocess.Popen[bytes]:
    """Debian's Prometheus (``/usr/bin/prometheus``) with its config and data under ``home``."""
    home.mkdir(parents=True, exist_ok=True)
    config = home / "prometheus.yml"
    rules = rule_files if rule_files is not None else [CAUSE_RULES, SLO_RULES]
    config.write_text(dump(prometheus_config(targets, rules, interval)))
    process = spawn(
        f"prometheus-{port}",
        [
            "prometheus",
            f"--config.file={config}",
            f"--storage.tsdb.path={home / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--storage.tsdb.retention.time=15d",
        ],
        log_dir=log_dir,
    )
    wait_for_port(port, what="prometheus")
    return process


def main() -> None:
    parser = argparse.ArgumentParser(prog="devstack.monitoring")
    parser.add_argument("command", choices=["rules"])
    parser.parse_args()
    for path in write_rules():
        print(path.relative_to(ROOT))


if __name__ == "__main__":
    main()
