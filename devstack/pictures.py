"""Generated test pictures: a 'phone photo' with GPS EXIF and a rotation, and bad files."""

import io
import struct
import zlib

from PIL import Image


def phone_jpeg(width: int = 1200, height: int = 900, orientation: int = 6) -> bytes:
    image = Image.new("RGB", (width, height))
    # Left half red, right half blue: shows whether a rotation was applied.
    image.paste((200, 30, 30), (0, 0, width // 2, height))
    image.paste((30, 30, 200), (width // 2, 0, width, height))
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x010F] = "PhoneMaker"
    exif[0x8825] = {1: "N", 2: (51.0, 20.0, 23.0), 3: "E", 4: (12.0, 22.0, 31.0)}
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90, exif=exif, comment=b"taken at home, Musterstr. 1")
    return out.getvalue()


def png_bomb() -> bytes:
    """A tiny PNG whose header claims 100,000 x 100,000 pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1000)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )


def camera_jpeg(target_bytes: int = 3_000_000, seed: int = 1) -> bytes:
    """A 12-megapixel (4000 x 3000) JPEG of about ``target_bytes`` with camera-like EXIF (GPS,
    make, rotation): smooth gradients plus sensor-like noise, tuned to the size."""
    import numpy as np

    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:3000, 0:4000]
    base = np.stack(
        [(x / 4000 * 200 + 30), (y / 3000 * 180 + 40), ((x + y) / 7000 * 150 + 50)], axis=-1
    )
    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x010F] = "PhoneMaker"
    exif[0x8825] = {1: "N", 2: (51.0, 20.0, 23.0), 3: "E", 4: (12.0, 22.0, 31.0)}
    noise_level, data = 6.0, b""
    for _ in range(8):
        pixels = (base + rng.normal(0, noise_level, base.shape)).clip(0, 255).astype("uint8")
        out = io.BytesIO()
        Image.fromarray(pixels).save(out, "JPEG", quality=88, exif=exif)
        data = out.getvalue()
        if abs(len(data) - target_bytes) < target_bytes * 0.1:
            break
        noise_level *= (target_bytes / len(data)) ** 1.5
    return data


def noisy_picture(kind: str, width: int = 480, height: int = 360, seed: int = 1) -> bytes:
    """A picture of random pixels in ``kind`` (e.g. "HEIF", "WEBP"): noise compresses badly, so
    the image data is most of the file and cutting it off leaves a valid header."""
    import random

    if kind.upper() in {"HEIF", "HEIC"}:
        import pillow_heif  # Pillow writes HEIF only with this plugin registered

        pillow_heif.register_heif_opener()
    pixels = random.Random(seed).randbytes(width * height * 3)  # noqa: S311 - test pixels
    out = io.BytesIO()
    Image.frombytes("RGB", (width, height), pixels).save(out, kind, quality=50)
    return out.getvalue()
