"""Schemathesis against a service's own OpenAPI document: generated requests, valid and invalid,
each answer checked against the document (its status documented, its content type, its body's
schema) and for a server error. Failures are collected, not raised at the first: one run shows
every kind of defect, each with a request that reproduces it.

Used by tests/test_api_conformance.py (a small run in ``make test``, a large one in
``make fuzz``); the services run on a live server, since the stack's database connections belong
to the test's event loop, and schemathesis sends its requests from a worker thread."""

from __future__ import annotations

import time
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

CHECKS: dict[str, Callable[..., Any]] = {
    "not_a_server_error": not_a_server_error,
    "status_code_conformance": status_code_conformance,
    "content_type_conformance": content_type_conformance,
    "response_schema_conformance": response_schema_conformance,
}

#: Changes a generated case before it is sent (e.g. a valid api_key in half the forms).
Prepare = Callable[[schemathesis.Case[Any]], None]


@dataclass
class Failure:
    service: str
    operation: str
    check: str
    message: str
    reproduce: str


@dataclass
class Tally:
    """Requests per (service, operation), check outcomes per (service, operation, check)."""

    requests: Counter[tuple[str, str]] = field(default_factory=Counter)
    passed: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    failed: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    seconds: dict[tuple[str, str], float] = field(default_factory=dict)
    #: Operations and modes for which nothing could be generated, and why.
    not_generated: dict[tuple[str, str, str], str] = field(default_factory=dict)
    #: One example per distinct failure (service, operation, check, first line of the message).
    failures: dict[tuple[str, str, str, str], Failure] = field(default_factory=dict)

    @property
    def total_requests(self) -> int:
        return sum(self.requests.values())

    def report(self) -> str:
        """Counts per service, operation and check, then each distinct failure."""
        lines = [f"{'service':<11} {'operation':<58} {'requests':>8} {'s':>5}  checks failed/run"]
        for (service, operation), sent in sorted(self.requests.items()):
            outcomes = ", ".join(
                f"{name} {self.failed[service, operation, name]}/"
                f"{self.failed[service, operation, name] + self.passed[service, operation, name]}"
                for name in CHECKS
            )
            took = self.seconds.get((service, operation), 0.0)
            lines.append(f"{service:<11} {operation:<58} {sent:>8} {took:>5.1f}  {outcomes}")
        lines.append(
            f"total: {self.total_requests} requests, {sum(self.failed.values())} failed checks, "
            f"{len(self.failures)} distinct failures"
        )
        for (service, operation, mode), why in sorted(self.not_generated.items()):
            lines.append(f"not generated: {service} {operation} {mode}: {why}")
        for failure in self.failures.values():
            lines.append(
                f"FAIL {failure.service} {failure.operation} {failure.check}: {failure.message}\n"
                f"     {failure.reproduce}"
            )
        return "\n".join(lines)


def _first_line(error: BaseException) -> str:
    inner = error
    while isinstance(inner, BaseExceptionGroup) and inner.exceptions:
        inner = inner.exceptions[0]
    text = str(inner).strip() or type(inner).__name__
    return " ".join(text.splitlines()[:3])[:300]


def _plain_string(schema: dict[str, Any]) -> bool:
    kinds = schema.get("anyOf", [schema])
    return all(k.get("type") in ("string", "null") and len(k) == 1 for k in kinds)


def _can_be_invalid(operation: dict[str, Any]) -> bool:
    """Whether a request can break the document at all: not when every parameter is any
    string (generating invalid ones would only exhaust hypothesis's attempts)."""
    if operation.get("requestBody"):
        return True
    return any(
        not _plain_string({k: v for k, v in p.get("schema", {}).items() if k != "title"})
        for p in operation.get("parameters", [])
    )


def _exerciser(
    service: str,
    name: str,
    base_url: str,
    session: requests.Session,
    headers: dict[str, str] | None,
    prepare: Prepare | None,
    tally: Tally,
) -> Callable[[schemathesis.Case[Any]], None]:
    """Send one case and record its checks' outcomes."""

    def exercise(case: schemathesis.Case[Any]) -> None:
        if prepare is not None:
            prepare(case)
        try:
            response = case.call(base_url=base_url, session=session, headers=headers, timeout=30)
        except requests.RequestException as error:
            tally.requests[service, name] += 1
            key = (service, name, "not_a_server_error", _first_line(error))
            tally.failed[service, name, "not_a_server_error"] += 1
            tally.failures.setdefault(key, Failure(*key, case.as_curl_command(headers=headers)))
            return
        tally.requests[service, name] += 1
        for check_name, check in CHECKS.items():
            try:
                case.validate_response(response, checks=[check], headers=headers)
            except (Exception, BaseExceptionGroup) as error:  # FailureGroup is the latter
                tally.failed[service, name, check_name] += 1
                message = f"{response.status_code}: {_first_line(error)}"
                key = (service, name, check_name, message)
                tally.failures.setdefault(key, Failure(*key, case.as_curl_command(headers=headers)))
            else:
                tally.passed[service, name, check_name] += 1

    return exercise


def fuzz(
    service: str,
    document: dict[str, Any],
    base_url: str,
    *,
    requests_per_operation: int,
    headers: dict[str, str] | None = None,
    prepare: Prepare | None = None,
    tally: Tally | None = None,
) -> Tally:
    """Send about ``requests_per_operation`` generated requests to each operation of
    ``document`` (half valid, half invalid), and check every answer. Blocking: run it in a
    thread while the service's event loop serves."""
    tally = tally if tally is not None else Tally()
    schema = schemathesis.openapi.from_dict(document)
    session = requests.Session()
    for result in schema.get_all_operations():
        operation = result.ok()  # type: ignore[union-attr]
        name = f"{operation.method.upper()} {operation.path}"
        modes = [GenerationMode.POSITIVE]
        if _can_be_invalid(operation.definition.raw):
            modes.append(GenerationMode.NEGATIVE)
        for mode in modes:
            budget = max(1, requests_per_operation // len(modes))

            run = settings(
                max_examples=budget,
                deadline=None,
                database=None,
                derandomize=False,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
            )(
                given(operation.as_strategy(generation_mode=mode))(
                    _exerciser(service, name, base_url, session, headers, prepare, tally)
                )
            )
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                started = time.perf_counter()
                try:
                    run()
                except (Exception, BaseExceptionGroup) as error:  # FailureGroup is the latter
                    tally.not_generated[service, name, mode.value] = _first_line(error)
                took = time.perf_counter() - started
                tally.seconds[service, name] = tally.seconds.get((service, name), 0.0) + took
    return tally
