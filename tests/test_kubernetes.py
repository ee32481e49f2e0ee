"""The Kubernetes deployment (deploy/kubernetes/), rendered offline with `kubectl kustomize`:
built-in kinds valid against Kubernetes' schemas (kubernetes-validate), every topic and consumer
group of the code with its resource, probes, measured requests and limits, disruption budgets,
autoscalers and network policies as docs/operations.md describes them."""

from __future__ import annotations

import copy
import functools
import json
import subprocess
from typing import Any

import kubernetes_validate
import pytest
import yaml
from faststream.kafka import KafkaBroker
from faststream.kafka.publisher.usecase import LogicPublisher
from faststream.kafka.subscriber.usecase import LogicSubscriber

from devstack.processes import ROOT
from geo_router.bootstrap import asyncapi_app as geo_router_app
from intake.bootstrap import asyncapi_app as intake_app
from mm_shared.events import COMPACTED_TOPICS, TOPIC_PARTITIONS, Topic
from notifier.bootstrap import asyncapi_app as notifier_app

KUBERNETES = ROOT / "deploy" / "kubernetes"
OVERLAYS = ["leipzig", "germany"]
KUBERNETES_VERSION = "1.31.0"
SERVICES = {"intake": 8000, "geo-router": 8001, "notifier": 8002, "web": 8003}
PREFIX = {"intake": "INTAKE", "geo-router": "GEO_ROUTER", "notifier": "NOTIFIER"}


@functools.cache
def render(overlay: str) -> list[dict[str, Any]]:
    out = subprocess.run(
        ["kubectl", "kustomize", str(KUBERNETES / "overlays" / overlay)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def of_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def env_of(deployment: dict[str, Any]) -> dict[str, Any]:
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_built_in_kinds_are_valid(overlay: str) -> None:
    custom = {"Kafka", "KafkaNodePool", "KafkaTopic", "Cluster", "ScheduledBackup"}
    custom |= {"ServiceMonitor", "PrometheusRule"}
    validated = 0
    for doc in render(overlay):
        if doc["kind"] in custom:
            continue
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        assert doc["metadata"].get("namespace") or doc["kind"] == "Namespace", doc["kind"]
        validated += 1
    assert validated >= 20


def test_the_validator_refuses_a_broken_manifest() -> None:
    deployment = copy.deepcopy(of_kind(render("leipzig"), "Deployment")["intake"])
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["paht"] = (
        "/healthz"
    )
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


def consumers_and_producers() -> dict[str, tuple[dict[str | None, set[str]], set[str]]]:
    """Per service, from its real broker: topics consumed per consumer group (None: read by
    every instance without a group) and topics published."""
    found = {}
    for name, app in (
        ("intake", intake_app),
        ("geo-router", geo_router_app),
        ("notifier", notifier_app),
    ):
        broker = app().broker
        assert isinstance(broker, KafkaBroker)
        groups: dict[str | None, set[str]] = {}
        for subscriber in broker.subscribers:
            assert isinstance(subscriber, LogicSubscriber)
            groups.setdefault(subscriber.group_id, set()).update(subscriber.topic_names)
        published = set()
        for publisher in broker.publishers:
            assert isinstance(publisher, LogicPublisher)
            published.add(publisher.topic)
        found[name] = (groups, published)
    return found


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_topic_and_consumer_group_has_its_resource(overlay: str) -> None:
    docs = render(overlay)
    topics = {t["spec"]["topicName"]: t["spec"] for t in of_kind(docs, "KafkaTopic").values()}
    for topic in Topic:
        spec = topics[topic.value]
        assert spec["partitions"] == TOPIC_PARTITIONS[topic], topic
        assert spec["replicas"] == 3
        assert spec["config"]["min.insync.replicas"] == 2
        compacted = spec["config"].get("cleanup.policy") == "compact"
        assert compacted == (topic in COMPACTED_TOPICS), topic
    assert set(topics) == {t.value for t in Topic}

    deployments = of_kind(docs, "Deployment")
    autoscalers = of_kind(docs, "HorizontalPodAutoscaler")
    for service, (groups, published) in consumers_and_producers().items():
        assert published <= set(topics), (service, published - set(topics))
        for group, consumed in groups.items():
            assert consumed <= set(topics), (service, consumed - set(topics))
            if group is None:
                continue
            # The group the code names is the one the deployment runs under.
            assert env_of(deployments[service])[f"{PREFIX[service]}_CONSUMER_GROUP"] == group
            # Instances beyond the partitions of a group's topics would get none of them and
            # only stand by; where the group's work is all a service does, it never runs more.
            if service not in autoscalers:
                bound = max(TOPIC_PARTITIONS[Topic(t)] for t in consumed)
                assert deployments[service]["spec"]["replicas"] <= bound, (service, group)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_service_is_probed_budgeted_and_sized(overlay: str) -> None:
    docs = render(overlay)
    deployments = of_kind(docs, "Deployment")
    budgets = {
        d["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"]
        for d in of_kind(docs, "PodDisruptionBudget").values()
    }
    autoscalers = of_kind(docs, "HorizontalPodAutoscaler")
    assert set(deployments) == set(SERVICES)
    measurement = {"leipzig": "resources.json", "germany": "resources-germany.json"}[overlay]
    measured = json.loads((ROOT / "bench" / "results" / measurement).read_text())
    for name, port in SERVICES.items():
        spec = deployments[name]["spec"]["template"]["spec"]
        container = spec["containers"][0]
        assert container["ports"] == [{"name": "http", "containerPort": port}]
        for probe in ("readinessProbe", "livenessProbe"):
            assert container[probe]["httpGet"] == {"path": "/healthz", "port": "http"}, name
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert name in budgets
        resources = container["resources"]
        assert set(resources) == {"requests", "limits"}
        if name in measured["services"]:  # web is not measured yet: docs/operations.md
            peak = measured["services"][name]["rss_peak_mib"]
            assert mebibytes(resources["requests"]["memory"]) >= peak * 1.2, name
            assert mebibytes(resources["limits"]["memory"]) >= peak * 2, name
    assert set(autoscalers) == {"intake", "web"}
    for name, hpa in autoscalers.items():
        assert hpa["spec"]["scaleTargetRef"]["name"] == name
        assert "replicas" not in deployments[name]["spec"], "the autoscaler owns replicas"


def mebibytes(quantity: str) -> float:
    units = {"Mi": 1, "Gi": 1024}
    return float(quantity[:-2]) * units[quantity[-2:]]


def test_network_policies_let_domain_services_reach_only_kafka_and_postgres() -> None:
    policies = of_kind(render("leipzig"), "NetworkPolicy")
    deny = policies["default-deny"]["spec"]
    assert deny["policyTypes"] == ["Ingress", "Egress"]
    assert "ingress" not in deny
    assert "egress" not in deny
    domain = [
        p["spec"]
        for p in policies.values()
        if p["spec"]["podSelector"].get("matchLabels") == {"mangelmelder/tier": "domain"}
        and "Egress" in p["spec"]["policyTypes"]
    ]
    peers = [peer for p in domain for rule in p["egress"] for peer in rule["to"]]
    assert [peer["podSelector"]["matchLabels"] for peer in peers] == [
        {"strimzi.io/cluster": "mangelmelder", "strimzi.io/kind": "Kafka"},
        {"cnpg.io/cluster": "mangelmelder-db"},
    ]
    web = policies["web-to-services"]["spec"]["egress"]
    assert web == [
        {
            "to": [{"podSelector": {"matchLabels": {"mangelmelder/tier": "domain"}}}],
            "ports": [{"protocol": "TCP", "port": "http"}],
        }
    ]
    # Kafka's and PostgreSQL's pods are not behind the platform's default deny.
    for doc in render("leipzig"):
        if doc["kind"] in {"Kafka", "KafkaNodePool", "Cluster"}:
            assert "app.kubernetes.io/part-of" not in doc["metadata"].get("labels", {})


def test_the_database_is_postgis_and_kafka_keeps_two_in_sync_replicas() -> None:
    docs = render("leipzig")
    cluster = of_kind(docs, "Cluster")["mangelmelder-db"]["spec"]
    assert "postgis" in cluster["imageName"]
    assert (
        "CREATE EXTENSION IF NOT EXISTS postgis"
        in cluster["bootstrap"]["initdb"]["postInitApplicationSQL"]
    )
    kafka = of_kind(docs, "Kafka")["mangelmelder"]["spec"]["kafka"]["config"]
    assert kafka["min.insync.replicas"] == 2
    assert kafka["default.replication.factor"] == 3
    assert kafka["auto.create.topics.enable"] is False
    assert of_kind(docs, "KafkaNodePool")["dual-role"]["spec"]["replicas"] >= 3
