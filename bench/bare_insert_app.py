"""The baseline for intake's figure: a bare FastAPI endpoint that takes the same JSON and does one
INSERT through an asyncpg pool. Run by bench/intake_api.py:
    uvicorn --app-dir bench bare_insert_app:app  (BARE_DSN=postgresql://…)"""

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

DSN = os.environ.get("BARE_DSN", "postgresql://postgres:postgres@127.0.0.1:5432/mangelmelder_bench")
pool: asyncpg.Pool | None = None


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    global pool
    pool = await asyncpg.create_pool(DSN, min_size=10, max_size=10)
    await pool.execute(
        "CREATE TABLE IF NOT EXISTS bare_reports (id uuid PRIMARY KEY, service_code text, "
        "lat float8, long float8, description text)"
    )
    yield
    await pool.close()


# Same FastAPI setting as the services (no OpenTelemetry probing), so the baseline is not
# handicapped by what we switched off.
app = FastAPI(lifespan=lifespan, telemetry={"tracing": False, "metrics": False, "logs": False})


@app.post("/api/v1/reports", status_code=201)
async def create(request: Request) -> JSONResponse:
    body = await request.json()
    report_id = uuid.uuid4()
    assert pool is not None
    await pool.execute(
        "INSERT INTO bare_reports VALUES ($1, $2, $3, $4, $5)",
        report_id,
        body["service_code"],
        float(body["lat"]),
        float(body["long"]),
        body.get("description", ""),
    )
    return JSONResponse({"id": str(report_id)}, status_code=201)
