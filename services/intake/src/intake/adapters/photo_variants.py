"""Display sizes and thumbnails, made off the request path.

A submission stores a photo's stripped original and a marker (see
:class:`~intake.adapters.photos.FileSystemPhotoStore`); this worker, running in every intake
process that has ``photo_variant_workers`` > 0, makes the variants of every marked photo: those
stored while it runs (it is woken by each new original) and, at start, those a previous process
left. A photo that cannot be decoded keeps its original (served in the variants' place) and a
note of why; the report it belongs to is untouched.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor

from prometheus_client import Counter, Gauge

from intake.adapters.photos import FileSystemPhotoStore, make_variants

log = logging.getLogger(__name__)

VARIANTS_MADE = Counter(
    "mm_photo_variants",
    "Photos whose display size and thumbnail the worker handled, by outcome",
    ["outcome"],
)
VARIANTS_PENDING = Gauge(
    "mm_photo_variants_pending",
    "Stored photos whose display size and thumbnail are still to be made (at the last look)",
)
#: The worker's threads yield the processor to the request path's threads when both want it.
WORKER_NICENESS = 10


def _run_behind_requests() -> None:
    """Lower this thread's scheduling priority (Linux schedules threads one by one)."""
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), WORKER_NICENESS)


class PhotoVariantWorker:
    def __init__(
        self, store: FileSystemPhotoStore, concurrency: int = 1, look_again_after_s: float = 30.0
    ) -> None:
        self._store = store
        self._concurrency = concurrency
        #: Without a new original of its own process, the worker looks for pending photos
        #: this often: those another instance on the same directory stored (one with no
        #: worker), and those whose variants could not be written (a full disk) are tried again.
        self._look_again_after_s = look_again_after_s

    async def run(self) -> None:
        """Until cancelled: at most ``concurrency`` photos at once, each in a thread."""
        loop = asyncio.get_running_loop()
        executor = ThreadPoolExecutor(
            self._concurrency, "photo-variants", initializer=_run_behind_requests
        )
        slots = asyncio.Semaphore(self._concurrency)
        in_flight: set[str] = set()

        async def convert(digest: str) -> None:
            try:
                outcome = await loop.run_in_executor(executor, self.convert, digest)
                VARIANTS_MADE.labels(outcome).inc()
            except Exception:
                VARIANTS_MADE.labels("error").inc()
                log.exception("the variants of photo %s could not be stored; trying later", digest)
            finally:
                in_flight.discard(digest)
                slots.release()

        try:
            async with asyncio.TaskGroup() as tasks:
                while True:
                    self._store.stored.clear()
                    try:
                        pending = await asyncio.to_thread(self._store.pending)
                    except OSError:
                        log.exception("pending photos could not be listed; trying again later")
                        pending = []
                    VARIANTS_PENDING.set(len(pending))
                    for digest in pending:
                        if digest in in_flight:
                            continue
                        await slots.acquire()
                        in_flight.add(digest)
                        tasks.create_task(convert(digest))
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._store.stored.wait(), self._look_again_after_s)
        finally:
            executor.shutdown(wait=False, cancel_futures=True)

    def convert(self, digest: str) -> str:
        """Make one photo's variants (blocking); returns the outcome for the metric."""
        if not self._store.claim(digest):
            return "busy"  # another worker scales it; its marker stays until that one is done
        try:
            original = self._store.awaiting_variants(digest)
            if original is None:
                return "skipped"
            try:
                variants = make_variants(original)
            except Exception as exc:  # whatever the decoder raises for a picture it cannot read
                reason = f"{type(exc).__name__}: {exc}"
                log.warning(
                    "photo %s cannot be scaled (%s): its original is served in place of its "
                    "display size and thumbnail",
                    digest,
                    reason,
                )
                self._store.put_unconvertible(digest, reason)
                return "unconvertible"
            self._store.put_variants(digest, variants)
            return "made"
        finally:
            self._store.release(digest)
