"""Over HTTP: a submission waits only for its photos' check and stripped original; the display
size and thumbnail come later, from the background worker, which also makes those a previous
process left. Until then the original stands in, and is not cached for good."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
from asgi_lifespan import LifespanManager
from PIL import Image

from conftest import API_KEY, REPORTER_TOKEN_SECRET, TEST_DATABASE
from devstack.databases import fresh_database
from devstack.pictures import phone_jpeg
from devstack.processes import free_port
from devstack.testing import eventually
from intake.bootstrap import create_app
from intake.settings import IntakeSettings

IMMUTABLE = "public, max-age=31536000, immutable"


@asynccontextmanager
async def intake(
    database_url: str, photo_dir: Path, variant_workers: int
) -> AsyncIterator[httpx.AsyncClient]:
    """An intake process of its own; no broker listens (intake serves without one)."""
    app = create_app(
        IntakeSettings(
            database_url=database_url,
            kafka_bootstrap_servers=f"127.0.0.1:{free_port()}",
            api_keys=[API_KEY],
            reporter_token_secret=REPORTER_TOKEN_SECRET,
            photo_dir=str(photo_dir),
            photo_variant_workers=variant_workers,
        )
    )
    async with (
        LifespanManager(app, shutdown_timeout=30),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://intake") as c,
    ):
        yield c


def unscalable_jpeg() -> bytes:
    """Whole by its structure (so accepted), but its first component names a quantisation
    table the file never defines: the decoder gives up."""
    data = bytearray(phone_jpeg(64, 48))
    frame = data.index(b"\xff\xc0")
    data[frame + 12] = 3  # SOF0: marker, length, precision, height, width, count, then id/hv/tq
    return bytes(data)


async def submit(client: httpx.AsyncClient, photo: bytes) -> tuple[str, dict[str, str]]:
    """A report with one photo: its id and its photo's paths."""
    response = await client.post(
        "/api/v1/reports",
        data={"service_code": "011", "lat": "51.3407", "long": "12.3747"},
        files=[("photos", ("a.jpg", photo, "image/jpeg"))],
        headers={"X-Acknowledge-Duplicate": "true"},
    )
    assert response.status_code == 201, response.text
    [links] = response.json()["photos"]
    return response.json()["id"], {
        k: v.removeprefix("http://127.0.0.1:8000") for k, v in links.items()
    }


async def test_the_original_stands_in_until_a_restarted_worker_made_the_variants(
    tmp_path: Path,
) -> None:
    database_url = await fresh_database(f"{TEST_DATABASE}_photo_variants", services=("intake",))
    async with intake(database_url, tmp_path, variant_workers=0) as client:
        _, paths = await submit(client, phone_jpeg())
        unscalable_report, unscalable_paths = await submit(client, unscalable_jpeg())
        original = await client.get(paths["original_url"])
        assert original.headers["cache-control"] == IMMUTABLE
        for stand_in in (await client.get(paths["url"]), await client.get(paths["thumbnail_url"])):
            assert stand_in.status_code == 200
            assert stand_in.content == original.content
            assert stand_in.headers["content-type"] == "image/jpeg"
            assert stand_in.headers["cache-control"] == "public, max-age=60"

    async with intake(database_url, tmp_path, variant_workers=1) as client:

        async def display_made() -> httpx.Response | None:
            display = await client.get(paths["url"])
            return display if display.headers["cache-control"] == IMMUTABLE else None

        display = await eventually(display_made, timeout_s=30)
        shown = Image.open(io.BytesIO(display.content))
        assert shown.height > shown.width  # made upright from the original's orientation
        assert max(shown.size) <= 1000
        thumbnail = await client.get(paths["thumbnail_url"])
        assert thumbnail.headers["cache-control"] == IMMUTABLE
        assert max(Image.open(io.BytesIO(thumbnail.content)).size) <= 320
        assert (await client.get(paths["original_url"])).content == original.content

        # One the worker could not scale: recorded, its report and original kept.
        digest = unscalable_paths["url"].split("/")[-2]
        reason = tmp_path / digest[:2] / digest / "unconvertible"
        await eventually(lambda: asyncio.to_thread(reason.exists), timeout_s=30)
        assert (await client.get(f"/api/v1/reports/{unscalable_report}")).status_code == 200
        stand_in = await client.get(unscalable_paths["url"])
        assert stand_in.status_code == 200
        assert stand_in.content == (await client.get(unscalable_paths["original_url"])).content
