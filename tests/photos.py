"""Image files for the tests: a camera-like photo with EXIF (GPS, serial, orientation), a
PNG with transparency, and a PNG whose header claims more pixels than may be decoded."""

from __future__ import annotations

import random
import struct
import zlib
from pathlib import Path

from PIL import Image, ImageCms, ImageDraw

RED = (255, 0, 0)
SERIAL = "CAMERA-SERIAL-0042"
GPS = {1: "N", 2: (41.0, 18.0, 30.0), 3: "E", 4: (69.0, 16.0, 12.0)}  # Tashkent
ORIENTATION = 0x0112
GPS_IFD = 0x8825
EXIF_IFD = 0x8769
BODY_SERIAL = 0xA431


def camera_photo(path: Path, rng: random.Random, size: tuple[int, int] = (4000, 3000)) -> Path:
    """A JPEG as a phone held upright writes it: stored landscape with orientation 6 (turn
    90 degrees clockwise to show), GPS position, camera serial and an ICC profile. The
    stored top-left 10% is pure red, so once turned upright the red is top-right."""
    width, height = size
    image = Image.linear_gradient("L").resize(size).convert("RGB")
    draw = ImageDraw.Draw(image)
    for _ in range(2500):  # detail, so the file is about as large as a camera's
        x, y = rng.randrange(width), rng.randrange(height)
        colour = (rng.randrange(256), rng.randrange(60, 256), rng.randrange(256))
        draw.ellipse([x, y, x + rng.randrange(4, 90), y + rng.randrange(4, 90)], fill=colour)
    draw.rectangle([0, 0, width // 10 - 1, height // 10 - 1], fill=RED)
    exif = Image.Exif()
    exif[ORIENTATION] = 6
    exif[0x010F] = "Camera Maker"
    exif[0x0110] = "Model X"
    exif[GPS_IFD] = GPS
    exif.get_ifd(EXIF_IFD)[BODY_SERIAL] = SERIAL
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    image.save(path, "JPEG", quality=92, exif=exif, icc_profile=icc)
    return path


def alpha_png(path: Path, size: tuple[int, int] = (1600, 800)) -> Path:
    """A logo-like RGBA PNG: a transparent background around an opaque blue disc."""
    image = Image.new("RGBA", size, (0, 0, 0, 0))
    ImageDraw.Draw(image).ellipse([100, 100, size[0] - 100, size[1] - 100], fill=(20, 60, 200, 255))
    image.save(path, "PNG")
    return path


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def bomb_png(path: Path, side: int = 30_000) -> Path:
    """A tiny PNG whose header says ``side`` x ``side`` pixels (900 million by default): a
    decoder that trusted it would allocate gigabytes. The header alone is enough to refuse it."""
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)  # 8-bit greyscale
    row = b"\0" + b"\0" * side
    data = zlib.compress(row * 4)  # a few rows: refused before any are decoded
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", data)
        + _chunk(b"IEND", b"")
    )
    return path
