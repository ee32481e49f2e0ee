"""Photos on the request path are checked and stripped without being decoded or re-encoded;
their display size and thumbnail are made by the background worker, which also catches up on
what a previous process left, and records a photo it cannot scale without losing it."""

from __future__ import annotations

import asyncio
import io
import os
import struct
import time
import zlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from PIL import Image, PngImagePlugin

from devstack.pictures import phone_jpeg
from devstack.testing import eventually
from intake.adapters.photo_variants import PhotoVariantWorker
from intake.adapters.photos import (
    FileSystemPhotoStore,
    PhotoRejected,
    ServedPhoto,
    process_photo,
)

GPS = 0x8825
ORIENTATION = 0x0112


def pixels(data: bytes) -> bytes:
    return Image.open(io.BytesIO(data)).tobytes()


def location(data: bytes) -> dict[int, object]:
    return dict(Image.open(io.BytesIO(data)).getexif().get_ifd(GPS))


def exif_with_location(orientation: int = 6) -> Image.Exif:
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    exif[0x010F] = "PhoneMaker"
    exif[GPS] = {1: "N", 2: (51.0, 20.0, 23.0), 3: "E", 4: (12.0, 22.0, 31.0)}
    return exif


def test_a_jpeg_loses_location_and_comments_keeps_its_rotation_and_is_not_re_encoded() -> None:
    upload = phone_jpeg(120, 90)
    photo = process_photo(upload)
    assert location(upload)
    assert not location(photo.original)
    for secret in (b"PhoneMaker", b"Musterstr"):
        assert secret in upload
        assert secret not in photo.original
    stored = Image.open(io.BytesIO(photo.original))
    assert dict(stored.getexif()) == {ORIENTATION: 6}
    assert pixels(photo.original) == pixels(upload)  # the same coded picture, not a new one
    assert (photo.width, photo.height, photo.content_type) == (120, 90, "image/jpeg")


def test_pictures_a_phone_appends_after_the_jpeg_go_with_their_location() -> None:
    """Gain maps and depth pictures follow the main picture as JPEGs with EXIF of their own."""
    main = phone_jpeg(120, 90)
    appended = io.BytesIO()
    Image.new("L", (60, 45), 128).save(appended, "JPEG", exif=exif_with_location())
    assert location(appended.getvalue())
    photo = process_photo(main + appended.getvalue())
    assert b"PhoneMaker" not in photo.original
    assert photo.original == process_photo(main).original


def test_a_progressive_jpeg_is_stripped_through_all_its_scans() -> None:
    out = io.BytesIO()
    Image.open(io.BytesIO(phone_jpeg(120, 90))).save(
        out, "JPEG", progressive=True, exif=exif_with_location(3), comment=b"Musterstr. 1"
    )
    photo = process_photo(out.getvalue())
    assert location(out.getvalue())
    assert not location(photo.original)
    assert b"Musterstr" not in photo.original
    assert b"PhoneMaker" not in photo.original
    assert dict(Image.open(io.BytesIO(photo.original)).getexif()) == {ORIENTATION: 3}
    assert pixels(photo.original) == pixels(out.getvalue())


def test_a_png_keeps_only_what_it_needs_to_display() -> None:
    picture = Image.new("RGBA", (40, 30), (10, 200, 30, 128))
    text = PngImagePlugin.PngInfo()
    text.add_text("Location", "51.3397 N, 12.3731 E")
    text.add_itxt("XML:com.adobe.xmp", "<x:xmpmeta>GPSLatitude</x:xmpmeta>")
    out = io.BytesIO()
    picture.save(out, "PNG", pnginfo=text, exif=exif_with_location(8))
    photo = process_photo(out.getvalue())
    assert location(out.getvalue())
    assert not location(photo.original)
    for secret in (b"51.3397", b"GPSLatitude", b"PhoneMaker", b"tEXt", b"iTXt"):
        assert secret in out.getvalue()
        assert secret not in photo.original
    stored = Image.open(io.BytesIO(photo.original))
    assert dict(stored.getexif()) == {ORIENTATION: 8}
    assert stored.tobytes() == picture.tobytes()  # transparency included


def png_with_bad_crc() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8)).save(out, "PNG")
    data = bytearray(out.getvalue())
    data[-20] ^= 0xFF  # inside the IDAT chunk: its CRC no longer matches
    return bytes(data)


def jpeg_without_end() -> bytes:
    data = phone_jpeg(64, 48)
    return data[: data.rindex(b"\xff\xd9")]


def png_with_unknown_critical_chunk() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8)).save(out, "PNG")
    data = out.getvalue()
    payload = b"?"
    chunk = (
        struct.pack(">I", len(payload))
        + b"ZZZZ"
        + payload
        + struct.pack(">I", zlib.crc32(b"ZZZZ" + payload))
    )
    return data[:33] + chunk + data[33:]  # after the signature and IHDR


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (jpeg_without_end, "truncated"),
        (png_with_bad_crc, "damaged"),
        (png_with_unknown_critical_chunk, "damaged"),
        (lambda: b"\xff\xd8\xff\xe0" + b"\x00" * 64, "not_an_image"),
    ],
    ids=["jpeg-without-end", "png-bad-crc", "png-unknown-critical-chunk", "jpeg-header-only"],
)
def test_a_broken_file_is_refused_without_decoding_it(
    make: Callable[[], bytes], reason: str
) -> None:
    with pytest.raises(PhotoRejected) as refused:
        process_photo(make())
    assert refused.value.reason == reason


def unscalable_jpeg() -> bytes:
    """Whole by its structure (so accepted), but its first component names a quantisation
    table the file never defines: the decoder gives up."""
    data = bytearray(phone_jpeg(64, 48))
    frame = data.index(b"\xff\xc0")
    data[frame + 12] = 3  # SOF0: marker, length, precision, height, width, count, then id/hv/tq
    return bytes(data)


@asynccontextmanager
async def worker_running(store: FileSystemPhotoStore) -> AsyncIterator[None]:
    task = asyncio.create_task(PhotoVariantWorker(store, concurrency=2).run())
    try:
        yield
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def served(store: FileSystemPhotoStore, digest: str, variant: str) -> ServedPhoto:
    found = await store.serve(digest, variant)
    assert found is not None
    return found


async def test_the_original_stands_in_until_the_worker_made_the_variants(tmp_path: Path) -> None:
    store = FileSystemPhotoStore(tmp_path)
    photo = process_photo(phone_jpeg(1200, 900))
    await store.put(photo)

    for variant in ("display", "thumbnail"):
        stand_in = await served(store, photo.digest, variant)
        assert (stand_in.content, stand_in.final) == (photo.original, False)
    assert store.pending() == [photo.digest]

    async with worker_running(store):

        async def display_made() -> ServedPhoto | None:
            found = await served(store, photo.digest, "display")
            return found if found.final else None

        display = await eventually(display_made, timeout_s=10)
    shown = Image.open(io.BytesIO(display.content))
    assert (shown.width, shown.height) == (750, 1000)  # upright, scaled to the display size
    assert not shown.getexif()
    assert display.content_type == "image/jpeg"
    thumbnail = await served(store, photo.digest, "thumbnail")
    assert thumbnail.final
    assert max(Image.open(io.BytesIO(thumbnail.content)).size) == 320
    original = await served(store, photo.digest, "original")
    assert (original.content, original.final) == (photo.original, True)
    assert store.pending() == []


async def test_a_new_worker_makes_what_the_last_process_left(tmp_path: Path) -> None:
    photos = [process_photo(phone_jpeg(200 + i, 150)) for i in range(3)]
    before_restart = FileSystemPhotoStore(tmp_path)
    for photo in photos:
        await before_restart.put(photo)  # no worker ran in that "process"

    after_restart = FileSystemPhotoStore(tmp_path)
    async with worker_running(after_restart):

        async def all_made() -> bool:
            found = [
                await served(after_restart, p.digest, v)
                for p in photos
                for v in ("display", "thumbnail")
            ]
            return all(f.final for f in found)

        await eventually(all_made, timeout_s=10)
    assert after_restart.pending() == []


async def test_a_photo_that_cannot_be_scaled_keeps_its_original_and_says_why(
    tmp_path: Path,
) -> None:
    store = FileSystemPhotoStore(tmp_path)
    photo = process_photo(unscalable_jpeg())
    await store.put(photo)
    async with worker_running(store):

        async def recorded() -> str | None:
            return store.unconvertible(photo.digest)

        reason = await eventually(recorded, timeout_s=10)
    assert "broken data stream" in reason
    assert store.pending() == []
    stand_in = await served(store, photo.digest, "display")
    assert (stand_in.content, stand_in.final) == (photo.original, False)


async def test_the_same_picture_is_stored_and_scaled_once(tmp_path: Path) -> None:
    store = FileSystemPhotoStore(tmp_path)
    photo = process_photo(phone_jpeg(64, 48))
    await store.put(photo)
    worker = PhotoVariantWorker(store)
    assert await asyncio.to_thread(worker.convert, photo.digest) == "made"
    await store.put(photo)
    assert store.pending() == []
    assert await asyncio.to_thread(worker.convert, photo.digest) == "skipped"


async def test_a_photo_another_worker_scales_is_left_to_it_unless_that_one_died(
    tmp_path: Path,
) -> None:
    """Instances share the photo directory and each looks at every pending photo."""
    store = FileSystemPhotoStore(tmp_path)
    photo = process_photo(phone_jpeg(64, 48))
    await store.put(photo)
    assert store.claim(photo.digest)  # another instance's worker took it
    worker = PhotoVariantWorker(FileSystemPhotoStore(tmp_path))
    assert await asyncio.to_thread(worker.convert, photo.digest) == "busy"
    assert not store.has_variants(photo.digest)
    assert store.pending() == [photo.digest]

    claimed_long_ago = time.time() - FileSystemPhotoStore.CLAIM_FOR_S - 1
    os.utime(tmp_path / photo.digest[:2] / photo.digest / "converting", (claimed_long_ago,) * 2)
    assert await asyncio.to_thread(worker.convert, photo.digest) == "made"
    assert store.has_variants(photo.digest)
    assert store.pending() == []
    assert store.claim(photo.digest)  # released
