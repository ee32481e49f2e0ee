"""The three services' OpenAPI documents are contracts: schemathesis generates requests from
each (valid and invalid ones), and every answer must have a documented status, content type and
body, and none may be a server error. ``make fuzz`` runs the same with ten times the requests
(MM_FUZZ_REQUESTS) and prints the counts."""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from uuid import uuid4

import schemathesis
import uvicorn
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import create_async_engine

from conftest import API_KEY, Stack
from devstack.conformance import Prepare, Tally, fuzz
from devstack.processes import free_port
from devstack.testing import eventually
from intake.adapters import staff

#: Requests over the three services; `make test` keeps it near 2,000.
TOTAL_REQUESTS = int(os.environ.get("MM_FUZZ_REQUESTS", "2000"))


@asynccontextmanager
async def live(app: FastAPI) -> AsyncIterator[str]:
    """The stack's app (already started by its fixture) on a loopback port."""
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error", lifespan="off")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 - uvicorn offers no event to wait on
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


async def staff_token(stack: Stack, *offices: str, admin: bool = False) -> str:
    engine = create_async_engine(stack.database_url)
    try:
        async with engine.begin() as conn:
            name = f"conformance-{random.randrange(10**9)}"
            _, token = await staff.create_account(
                conn, name, offices, is_admin=admin, jurisdiction=None if admin else "leipzig"
            )
    finally:
        await engine.dispose()
    return f"Bearer {token}"


def credentials(*authorizations: str) -> Prepare:
    """Most cases carry valid credentials, one of ``authorizations`` (so that protected
    operations are exercised beyond their 401), the rest what was generated."""

    def prepare(case: schemathesis.Case[Any]) -> None:
        if random.random() < 0.25:
            return
        if authorizations:
            authorization = random.choice(authorizations)
            case.headers = {**dict(case.headers or {}), "Authorization": authorization}  # type: ignore[assignment]  # schemathesis annotates a CaseInsensitiveDict and accepts a dict
        if isinstance(case.body, dict) and "api_key" in case.body:
            case.body["api_key"] = API_KEY

    return prepare


async def run_all(stack: Stack) -> Tally:
    # An admin, and an office's member (who is refused other offices' tickets and filters).
    auth = {
        "intake": credentials(
            await staff_token(stack, admin=True), await staff_token(stack, "VTA-OST")
        ),
        "geo_router": credentials(),
        "notifier": credentials("Bearer test-ops"),
    }
    documents = {name: app.openapi() for name, app in stack.apps.items()}
    operations = sum(
        1 for doc in documents.values() for item in doc["paths"].values() for _ in item
    )
    per_operation = max(2, TOTAL_REQUESTS // operations)
    tally = Tally()
    for name, app in stack.apps.items():
        async with live(app) as base_url:
            await asyncio.to_thread(
                fuzz,
                name,
                documents[name],
                base_url,
                requests_per_operation=per_operation,
                prepare=auth[name],
                tally=tally,
            )
    return tally


def test_intake_documents_its_bodies_answers_and_refusals_in_their_real_shape(
    stack: Stack,
) -> None:
    document = stack.apps["intake"].openapi()
    assert "HTTPValidationError" not in str(document), "FastAPI's {detail} 422 is not sent"
    for path, item in document["paths"].items():
        for method, operation in item.items():
            answers = operation["responses"]
            success = [s for s in answers if s.startswith("2")]
            assert success, f"{method} {path} documents no success"
            for status in success:
                assert status == "204" or any(
                    content.get("schema") for content in answers[status]["content"].values()
                ), f"{method} {path} {status} documents no body"
            if path == "/healthz":
                continue
            refusal = answers["503"]["content"]
            if path.startswith("/open311/"):
                assert set(refusal) == {"application/json", "text/xml"}
                assert "422" not in answers, "Open311 answers 400 where others answer 422"
            else:
                assert refusal["application/json"]["schema"]["$ref"].endswith("/ErrorsOut")
    reports = document["paths"]["/api/v1/reports"]["post"]
    assert set(reports["requestBody"]["content"]) == {"application/json", "multipart/form-data"}
    assert {"201", "200", "400", "409", "413", "422", "429"} <= set(reports["responses"])
    open311 = document["paths"]["/open311/v2/requests.{fmt}"]["post"]
    assert "application/x-www-form-urlencoded" in open311["requestBody"]["content"]
    assert set(open311["responses"]["201"]["content"]) == {"application/json", "text/xml"}
    assert {"400", "403", "404", "415", "429", "503"} <= set(open311["responses"])


async def test_non_ascii_credentials_are_refused_not_a_server_error(stack: Stack) -> None:
    """Found by schemathesis: hmac.compare_digest raises TypeError for a str with non-ASCII
    characters, so such a reporter token or operator token was a 500."""
    not_fixed = await stack.intake.post(
        f"/api/v1/reports/{uuid4()}/not-fixed", json={"reporter_token": "Straße"}
    )
    assert not_fixed.status_code == 403, not_fixed.text
    parked = await stack.notifier.get(
        "/v1/notifications/parked", headers=[(b"Authorization", "Bearer Straße".encode())]
    )
    assert parked.status_code == 401, parked.text
    report = await stack.intake.post(
        "/api/v1/reports",
        json={"service_code": "001", "lat": 51.3397, "long": 12.3731, "email": "e@example.org"},
        headers={"X-Acknowledge-Duplicate": "true"},
    )
    assert report.status_code == 201, report.text
    erase = f"/api/v1/reports/{report.json()['id']}/contact/erase"

    async def refused_as_not_theirs() -> bool:
        response = await stack.notifier.post(erase, json={"reporter_token": "Straße"})
        assert response.status_code in (403, 404), response.text
        return response.status_code == 403

    await eventually(refused_as_not_theirs)


async def test_row_ids_beyond_bigint_are_refused_not_a_server_error(stack: Stack) -> None:
    """Found by schemathesis: an id larger than PostgreSQL's BIGINT went to the database
    driver, which raised, and the client got a 500."""
    too_large = 2**64
    admin = {"Authorization": await staff_token(stack, admin=True)}
    canned = f"/api/v1/staff/canned-responses/{too_large}"
    dropped = await stack.intake.delete(canned, headers=admin)
    assert dropped.status_code == 422, dropped.text
    assert dropped.json()["errors"][0]["field"] == "response_id"
    body = {"office_code": "VTA-OST", "title": "t", "body": "b"}
    changed = await stack.intake.put(canned, json=body, headers=admin)
    assert changed.status_code == 422, changed.text
    retried = await stack.notifier.post(
        f"/v1/notifications/{too_large}/retry", headers={"Authorization": "Bearer test-ops"}
    )
    assert retried.status_code == 422, retried.text


async def test_days_out_of_range_are_refused_not_a_server_error(stack: Stack) -> None:
    """Found by schemathesis: from=0001-01-01 (before the first day the database driver takes
    once it is in UTC) and to=9999-12-31 (whose next day does not exist) were 500s."""
    admin = {"Authorization": await staff_token(stack, admin=True)}
    for query in ("from=0001-01-01", "to=9999-12-31"):
        answer = await stack.intake.get(f"/api/v1/staff/statistics?{query}", headers=admin)
        assert answer.status_code == 422, answer.text
    open_data = await stack.intake.get("/api/v1/open-data/reports.csv?since=0001-01-01")
    assert open_data.status_code == 422, open_data.text
    fine = await stack.intake.get("/api/v1/staff/statistics?from=2000-01-01", headers=admin)
    assert fine.status_code == 200, fine.text


async def test_every_answer_is_documented_and_none_is_a_server_error(stack: Stack) -> None:
    await stack.boundary_known()
    tally = await run_all(stack)
    print(tally.report())
    assert tally.total_requests >= TOTAL_REQUESTS // 2
    assert not tally.failures, tally.report()
