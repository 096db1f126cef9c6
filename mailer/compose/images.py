"""Images from the issue folder, published: oriented, resized, stripped, named by content.

``image: photo.jpg`` in front matter and ``![alt](photo.jpg)`` in a snippet name a file in
the issue folder. Each is decoded once (JPEG, PNG, GIF or WebP only: Pillow's other readers,
EPS through Ghostscript among them, are never reached), turned upright by its EXIF
orientation, scaled down to at most twice the layout's column (sharp on retina screens),
converted to sRGB and re-encoded from its pixels alone, so no metadata survives: no EXIF
(GPS position, camera serial, time), no XMP, no comments, no ICC profile. Dropping the profile
is safe because the pixels are first converted to sRGB, which is what every mail client and
browser assumes for an untagged image; keeping a Display P3 or Adobe RGB photo's pixels
without their profile would wash out its colours, and a profile's own text can name the device.

The file is JPEG (quality 82) unless the image has transparency or a palette (logos,
diagrams): then PNG. Never WebP, which not every mail client shows. It is named by the
SHA-256 of its bytes (``<32 hex>.jpg``), so a URL names one content forever and may be cached
as immutable. This module is the only one that imports Pillow.
"""

from __future__ import annotations

import hashlib
import io
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote

from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

from mailer.errors import IssueError
from mailer.settings import show

COLUMN_WIDTH = 568  # the shipped layout's text column: 640 px body less 2 x 36 px padding
MAX_WIDTH = 2 * COLUMN_WIDTH  # pixels: twice the column, for high-density screens
# Decoding costs memory by pixels, not bytes: a 40 KB PNG can hold 50000 x 50000 pixels.
# 64 million (192 MB as RGB) admits every camera up to 61 MP; Pillow's own default warns at
# 89 million and refuses at twice that. Its warning becomes our error (see _decode).
MAX_PIXELS = 64_000_000
Image.MAX_IMAGE_PIXELS = MAX_PIXELS
JPEG_QUALITY = 82
INPUT_FORMATS = ("JPEG", "PNG", "GIF", "WEBP")  # JPEG includes MPO (two-picture JPEGs)
MEDIA_PREFIX = "media/"  # published at BASE_URL/media/NAME
CONTENT_TYPES = {"jpg": "image/jpeg", "png": "image/png"}
HASH_CHARS = 32  # 128 bits of SHA-256: unguessable, and no two contents share a name
MEDIA_NAME = re.compile(rf"^[0-9a-f]{{{HASH_CHARS}}}\.(?:jpg|png)$")  # the canonical names
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:|^//")
_SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))


@dataclass(frozen=True)
class PublishedImage:
    """One published file (the same source file used twice is published once)."""

    name: str  # "<hash>.jpg" or "<hash>.png": its path under BASE_URL/media/
    content_type: str  # image/jpeg or image/png
    data: bytes = field(repr=False)
    width: int  # pixels of the published file
    height: int
    original_bytes: int  # the file in the issue folder
    original_width: int  # pixels as stored in that file (before its orientation is applied)
    original_height: int

    @property
    def size(self) -> int:
        return len(self.data)


@dataclass(frozen=True)
class ImageUse:
    """One place an issue shows a local image: where it is written and what it shows as."""

    image: PublishedImage
    source: Path  # the snippet that names it
    line: int  # the line of ``image:`` or of the ``![alt](...)``
    ref: str  # the file name as written
    alt: str
    url: str  # BASE_URL/media/NAME
    display_width: int  # the <img> width and height: CSS pixels, at most the column
    display_height: int


def is_local(ref: str) -> bool:
    """Whether an image reference names a file (no scheme, not ``//host/...``)."""
    return bool(ref) and not _SCHEME.match(ref)


class ImagePublisher:
    """Publishes the local images of one issue; :attr:`uses` lists them in reading order."""

    def __init__(self, issue_dir: Path, base_url: str, max_width: int = MAX_WIDTH) -> None:
        self.issue_dir = issue_dir
        self.base_url = base_url
        self.max_width = max_width
        self.uses: list[ImageUse] = []
        self._done: dict[Path, PublishedImage] = {}

    @property
    def media(self) -> tuple[PublishedImage, ...]:
        """Every published file once, in order of first use."""
        return tuple({u.image.name: u.image for u in self.uses}.values())

    def publish(
        self, ref: str, source: Path, line: int, alt: str, *, url_encoded: bool
    ) -> ImageUse:
        """Publish the file ``ref`` names (``url_encoded``: as Markdown writes it, %20 etc.)."""
        where = f"{source}:{line}: image {show(ref)}"
        path = self._resolve(unquote(ref) if url_encoded else ref, where)
        image = self._done.get(path)
        if image is None:
            image = self._done[path] = publish_file(path, where, self.max_width)
        width = min(image.width, COLUMN_WIDTH)
        use = ImageUse(
            image=image,
            source=source,
            line=line,
            ref=ref,
            alt=alt,
            url=f"{self.base_url}/{MEDIA_PREFIX}{image.name}",
            display_width=width,
            display_height=max(1, round(image.height * width / image.width)),
        )
        self.uses.append(use)
        return use

    def _resolve(self, ref: str, where: str) -> Path:
        """The file inside the issue folder; IssueError for one outside it, or missing."""
        if ref.startswith(("/", "\\")) or "\\" in ref or "\0" in ref:
            raise IssueError(f"{where}: write a file name relative to the issue folder")
        candidate = self.issue_dir / ref
        try:
            target = candidate.resolve(strict=True)
            inside = target.is_relative_to(self.issue_dir.resolve())
        except FileNotFoundError:
            raise IssueError(f"{where}: no such file in {self.issue_dir}") from None
        except (OSError, RuntimeError) as exc:  # RuntimeError: a symlink loop (Python 3.11)
            raise IssueError(f"{where}: cannot be opened: {_reason(exc)}") from None
        if not inside:
            raise IssueError(
                f"{where}: is outside the issue folder (copy the file into {self.issue_dir})"
            )
        return target


def publish_file(path: Path, where: str, max_width: int = MAX_WIDTH) -> PublishedImage:
    """Read, orient, resize, strip and re-encode one image file; IssueError naming ``where``."""
    try:
        raw = path.read_bytes()
    except IsADirectoryError:
        raise IssueError(f"{where}: is a folder, not an image file") from None
    except OSError as exc:
        raise IssueError(f"{where}: cannot read: {_reason(exc)}") from None
    pixels, (width, height), as_png = _decode(raw, where, max_width)
    data, ext = _encode(pixels, as_png)
    return PublishedImage(
        name=f"{hashlib.sha256(data).hexdigest()[:HASH_CHARS]}.{ext}",
        content_type=CONTENT_TYPES[ext],
        data=data,
        width=pixels.width,
        height=pixels.height,
        original_bytes=len(raw),
        original_width=width,
        original_height=height,
    )


def _decode(raw: bytes, where: str, max_width: int) -> tuple[Image.Image, tuple[int, int], bool]:
    """(upright sRGB pixels at most ``max_width`` wide, stored size, whether PNG suits)."""
    with warnings.catch_warnings():
        # Pillow warns (and goes on decoding) between MAX_IMAGE_PIXELS and twice that.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(raw), formats=INPUT_FORMATS) as im:
                size = im.size
                if size[0] * size[1] > MAX_PIXELS:
                    raise Image.DecompressionBombError("too many pixels")
                as_png = _wants_png(im)
                return _prepare(im, max_width, as_png), size, as_png
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise IssueError(
                f"{where}: too large to decode safely (at most {MAX_PIXELS:,} pixels; "
                "scale it down first)"
            ) from None
        except UnidentifiedImageError:
            raise IssueError(f"{where}: not a JPEG, PNG, GIF or WebP image") from None
        except (OSError, SyntaxError, ValueError, EOFError, ImageCms.PyCMSError) as exc:
            raise IssueError(f"{where}: cannot be decoded: {_reason(exc)}") from None


def _wants_png(im: Image.Image) -> bool:
    """Transparency or a palette (a logo, a diagram): PNG keeps it exact; photos go JPEG."""
    return "A" in im.getbands() or "transparency" in im.info or im.mode in ("P", "1")


def _prepare(im: Image.Image, max_width: int, as_png: bool) -> Image.Image:
    icc = im.info.get("icc_profile")
    alpha = as_png and ("A" in im.getbands() or "transparency" in im.info)
    if im.format in ("JPEG", "MPO"):
        # Let libjpeg decode at 1/2, 1/4 or 1/8 scale when that still leaves max_width in
        # both directions (either may end up the width once turned upright): 2-4x faster.
        im.draft(None, (max_width, max_width))
    upright = ImageOps.exif_transpose(im)
    if icc and upright.mode in ("RGB", "RGBA", "CMYK"):  # before any conversion: CMYK too
        upright = _to_srgb(upright, icc, "RGBA" if alpha else "RGB")
    gray = upright.mode in ("L", "LA")
    target = ("LA" if alpha else "L") if gray else ("RGBA" if alpha else "RGB")
    if upright.mode != target:
        upright = upright.convert(target)
    if upright.width > max_width:
        height = max(1, round(upright.height * max_width / upright.width))
        upright = upright.resize((max_width, height), Image.Resampling.LANCZOS)
    # Only the pixels go on: a new image has no info, EXIF, XMP or profile to carry along.
    return Image.frombytes(upright.mode, upright.size, upright.tobytes())


def _to_srgb(im: Image.Image, icc: bytes, mode: str) -> Image.Image:
    """The pixels converted from their embedded profile to sRGB (``mode``: RGB or RGBA)."""
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        converted = ImageCms.profileToProfile(im, source, _SRGB, outputMode=mode)
    except (ImageCms.PyCMSError, OSError, ValueError):
        return im  # a broken profile: the pixels are taken as sRGB, as clients would
    assert converted is not None  # not in place
    return converted


def _encode(im: Image.Image, as_png: bool) -> tuple[bytes, str]:
    out = io.BytesIO()
    if as_png:
        im.save(out, "PNG", optimize=True)
        return out.getvalue(), "png"
    im.save(out, "JPEG", quality=JPEG_QUALITY, optimize=True, progressive=True)
    return out.getvalue(), "jpg"


def _reason(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return text[:120]
