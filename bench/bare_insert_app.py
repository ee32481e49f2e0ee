"""The baseline for intake's figure: a bare FastAPI endpoint that takes the same form and does one
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


app = FastAPI(lifespan=lifespan)


@app.post("/open311/v2/requests.json", status_code=201)
async def create(request: Request) -> JSONResponse:
    form = await request.form()
    report_id = uuid.uuid4()
    assert pool is not None
    await pool.execute(
        "INSERT INTO bare_reports VALUES ($1, $2, $3, $4, $5)",
        report_id,
        form.get("service_code"),
        float(str(form.get("lat"))),
        float(str(form.get("long"))),
        form.get("description"),
    )
    return JSONResponse([{"service_request_id": str(report_id)}], status_code=201)
