"""Photos: verified to be real images, stripped of every piece of metadata, stored by content.

On the request path a photo is only checked and stripped (:func:`process_photo`), and its
original stored (:meth:`FileSystemPhotoStore.put`); its display size and thumbnail are made
later by :class:`intake.adapters.photo_variants.PhotoVariantWorker` (:func:`make_variants`),
and until they exist the original stands in for them (:meth:`FileSystemPhotoStore.serve`).

Stripping does not re-encode where the format allows it. For JPEG the file is walked segment by
segment through every scan up to the end of the picture: EXIF, XMP, IPTC, MPF, comments and
everything after the picture (a phone's gain maps and depth pictures, each with its own EXIF)
are dropped, and where the camera recorded a rotation a minimal EXIF block carrying only the
Orientation tag is put back, so the picture still shows the right way up. For PNG only the
chunks a picture needs to display right are kept (an orientation again as a minimal eXIf).
That walk is also the check that the file is whole, without decoding its pixels. WebP and HEIC
are decoded and re-encoded (to WebP and JPEG) with the rotation applied, as before.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import re
import struct
import time
import uuid
import warnings
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import pillow_heif
from PIL import Image, ImageOps, UnidentifiedImageError

pillow_heif.register_heif_opener()

MAX_BYTES = 10 * 1024 * 1024
#: Larger pictures are refused as decompression bombs (a 12 MP phone photo is far below).
MAX_PIXELS = 50_000_000
#: Long side of the display size. 1000 px lets a 12-megapixel (4000 px wide) JPEG decode at 1/4
#: scale, the biggest single saving; sharp enough for a phone screen or a staff list.
DISPLAY_SIZE = 1000
THUMBNAIL_SIZE = 320
ACCEPTED = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp", "HEIF": "image/heic"}
ORIENTATION = 0x0112


class PhotoRejected(ValueError):
    """A file that is not an acceptable photo; ``reason`` is a stable machine-readable code."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class ProcessedPhoto:
    """A photo as accepted: checked, stripped, not yet scaled."""

    digest: str
    content_type: str
    original: bytes
    width: int
    height: int


@dataclass(frozen=True)
class Variants:
    display: bytes
    thumbnail: bytes


def _open(data: bytes) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError as exc:
        raise PhotoRejected("not_an_image", "the file is not a picture we can read") from exc
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        raise PhotoRejected("decompression_bomb", "the picture claims too many pixels") from exc
    return image


def _orientation_only_tiff(orientation: int) -> bytes:
    """A TIFF block (EXIF's body) holding nothing but the Orientation tag."""
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    return exif.tobytes()[len(b"Exif\0\0") :]


#: The next marker in a JPEG's entropy-coded data: 0xFF followed by anything but a stuffed zero,
#: a restart marker (part of the scan) or a fill byte.
_MARKER_IN_SCAN = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")
SOI, EOI, SOS, COM = b"\xff\xd8", 0xD9, 0xDA, 0xFE
#: Marker segments a display needs among the application ones (all others go): JFIF, the
#: colour profile, Adobe's colour transform (without it CMYK and some RGB files show wrong).
_KEPT_APP_SEGMENTS = ((0xE0, b"JFIF\0"), (0xE2, b"ICC_PROFILE\0"), (0xEE, b"Adobe"))


def _kept_jpeg_segment(marker: int, segment: bytes) -> bool:
    if 0xE0 <= marker <= 0xEF:
        return any(marker == m and segment[4:].startswith(sig) for m, sig in _KEPT_APP_SEGMENTS)
    return marker != COM


def _strip_jpeg(data: bytes, orientation: int) -> bytes:
    if not data.startswith(SOI):
        raise PhotoRejected("not_an_image", "not a JPEG file")
    kept, pos, scans = [SOI], 2, 0
    while True:
        if pos + 2 > len(data):
            raise PhotoRejected("truncated", "the JPEG file is truncated")
        if data[pos] != 0xFF:
            raise PhotoRejected("truncated", "the JPEG structure is broken")
        marker = data[pos + 1]
        if marker == 0xFF:  # a fill byte before a marker
            pos += 1
            continue
        if marker == EOI:
            if not scans:
                raise PhotoRejected("truncated", "the JPEG file has no picture data")
            kept.append(data[pos : pos + 2])
            pos += 2
            break
        if pos + 4 > len(data):
            raise PhotoRejected("truncated", "the JPEG file is truncated")
        (length,) = struct.unpack_from(">H", data, pos + 2)
        end = pos + 2 + length
        if length < 2 or end > len(data):
            raise PhotoRejected("truncated", "the JPEG file is truncated")
        if _kept_jpeg_segment(marker, data[pos:end]):
            kept.append(data[pos:end])
        pos = end
        if marker == SOS:  # the scan's entropy-coded data runs up to the next marker
            scans += 1
            found = _MARKER_IN_SCAN.search(data, pos)
            if found is None:
                raise PhotoRejected("truncated", "the JPEG file is truncated")
            kept.append(data[pos : found.start()])
            pos = found.start()
    trailing = data[pos:]
    # After the picture a phone may append further JPEGs (gain map, depth): dropped with their
    # metadata. Anything else there is another file riding along, which we refuse.
    if len(trailing) > 16 and not trailing.startswith(SOI):
        raise PhotoRejected("polyglot", "the JPEG file carries other data after the picture")
    if 2 <= orientation <= 8:
        payload = b"Exif\0\0" + _orientation_only_tiff(orientation)
        kept.insert(1, b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload)
    return b"".join(kept)


PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
PNG_CRITICAL = {b"IHDR", b"PLTE", b"IDAT", b"IEND"}
#: Ancillary chunks a picture needs to display right: transparency, colour and gamma, HDR.
#: Every other one goes: text, time, EXIF, physical size, animation, private chunks.
PNG_KEPT_ANCILLARY = {
    b"tRNS",
    b"gAMA",
    b"cHRM",
    b"sRGB",
    b"iCCP",
    b"sBIT",
    b"cICP",
    b"mDCV",
    b"cLLI",
}


def _png_chunks(data: bytes) -> Iterator[tuple[bytes, bytes, bytes]]:
    """(kind, payload, whole chunk) up to IEND, each checked against its CRC."""
    pos = len(PNG_MAGIC)
    while pos + 12 <= len(data):
        (length,) = struct.unpack_from(">I", data, pos)
        kind = data[pos + 4 : pos + 8]
        end = pos + 12 + length
        if end > len(data):
            raise PhotoRejected("truncated", "the PNG file is truncated")
        (crc,) = struct.unpack_from(">I", data, end - 4)
        if zlib.crc32(data[pos + 4 : end - 4]) != crc:
            raise PhotoRejected("damaged", f"the PNG chunk {kind!r} is damaged")
        yield kind, data[pos + 8 : end - 4], data[pos:end]
        pos = end
        if kind == b"IEND":
            if len(data) - pos > 16:
                raise PhotoRejected("polyglot", "the PNG file carries other data after the picture")
            return
    raise PhotoRejected("truncated", "the PNG file is truncated")


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return (
        struct.pack(">I", len(payload))
        + kind
        + payload
        + struct.pack(">I", zlib.crc32(kind + payload))
    )


def _png_orientation(exif_chunk: bytes) -> int:
    exif = Image.Exif()
    try:
        exif.load(exif_chunk)
        return int(exif.get(ORIENTATION, 1))
    except Exception:  # a damaged eXIf only costs the rotation; the chunk goes anyway
        return 1


def _strip_png(data: bytes) -> bytes:
    if not data.startswith(PNG_MAGIC):
        raise PhotoRejected("not_an_image", "not a PNG file")
    out, orientation, pictures = [PNG_MAGIC], 1, 0
    for kind, payload, chunk in _png_chunks(data):
        if kind == b"eXIf":
            orientation = _png_orientation(payload)
        elif kind in PNG_CRITICAL or kind in PNG_KEPT_ANCILLARY:
            out.append(chunk)
            pictures += kind == b"IDAT"
        elif kind[0] & 0x20 == 0:  # an upper-case first letter: critical, and unknown to us
            raise PhotoRejected("damaged", f"the PNG file has an unknown critical chunk {kind!r}")
    if not pictures or out[1][4:8] != b"IHDR":
        raise PhotoRejected("damaged", "the PNG file has no picture data")
    if 2 <= orientation <= 8:  # eXIf must come before the picture data: right after IHDR
        out.insert(2, _png_chunk(b"eXIf", _orientation_only_tiff(orientation)))
    return b"".join(out)


def process_photo(data: bytes) -> ProcessedPhoto:
    """Verify and strip one uploaded photo: what a submission waits for. Anything wrong with
    the file is a :class:`PhotoRejected`: the decoders signal a damaged file with whatever they
    like (Pillow an ``OSError``, pillow-heif a ``ValueError``), and a damaged file must be
    refused as such, not taken for a disk that failed (503) or for our own fault (500). JPEG and
    PNG are checked by their structure and header, their pixels are not decoded here (so a JPEG
    whose scan data is garbled inside may still be accepted, and fail only when scaled: see
    :class:`~intake.adapters.photo_variants.PhotoVariantWorker`). No I/O happens here."""
    if len(data) > MAX_BYTES:
        raise PhotoRejected("too_large", f"a photo may have at most {MAX_BYTES // 2**20} MB")
    try:
        return _process(data)
    except PhotoRejected:
        raise
    except Exception as exc:
        raise PhotoRejected("damaged", f"the picture is damaged or incomplete ({exc})") from exc


def _process(data: bytes) -> ProcessedPhoto:
    image = _open(data)  # reads the header only
    kind = image.format or ""
    if kind not in ACCEPTED:
        raise PhotoRejected(
            "unsupported_format", f"{kind or 'this'} files are not accepted: JPEG, PNG, WebP, HEIC"
        )
    width, height = image.size
    if width * height > MAX_PIXELS:
        raise PhotoRejected("decompression_bomb", "the picture claims too many pixels")

    if kind == "JPEG":
        orientation = int(image.getexif().get(ORIENTATION, 1))
        original, content_type = _strip_jpeg(data, orientation), "image/jpeg"
    elif kind == "PNG":
        original, content_type = _strip_png(data), "image/png"
    else:
        # No lossless way to strip these here: decoded (which also proves the file whole) and
        # re-encoded upright.
        upright = ImageOps.exif_transpose(_open(data))
        out = io.BytesIO()
        if kind == "WEBP":
            upright.save(out, "WEBP", quality=90)
            content_type = "image/webp"
        else:
            upright.convert("RGB").save(out, "JPEG", quality=90)
            content_type = "image/jpeg"
        original = out.getvalue()
    return ProcessedPhoto(
        digest=hashlib.sha256(original).hexdigest(),
        content_type=content_type,
        original=original,
        width=width,
        height=height,
    )


def _jpeg(image: Image.Image, quality: int) -> bytes:
    out = io.BytesIO()
    image.convert("RGB").save(out, "JPEG", quality=quality, optimize=False)
    return out.getvalue()


def make_variants(original: bytes) -> Variants:
    """Display size and thumbnail of a stored (stripped) original, upright, as JPEGs. Raises
    whatever the decoder raises for a picture it cannot decode."""
    # One decode, at the smallest scale that still gives the display size.
    decoded: Image.Image = Image.open(io.BytesIO(original))
    # draft() keeps both sides at least this size: ask for the display box scaled to the
    # picture's aspect, or a 4:3 picture would be decoded at full size.
    scale = DISPLAY_SIZE / max(decoded.size)
    decoded.draft("RGB", (int(decoded.width * scale), int(decoded.height * scale)))
    decoded = ImageOps.exif_transpose(decoded)
    decoded.thumbnail((DISPLAY_SIZE, DISPLAY_SIZE), Image.Resampling.BILINEAR)
    display = _jpeg(decoded, 85)
    decoded.thumbnail((THUMBNAIL_SIZE, THUMBNAIL_SIZE), Image.Resampling.BILINEAR)
    return Variants(display=display, thumbnail=_jpeg(decoded, 80))


VARIANTS = ("original", "display", "thumbnail")
SCALED = ("display", "thumbnail")


@dataclass(frozen=True)
class ServedPhoto:
    content: bytes
    content_type: str
    #: False while the original stands in for a display size or thumbnail not made yet (or
    #: never: see ``unconvertible``): then the answer must not be cached for good.
    final: bool


class PhotoStore(Protocol):
    """Where photos live: the file system here; an S3-compatible store would fit the same."""

    async def put(self, photo: ProcessedPhoto) -> None: ...

    async def serve(self, digest: str, variant: str) -> ServedPhoto | None: ...


class FileSystemPhotoStore:
    """``<root>/<ab>/<digest>/`` holds ``content-type``, ``original``, later ``display`` and
        ``thumbnail`` (or ``unconvertible``, naming why they could not be made), and ``converting``
    while a worker scales it. An original
        whose variants are still to be made has an empty marker ``<root>/pending/<digest>``, written
        before the original: the marker directory is the worker's queue, and it outlives the
        process. Every file is written under a unique temporary name and renamed into place, so a
        reader (or another instance on the same directory) never sees half a file."""

    #: A marker whose original never appeared (the writer died between the two) is removed
    #: after this long; a younger one may belong to an original being written right now.
    STALE_MARKER_S = 3600.0
    #: Scaling one photo takes well under a second; a claim this old is a dead worker's.
    CLAIM_FOR_S = 120.0

    def __init__(self, root: Path) -> None:
        self._root = root
        self._pending = root / "pending"
        #: Set whenever an original was stored, so the worker need not poll.
        self.stored = asyncio.Event()

    def _dir(self, digest: str) -> Path:
        return self._root / digest[:2] / digest

    @staticmethod
    def _valid(digest: str) -> bool:
        return len(digest) == 64 and all(c in "0123456789abcdef" for c in digest)

    @staticmethod
    def _write_atomically(path: Path, content: bytes) -> None:
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        tmp.write_bytes(content)
        tmp.replace(path)

    async def put(self, photo: ProcessedPhoto) -> None:
        if await asyncio.to_thread(self._write, photo):
            self.stored.set()

    def _write(self, photo: ProcessedPhoto) -> bool:
        directory = self._dir(photo.digest)
        if (directory / "original").exists():
            return False  # content-addressed: the same picture is stored once
        self._pending.mkdir(parents=True, exist_ok=True)
        (self._pending / photo.digest).touch()
        directory.mkdir(parents=True, exist_ok=True)
        self._write_atomically(directory / "content-type", photo.content_type.encode())
        self._write_atomically(directory / "original", photo.original)
        return True

    def _read(self, digest: str, variant: str) -> tuple[bytes, str] | None:
        directory = self._dir(digest)
        try:
            content = (directory / variant).read_bytes()
            content_type = (
                (directory / "content-type").read_text() if variant == "original" else "image/jpeg"
            )
        except FileNotFoundError:
            return None
        return content, content_type

    async def serve(self, digest: str, variant: str) -> ServedPhoto | None:
        """The variant asked for; while it is not made, the original in its place."""
        if variant not in VARIANTS or not self._valid(digest):
            return None
        return await asyncio.to_thread(self._serve, digest, variant)

    def _serve(self, digest: str, variant: str) -> ServedPhoto | None:
        if found := self._read(digest, variant):
            return ServedPhoto(*found, final=True)
        if variant != "original" and (found := self._read(digest, "original")):
            return ServedPhoto(*found, final=False)
        return None

    # What the variant worker uses.

    def pending(self) -> list[str]:
        """Digests of originals whose variants are still to be made."""
        try:
            return [name for name in os.listdir(self._pending) if self._valid(name)]
        except FileNotFoundError:
            return []

    def awaiting_variants(self, digest: str) -> bytes | None:
        """The original of a pending photo if its variants are still to be made; else None,
        and its marker goes (once stale, if the original never arrived)."""
        marker = self._pending / digest
        if self.has_variants(digest) or self.unconvertible(digest) is not None:
            marker.unlink(missing_ok=True)
            return None
        try:
            return (self._dir(digest) / "original").read_bytes()
        except FileNotFoundError:
            try:
                if time.time() - marker.stat().st_mtime > self.STALE_MARKER_S:
                    marker.unlink(missing_ok=True)
            except FileNotFoundError:
                pass
            return None

    def claim(self, digest: str) -> bool:
        """Take a photo to scale, unless a worker (of this or another instance sharing the
        directory) has it: a file created only if absent. A claim older than
        ``CLAIM_FOR_S`` belongs to a worker that died, and is taken over."""
        claim = self._dir(digest) / "converting"
        for _ in range(2):
            try:
                os.close(os.open(claim, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
                return True
            except FileNotFoundError:
                return True  # no photo directory: nothing to contend for
            except FileExistsError:
                try:
                    if time.time() - claim.stat().st_mtime < self.CLAIM_FOR_S:
                        return False
                except FileNotFoundError:
                    continue  # released meanwhile
                claim.unlink(missing_ok=True)
        return False

    def release(self, digest: str) -> None:
        (self._dir(digest) / "converting").unlink(missing_ok=True)

    def has_variants(self, digest: str) -> bool:
        return all((self._dir(digest) / variant).exists() for variant in SCALED)

    def put_variants(self, digest: str, variants: Variants) -> None:
        directory = self._dir(digest)
        self._write_atomically(directory / "display", variants.display)
        self._write_atomically(directory / "thumbnail", variants.thumbnail)
        (self._pending / digest).unlink(missing_ok=True)

    def put_unconvertible(self, digest: str, reason: str) -> None:
        """The original stays and is served in the variants' place; why they are missing is
        kept beside it, and the photo is not tried again."""
        self._write_atomically(self._dir(digest) / "unconvertible", reason.encode())
        (self._pending / digest).unlink(missing_ok=True)

    def unconvertible(self, digest: str) -> str | None:
        try:
            return (self._dir(digest) / "unconvertible").read_text()
        except FileNotFoundError:
            return None
