"""Photos: verified to be real images, stripped of every piece of metadata, stored by content.

Stripping does not re-encode where the format allows it: for JPEG the metadata segments (EXIF,
XMP, IPTC, comments) are dropped from the byte stream and, where the camera recorded a rotation,
a minimal EXIF block carrying only the Orientation tag is put back, so the picture still shows
the right way up; for PNG the text/time/EXIF chunks are dropped. WebP and HEIC are re-encoded
(to WebP and JPEG) with the rotation applied. Display size and thumbnail are JPEGs decoded at a
reduced scale (JPEG draft mode), which is most of the speed.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import struct
import warnings
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
    digest: str
    content_type: str
    original: bytes
    display: bytes
    thumbnail: bytes
    width: int
    height: int


def _open(data: bytes) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except (UnidentifiedImageError, Image.DecompressionBombWarning) as exc:
        raise PhotoRejected("not_an_image", "the file is not a picture we can read") from exc
    except Image.DecompressionBombError as exc:
        raise PhotoRejected("decompression_bomb", "the picture claims too many pixels") from exc
    return image


def _jpeg_segments(data: bytes) -> tuple[list[tuple[int, bytes]], bytes, int]:
    """Split a JPEG into its header segments (marker, whole segment bytes), the entropy-coded
    rest from SOS to EOI, and the number of bytes after EOI."""
    if not data.startswith(b"\xff\xd8"):
        raise PhotoRejected("not_an_image", "not a JPEG file")
    pos = 2
    segments: list[tuple[int, bytes]] = []
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            raise PhotoRejected("truncated", "the JPEG structure is broken")
        marker = data[pos + 1]
        if marker == 0xDA:  # start of scan: the image data follows up to EOI
            end = data.rfind(b"\xff\xd9")
            if end < pos:
                raise PhotoRejected("truncated", "the JPEG file is truncated")
            return segments, data[pos : end + 2], len(data) - (end + 2)
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        segments.append((marker, data[pos : pos + 2 + length]))
        pos += 2 + length
    raise PhotoRejected("truncated", "the JPEG file is truncated")


def _strip_jpeg(data: bytes, orientation: int) -> bytes:
    segments, scan, trailing = _jpeg_segments(data)
    if trailing > 16:
        raise PhotoRejected("polyglot", "the JPEG file carries other data after the picture")
    kept = [
        segment
        for marker, segment in segments
        # APP1 (EXIF, XMP), APP13 (IPTC), other APPn, COM go; APP0 (JFIF), APP2 ICC stay.
        if not (0xE1 <= marker <= 0xEF or marker == 0xFE)
        or (marker == 0xE2 and segment[4:16] == b"ICC_PROFILE\x00")
    ]
    if orientation not in (0, 1):
        exif = Image.Exif()
        exif[ORIENTATION] = orientation
        payload = exif.tobytes()  # b"Exif\0\0" + a TIFF block holding only the orientation
        kept.insert(0, b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload)
    return b"\xff\xd8" + b"".join(kept) + scan


PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
PNG_DROPPED = {b"tEXt", b"zTXt", b"iTXt", b"eXIf", b"tIME"}


def _strip_png(data: bytes) -> bytes:
    if not data.startswith(PNG_MAGIC):
        raise PhotoRejected("not_an_image", "not a PNG file")
    pos, out = len(PNG_MAGIC), [PNG_MAGIC]
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        chunk = data[pos : pos + 12 + length]
        if len(chunk) < 12 + length:
            raise PhotoRejected("truncated", "the PNG file is truncated")
        if kind not in PNG_DROPPED:
            out.append(chunk)
        pos += 12 + length
        if kind == b"IEND":
            if len(data) - pos > 16:
                raise PhotoRejected("polyglot", "the PNG file carries other data after the picture")
            return b"".join(out)
    raise PhotoRejected("truncated", "the PNG file is truncated")


def _jpeg(image: Image.Image, quality: int) -> bytes:
    out = io.BytesIO()
    image.convert("RGB").save(out, "JPEG", quality=quality, optimize=False)
    return out.getvalue()


def process_photo(data: bytes) -> ProcessedPhoto:
    """Verify, strip and scale one uploaded photo. Anything wrong with the file is a
    :class:`PhotoRejected`: the decoders signal a damaged file with whatever they like (Pillow
    an ``OSError``, pillow-heif a ``ValueError``), and a damaged file must be refused as such,
    not taken for a disk that failed (503) or for our own fault (500). No I/O happens here."""
    if len(data) > MAX_BYTES:
        raise PhotoRejected("too_large", f"a photo may have at most {MAX_BYTES // 2**20} MB")
    try:
        return _process(data)
    except PhotoRejected:
        raise
    except Exception as exc:
        raise PhotoRejected("damaged", f"the picture is damaged or incomplete ({exc})") from exc


def _process(data: bytes) -> ProcessedPhoto:
    image = _open(data)
    kind = image.format or ""
    if kind not in ACCEPTED:
        raise PhotoRejected(
            "unsupported_format", f"{kind or 'this'} files are not accepted: JPEG, PNG, WebP, HEIC"
        )
    width, height = image.size
    if width * height > MAX_PIXELS:
        raise PhotoRejected("decompression_bomb", "the picture claims too many pixels")
    orientation = int(image.getexif().get(ORIENTATION, 1)) if kind in ("JPEG", "WEBP") else 1

    if kind == "JPEG":
        original, content_type = _strip_jpeg(data, orientation), "image/jpeg"
    elif kind == "PNG":
        original, content_type = _strip_png(data), "image/png"
    else:
        upright = ImageOps.exif_transpose(_open(data))
        out = io.BytesIO()
        if kind == "WEBP":
            upright.save(out, "WEBP", quality=90)
            content_type = "image/webp"
        else:
            upright.convert("RGB").save(out, "JPEG", quality=90)
            content_type = "image/jpeg"
        original = out.getvalue()

    # One decode, at the smallest scale that still gives the display size; it also proves the
    # whole file decodes (a truncated one fails here).
    decoded: Image.Image = Image.open(io.BytesIO(original))
    # draft() keeps both sides at least this size: ask for the display box scaled to the
    # picture's aspect, or a 4:3 picture would be decoded at full size.
    scale = DISPLAY_SIZE / max(decoded.size)
    decoded.draft("RGB", (int(decoded.width * scale), int(decoded.height * scale)))
    decoded = ImageOps.exif_transpose(decoded)
    decoded.thumbnail((DISPLAY_SIZE, DISPLAY_SIZE), Image.Resampling.BILINEAR)
    display = _jpeg(decoded, 85)
    decoded.thumbnail((THUMBNAIL_SIZE, THUMBNAIL_SIZE), Image.Resampling.BILINEAR)
    thumbnail = _jpeg(decoded, 80)
    return ProcessedPhoto(
        digest=hashlib.sha256(original).hexdigest(),
        content_type=content_type,
        original=original,
        display=display,
        thumbnail=thumbnail,
        width=width,
        height=height,
    )


VARIANTS = ("original", "display", "thumbnail")


class PhotoStore(Protocol):
    """Where photos live: the file system here; an S3-compatible store would fit the same."""

    async def put(self, photo: ProcessedPhoto) -> None: ...

    async def get(self, digest: str, variant: str) -> tuple[bytes, str] | None: ...


class FileSystemPhotoStore:
    def __init__(self, root: Path) -> None:
        self._root = root

    def _dir(self, digest: str) -> Path:
        return self._root / digest[:2] / digest

    async def put(self, photo: ProcessedPhoto) -> None:
        await asyncio.to_thread(self._write, photo)

    def _write(self, photo: ProcessedPhoto) -> None:
        directory = self._dir(photo.digest)
        if (directory / "thumbnail").exists():
            return  # content-addressed: the same picture is stored once
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "content-type").write_text(photo.content_type)
        for variant, content in (
            ("original", photo.original),
            ("display", photo.display),
            ("thumbnail", photo.thumbnail),
        ):
            tmp = directory / f".{variant}.tmp"
            tmp.write_bytes(content)
            tmp.replace(directory / variant)

    async def get(self, digest: str, variant: str) -> tuple[bytes, str] | None:
        if variant not in VARIANTS or not digest.isalnum() or len(digest) != 64:
            return None
        path = self._dir(digest) / variant
        if not path.exists():
            return None
        content_type = (
            (self._dir(digest) / "content-type").read_text()
            if variant == "original"
            else "image/jpeg"
        )
        return path.read_bytes(), content_type
