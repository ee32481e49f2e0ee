"""Photos (issue 17 §5): accepted photos/s of a submission's photo work, today's path and the
new one, in one run on this machine, alternating rounds, with the load beside them.

- today's path: what a submission did with each photo before: check and strip, one reduced
  decode for display size and thumbnail, then the three files stored; all before the answer;
- new path: check and strip (no decode), the original stored with its marker; the display size
  and thumbnail are left to the background worker (``PhotoVariantWorker``);
- the worker alone (``photo_variant_workers`` 1, the default): variants/s over the backlog the
  new path's rounds left;
- both at once: the new path while the worker works through the same submissions;
- the same two paths as whole submissions (a report with one photo, multipart) through
  intake's HTTP app in this process (ASGI, no sockets; the database written, no broker), the
  route's ``process_photo`` swapped for today's work in the "today" rounds.

Every photo is a distinct 3 MB 12-megapixel JPEG with EXIF (GPS, make, orientation 6): one
generated picture with one quantisation value changed per copy, so each is stored anew (the
store is content-addressed) and costs the same to decode. Submissions run as intake runs them:
coroutines on one event loop handing the photo work to a pool of 2 threads (the committed
figure of 54.9/s was ``process_photo`` on 2 threads). Files go to var/bench-photos, on the disk
the photo directory is on.

    uv run python bench/photos.py [--photos 40] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import statistics
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from unittest import mock

import httpx
from asgi_lifespan import LifespanManager

from bench.common import INTAKE_BENCH_SETTINGS, report
from devstack.databases import fresh_database
from devstack.pictures import camera_jpeg
from devstack.processes import ROOT, free_port
from intake.adapters.photo_variants import PhotoVariantWorker
from intake.adapters.photos import (
    FileSystemPhotoStore,
    ProcessedPhoto,
    make_variants,
    process_photo,
)
from intake.bootstrap import create_app
from intake.entrypoints import api
from intake.settings import IntakeSettings

STORE = ROOT / "var" / "bench-photos"
THREADS = 2
#: Submissions in flight at once: enough to keep both threads busy.
IN_FLIGHT = 8


def copies(picture: bytes, first: int, count: int) -> list[bytes]:
    """``count`` pictures that decode like ``picture`` but differ in one quantisation value."""
    table = picture.index(b"\xff\xdb") + 5  # DQT: marker, length, precision/table id, values
    out = []
    for n in range(first, first + count):
        data = bytearray(picture)
        at = table + n % 64
        data[at] = (data[at] + n // 64) % 255 + 1
        out.append(bytes(data))
    return out


async def todays_path(store: FileSystemPhotoStore, data: bytes) -> None:
    def strip_and_scale():  # type: ignore[no-untyped-def]
        photo = process_photo(data)
        return photo, make_variants(photo.original)

    photo, variants = await asyncio.to_thread(strip_and_scale)
    await store.put(photo)
    await asyncio.to_thread(store.put_variants, photo.digest, variants)


async def new_path(store: FileSystemPhotoStore, data: bytes) -> None:
    photo = await asyncio.to_thread(process_photo, data)
    await store.put(photo)


async def accepted_per_s(
    path: Callable[[FileSystemPhotoStore, bytes], Awaitable[None]],
    store: FileSystemPhotoStore,
    photos: list[bytes],
) -> float:
    queue = list(photos)

    async def submitter() -> None:
        while queue:
            await path(store, queue.pop())

    started = time.perf_counter()
    await asyncio.gather(*(submitter() for _ in range(IN_FLIGHT)))
    return len(photos) / (time.perf_counter() - started)


async def drained(store: FileSystemPhotoStore) -> None:
    while await asyncio.to_thread(store.pending):
        await asyncio.sleep(0.05)


def load() -> dict[str, object]:
    return {
        "uptime": subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip(),
        "load_average_1m": round(os.getloadavg()[0], 2),
    }


async def measure(count: int, rounds: int) -> dict[str, object]:
    asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(THREADS))
    picture = camera_jpeg()
    shutil.rmtree(STORE, ignore_errors=True)
    store = FileSystemPhotoStore(STORE)
    figures: dict[str, object] = {
        "input": {"bytes": len(picture), "pixels": "4000x3000", "exif": "GPS, make, orientation 6"},
        "threads": THREADS,
        "photos_per_round": count,
        "load_at_start": load(),
    }
    warm_up = copies(picture, 10_000, 2)
    await todays_path(store, warm_up[0])
    await new_path(store, warm_up[1])

    today: list[float] = []
    new: list[float] = []
    n = 0
    for _ in range(rounds):
        for path, rates in ((todays_path, today), (new_path, new)):
            photos = copies(picture, n, count)
            n += count
            rates.append(await accepted_per_s(path, store, photos))
    figures["todays_path_accepted_per_s"] = [round(r, 1) for r in today]
    figures["new_path_accepted_per_s"] = [round(r, 1) for r in new]
    figures["todays_path_median"] = round(statistics.median(today), 1)
    figures["new_path_median"] = round(statistics.median(new), 1)
    figures["ratio_new_to_today"] = round(statistics.median(new) / statistics.median(today), 2)
    figures["load_after_rounds"] = load()

    # The new path's rounds left a backlog (their photos have no variants yet).
    backlog = len(store.pending())
    worker = asyncio.create_task(PhotoVariantWorker(store, concurrency=1).run())
    started = time.perf_counter()
    await drained(store)
    figures["worker_alone"] = {
        "backlog": backlog,
        "variants_per_s": round(backlog / (time.perf_counter() - started), 1),
    }

    # The new path while the worker converts what it accepts.
    photos = copies(picture, n, count)
    started = time.perf_counter()
    accepted = await accepted_per_s(new_path, store, photos)
    await drained(store)
    figures["new_path_with_worker_running"] = {
        "accepted_per_s": round(accepted, 1),
        "all_variants_made_after_s": round(time.perf_counter() - started, 1),
    }
    worker.cancel()
    await asyncio.gather(worker, return_exceptions=True)
    figures["load_at_end"] = load()
    return figures


def todays_process_photo(store: FileSystemPhotoStore) -> Callable[[bytes], ProcessedPhoto]:
    """What the submission route's ``process_photo`` did before: strip, scale and store all
    three files, before the answer (the route's own ``store.put`` then finds them stored)."""

    def process(data: bytes) -> ProcessedPhoto:
        photo = process_photo(data)
        variants = make_variants(photo.original)
        store._write(photo)
        store.put_variants(photo.digest, variants)
        return photo

    return process


@contextlib.asynccontextmanager
async def intake_app(database_url: str, photo_dir: Path) -> AsyncIterator[httpx.AsyncClient]:
    """Intake in this process (no broker: it serves without one), with no variant worker."""
    app = create_app(
        IntakeSettings(
            database_url=database_url,
            kafka_bootstrap_servers=f"127.0.0.1:{free_port()}",
            reporter_token_secret=INTAKE_BENCH_SETTINGS["reporter_token_secret"],
            rate_limit_per_address=0,
            rate_limit_per_email=0,
            photo_dir=str(photo_dir),
            photo_variant_workers=0,
        )
    )
    async with (
        LifespanManager(app, shutdown_timeout=30),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://intake", timeout=120
        ) as client,
    ):
        yield client


async def submitted_per_s(client: httpx.AsyncClient, photos: list[bytes]) -> tuple[float, int]:
    """Reports with one photo each, accepted per second, and how many were not."""
    queue, refused = list(photos), 0

    async def submitter() -> None:
        nonlocal refused
        while queue:
            response = await client.post(
                "/api/v1/reports",
                data={"service_code": "011", "lat": "51.3407", "long": "12.3747"},
                files=[("photos", ("photo.jpg", queue.pop(), "image/jpeg"))],
                headers={"X-Acknowledge-Duplicate": "true"},
            )
            refused += response.status_code != 201

    started = time.perf_counter()
    await asyncio.gather(*(submitter() for _ in range(IN_FLIGHT)))
    return len(photos) / (time.perf_counter() - started), refused


async def measure_http(database_url: str, count: int, rounds: int) -> dict[str, object]:
    picture = camera_jpeg()
    today_dir, new_dir = STORE / "http-today", STORE / "http-new"
    today_process = todays_process_photo(FileSystemPhotoStore(today_dir))
    today: list[float] = []
    new: list[float] = []
    refused, n = 0, 100_000
    async with (
        intake_app(database_url, today_dir) as today_client,
        intake_app(database_url, new_dir) as new_client,
    ):
        for _ in range(rounds):
            for process, client, rates in (
                (today_process, today_client, today),
                (process_photo, new_client, new),
            ):
                photos = copies(picture, n, count)
                n += count
                # The route looks process_photo up in its module at each call.
                with mock.patch.object(api, "process_photo", process):
                    rate, not_accepted = await submitted_per_s(client, photos)
                rates.append(rate)
                refused += not_accepted
    return {
        "todays_path_accepted_per_s": [round(r, 1) for r in today],
        "new_path_accepted_per_s": [round(r, 1) for r in new],
        "todays_path_median": round(statistics.median(today), 1),
        "new_path_median": round(statistics.median(new), 1),
        "ratio_new_to_today": round(statistics.median(new) / statistics.median(today), 2),
        "not_accepted": refused,
        "load_at_end": load(),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--photos", type=int, default=40, help="photos per round and path")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    database_url = asyncio.run(fresh_database("mangelmelder_bench_photos", services=("intake",)))

    async def both() -> dict[str, object]:
        photo_work = await measure(args.photos, args.rounds)
        return {
            "photo_work": photo_work,
            "submissions_over_http": await measure_http(database_url, args.photos, args.rounds),
        }

    figures = asyncio.run(both())
    shutil.rmtree(STORE, ignore_errors=True)
    report("photos", {**figures, "targets": {"ratio_new_to_today": 2.0}})


if __name__ == "__main__":
    main()
