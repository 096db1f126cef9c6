"""Images from the issue folder: published upright, small, without metadata, by content hash.

The photo is a generated 4000x3000 JPEG as a phone writes it (EXIF orientation 6, GPS, camera
serial, an ICC profile); every check reads the published bytes back with Pillow.
"""

from __future__ import annotations

import dataclasses
import io
import os
import random
import re
import threading
import urllib.request
from pathlib import Path

import pytest
from lxml import html as lxml_html
from PIL import Image
from typer.testing import CliRunner

from mailer.cli import app
from mailer.compose import ComposedIssue, compose_issue
from mailer.compose.build import build
from mailer.compose.images import COLUMN_WIDTH, MAX_PIXELS, MAX_WIDTH, MEDIA_NAME
from mailer.compose.model import Newsletter
from mailer.errors import IssueError
from mailer.preview import Preview, PreviewServer
from tests.conftest import REPO
from tests.photos import RED, SERIAL, alpha_png, bomb_png, camera_photo

BASE = "https://news.example.org"
CONFIG = ["--config", str(REPO / "mailer.toml")]


@pytest.fixture
def https(newsletter: Newsletter) -> Newsletter:
    return dataclasses.replace(newsletter, base_url=BASE)


def first_article(issue: Path) -> Path:
    return sorted(p for p in issue.glob("*.md"))[0]


def set_front_matter(article: Path, lines: str) -> int:
    """Add front matter ``lines`` after the title; return the line number of the first."""
    text = article.read_text(encoding="utf-8").split("\n")
    at = next(i for i, line in enumerate(text) if line.startswith("title:")) + 1
    text[at:at] = lines.split("\n")
    article.write_text("\n".join(text), encoding="utf-8")
    return at + 1


def append_body(article: Path, markdown: str) -> int:
    """Append a paragraph to the article; return its line number."""
    text = article.read_text(encoding="utf-8").rstrip("\n") + "\n\n"
    article.write_text(text + markdown + "\n", encoding="utf-8")
    return text.count("\n") + 1


def with_photo(issue: Path, rng: random.Random) -> tuple[Path, int]:
    camera_photo(issue / "photo.jpg", rng)
    article = first_article(issue)
    return article, set_front_matter(article, "image: photo.jpg\nalt: Delegates in Washington")


def published_image(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def test_camera_photo_is_published_upright_small_and_without_metadata(
    issue: Path, https: Newsletter, rng: random.Random
) -> None:
    article, line = with_photo(issue, rng)
    original = (issue / "photo.jpg").read_bytes()
    composed = compose_issue(issue, https)

    (image,) = composed.media
    (use,) = composed.images
    assert (use.source, use.line, use.ref, use.alt) == (article, line, "photo.jpg", use.alt)
    assert use.alt == "Delegates in Washington"
    assert (image.original_bytes, image.original_width, image.original_height) == (
        len(original),
        4000,
        3000,
    )
    assert MEDIA_NAME.match(image.name) and image.name.endswith(".jpg")
    assert image.content_type == "image/jpeg"
    published = published_image(image.data)
    assert published.format == "JPEG"
    # Turned upright (90 degrees clockwise): portrait, at most twice the column wide.
    assert (
        published.size == (image.width, image.height) == (MAX_WIDTH, round(4000 * MAX_WIDTH / 3000))
    )
    assert published.width <= 2 * COLUMN_WIDTH
    # The stored top-left red block is now top-right; the other corners are not red.
    w, h = published.size
    assert _near(published.getpixel((w - 10, 10)), RED)
    for corner in ((10, 10), (10, h - 10), (w - 10, h - 10)):
        assert not _near(published.getpixel(corner), RED), corner
    # No metadata at all: no EXIF (orientation, GPS, serial), no ICC profile, no XMP.
    assert len(published.getexif()) == 0
    assert not {"exif", "icc_profile", "xmp", "XML:com.adobe.xmp", "comment"} & set(published.info)
    assert b"Exif" not in image.data and SERIAL.encode() not in image.data
    assert b"41.0" not in image.data
    assert image.size < len(original) / 4


def _near(pixel: object, colour: tuple[int, int, int], slack: int = 40) -> bool:
    assert isinstance(pixel, tuple)
    return all(abs(a - b) <= slack for a, b in zip(pixel[:3], colour, strict=True))


def test_the_emails_img_has_alt_width_height_and_the_absolute_https_url(
    issue: Path, https: Newsletter, rng: random.Random
) -> None:
    with_photo(issue, rng)
    built = build(issue, https)
    (image,) = built.composed.media
    for page in (built.html, built.composed.web_html):
        (img,) = lxml_html.fromstring(page).xpath("//img[contains(@src, '/media/')]")
        assert img.get("src") == f"{BASE}/media/{image.name}"
        assert img.get("alt") == "Delegates in Washington"
        assert img.get("width") == str(COLUMN_WIDTH)
        assert img.get("height") == str(round(image.height * COLUMN_WIDTH / image.width))
        style = img.get("style").replace(" ", "")
        assert "width:100%" in style and "height:auto" in style  # fits a phone, in proportion
        assert f"max-width:{COLUMN_WIDTH}px" in style  # never wider than itself
    # Never attached: the email is HTML and text only, the photo is a link.
    assert image.data[:64].hex() not in built.html


def test_a_body_image_is_published_and_a_png_with_alpha_stays_png(
    issue: Path, https: Newsletter
) -> None:
    alpha_png(issue / "logo.png")
    article = first_article(issue)
    line = append_body(article, "Our partner: ![The partner's logo](logo.png)")
    composed = compose_issue(issue, https)
    (use,) = composed.images
    assert (use.source, use.line, use.alt) == (article, line, "The partner's logo")
    assert use.image.name.endswith(".png") and use.image.content_type == "image/png"
    published = published_image(use.image.data)
    assert published.format == "PNG" and published.mode == "RGBA"
    assert published.getpixel((0, 0))[3] == 0  # still transparent
    assert published.size == (MAX_WIDTH, MAX_WIDTH // 2)
    (img,) = lxml_html.fromstring(composed.web_html).xpath(f"//img[@src='{use.url}']")
    assert img.get("alt") == "The partner's logo"
    assert (img.get("width"), img.get("height")) == (str(COLUMN_WIDTH), str(COLUMN_WIDTH // 2))


def test_the_same_file_twice_is_published_once_and_small_ones_keep_their_size(
    issue: Path, https: Newsletter
) -> None:
    Image.new("RGB", (300, 200), (10, 120, 40)).save(issue / "small.jpg", quality=90)
    article = first_article(issue)
    append_body(article, "![A green field](small.jpg)\n\n![The same field](small.jpg)")
    composed = compose_issue(issue, https)
    assert len(composed.images) == 2 and len(composed.media) == 1
    use = composed.images[0]
    assert (use.image.width, use.image.height) == (300, 200)
    assert (use.display_width, use.display_height) == (300, 200)  # never enlarged
    (img, _) = lxml_html.fromstring(composed.web_html).xpath("//img[contains(@src, '/media/')]")
    assert (img.get("width"), img.get("height")) == ("300", "200")
    assert "max-width:300px" in img.get("style").replace(" ", "")


def test_images_change_the_content_hash(issue: Path, https: Newsletter) -> None:
    Image.new("RGB", (300, 200), (10, 120, 40)).save(issue / "p.jpg")
    append_body(first_article(issue), "![A field](p.jpg)")
    before = compose_issue(issue, https).content_hash
    Image.new("RGB", (300, 200), (200, 20, 40)).save(issue / "p.jpg")
    assert compose_issue(issue, https).content_hash != before


def _one_line_error(issue: Path, https: Newsletter) -> str:
    with pytest.raises(IssueError) as caught:
        compose_issue(issue, https)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_a_missing_file_is_one_line_with_file_and_line(issue: Path, https: Newsletter) -> None:
    article = first_article(issue)
    line = set_front_matter(article, "image: nowhere.jpg\nalt: Something")
    message = _one_line_error(issue, https)
    assert message == f"{article}:{line}: image 'nowhere.jpg': no such file in {issue}"


def test_a_missing_body_image_is_one_line_with_file_and_line(
    issue: Path, https: Newsletter
) -> None:
    article = first_article(issue)
    line = append_body(article, "Text first.\n![A chart](charts/missing.png)")
    assert _one_line_error(issue, https).startswith(
        f"{article}:{line + 1}: image 'charts/missing.png': no such file"
    )


@pytest.mark.parametrize(
    "side",
    [
        9_000,  # 81 million pixels: over our limit, where Pillow itself only warns
        30_000,  # 900 million: Pillow's own refusal, reported the same way
    ],
)
def test_a_decompression_bomb_is_one_line(issue: Path, https: Newsletter, side: int) -> None:
    assert side * side > MAX_PIXELS
    bomb_png(issue / "bomb.png", side)
    article = first_article(issue)
    line = append_body(article, "![A map](bomb.png)")
    message = _one_line_error(issue, https)
    assert message.startswith(f"{article}:{line}: image 'bomb.png': too large to decode safely")


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"GIF89a but not really", "not a JPEG, PNG, GIF or WebP image"),
        (b"plain text, not an image\n", "not a JPEG, PNG, GIF or WebP image"),
        (b"%!PS-Adobe-3.0 EPSF-3.0\n", "not a JPEG, PNG, GIF or WebP image"),  # no Ghostscript
        ("truncated", "cannot be decoded"),
    ],
)
def test_an_unreadable_image_is_one_line(
    issue: Path, https: Newsletter, rng: random.Random, content: bytes | str, expected: str
) -> None:
    path = issue / "broken.jpg"
    if content == "truncated":
        data = camera_photo(issue / "whole.jpg", rng, (800, 600)).read_bytes()
        (issue / "whole.jpg").unlink()
        path.write_bytes(data[: len(data) // 2])
    else:
        assert isinstance(content, bytes)
        path.write_bytes(content)
    article = first_article(issue)
    line = set_front_matter(article, "image: broken.jpg\nalt: A photo")
    message = _one_line_error(issue, https)
    assert message.startswith(f"{article}:{line}: image 'broken.jpg': {expected}"), message


def test_a_folder_named_as_an_image_is_one_line(issue: Path, https: Newsletter) -> None:
    (issue / "photos").mkdir()
    article = first_article(issue)
    line = append_body(article, "![A photo](photos)")
    assert _one_line_error(issue, https) == (
        f"{article}:{line}: image 'photos': is a folder, not an image file"
    )


@pytest.mark.parametrize("ref", ["../outside.jpg", "link.jpg", "/etc/passwd"])
def test_images_outside_the_issue_folder_are_refused(
    issue: Path, https: Newsletter, ref: str
) -> None:
    outside = issue.parent / "outside.jpg"
    Image.new("RGB", (10, 10)).save(outside)
    (issue / "link.jpg").symlink_to(outside)
    article = first_article(issue)
    line = set_front_matter(article, f"image: {ref}\nalt: A photo")
    message = _one_line_error(issue, https)
    assert message.startswith(f"{article}:{line}: image '{ref}': ")
    assert "outside the issue folder" in message or "relative to the issue folder" in message


def test_a_symlink_to_a_file_inside_the_folder_is_fine(issue: Path, https: Newsletter) -> None:
    (issue / ".drafts").mkdir()
    Image.new("RGB", (10, 10)).save(issue / ".drafts" / "p.jpg")
    (issue / "p.jpg").symlink_to(issue / ".drafts" / "p.jpg")
    append_body(first_article(issue), "![A dot](p.jpg)")
    assert len(compose_issue(issue, https).media) == 1


def test_remote_images_are_left_as_they_are(issue: Path, https: Newsletter) -> None:
    set_front_matter(first_article(issue), "image: https://example.org/a.jpg\nalt: Remote")
    composed = compose_issue(issue, https)
    assert composed.media == () and composed.images == ()
    (img,) = lxml_html.fromstring(composed.web_html).xpath("//img[@alt='Remote']")
    assert (img.get("src"), img.get("width"), img.get("height")) == (
        "https://example.org/a.jpg",
        str(COLUMN_WIDTH),
        None,
    )


def test_build_out_writes_the_media_and_reports_sizes(
    issue: Path, tmp_path: Path, rng: random.Random, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAILER_BASE_URL", BASE)
    with_photo(issue, rng)
    out = tmp_path / "out"
    result = CliRunner().invoke(app, [*CONFIG, "build", str(issue), "--out", str(out)])
    assert result.exit_code == 0, result.output
    (written,) = (out / "media").iterdir()
    assert MEDIA_NAME.match(written.name)
    assert f"{BASE}/media/{written.name}" in (out / "index.html").read_text(encoding="utf-8")
    assert published_image(written.read_bytes()).size == (1136, 1515)
    report = re.search(
        r"photo\.jpg 4000x3000 ([\d,]+) bytes -> (\S+) 1136x1515 ([\d,]+)", result.stdout
    )
    assert report is not None, result.stdout
    assert report.group(2) == written.name
    assert int(report.group(3).replace(",", "")) == written.stat().st_size
    # Writing again leaves the same file (same name, same bytes).
    again = CliRunner().invoke(app, [*CONFIG, "build", str(issue), "--out", str(out)])
    assert again.exit_code == 0 and os.listdir(out / "media") == [written.name]


def test_a_failed_build_writes_no_media(issue: Path, tmp_path: Path) -> None:
    Image.new("RGB", (10, 10)).save(issue / "p.jpg")
    append_body(first_article(issue), "![A dot](p.jpg)\n\n![A ghost](ghost.jpg)")
    out = tmp_path / "out"
    result = CliRunner().invoke(app, [*CONFIG, "build", str(issue), "--out", str(out)])
    assert result.exit_code == 1
    assert "ghost.jpg" in result.stderr and "Traceback" not in result.output
    assert not out.exists()


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as answer:
        text: str = answer.read().decode()
        return text


def test_preview_serves_the_images_itself(
    issue: Path, https: Newsletter, rng: random.Random
) -> None:
    with_photo(issue, rng)
    preview = Preview(issue, lambda: https)
    server = PreviewServer(preview, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        preview.refresh()
        page = _get(server.url)
        (src,) = lxml_html.fromstring(page).xpath("//img[@alt='Delegates in Washington']/@src")
        assert src.startswith("/media/") and BASE not in src
        web = _get(server.url + "web")
        assert f'src="{src}"' in web
        with urllib.request.urlopen(server.url.rstrip("/") + src, timeout=10) as answer:
            assert answer.headers["Content-Type"] == "image/jpeg"
            assert answer.headers["X-Content-Type-Options"] == "nosniff"
            assert published_image(answer.read()).size == (1136, 1515)
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(server.url + "media/" + "0" * 32 + ".jpg", timeout=10)
        assert missing.value.code == 404
        missing.value.close()
    finally:
        server.shutdown()
        server.server_close()


def test_the_scaffold_offers_toc_and_an_image(tmp_path: Path, rng: random.Random) -> None:
    issues = tmp_path / "issues"
    result = CliRunner().invoke(
        app, [*CONFIG, "new", "Spring news"], env={"MAILER_ISSUES_DIR": str(issues)}
    )
    assert result.exit_code == 0, result.output
    (folder,) = issues.iterdir()
    manifest = folder / "issue.toml"
    assert "\ntoc = false\n" in manifest.read_text(encoding="utf-8")
    article = folder / "first-article.md"
    text = article.read_text(encoding="utf-8")
    assert "# image: photo.jpg" in text and "# alt: " in text
    # Uncommented, with a photo in the folder, both work.
    manifest.write_text(manifest.read_text().replace("toc = false", "toc = true"))
    article.write_text(
        text.replace("# image: photo.jpg", "image: photo.jpg").replace("# alt:", "alt:")
    )
    camera_photo(folder / "photo.jpg", rng, (1200, 900))
    built = CliRunner().invoke(app, [*CONFIG, "build", str(folder), "--out", str(tmp_path / "o")])
    assert built.exit_code == 0, built.output
    assert "Images:   1" in built.stdout
    assert "In this issue" in (tmp_path / "o" / "index.html").read_text(encoding="utf-8")


def test_the_composed_issue_lists_no_images_when_there_are_none(sample: ComposedIssue) -> None:
    assert sample.media == () and sample.images == ()


def test_a_palette_gif_becomes_a_png_and_a_grey_photo_stays_grey(
    issue: Path, https: Newsletter
) -> None:
    chart = Image.new("P", (400, 300), 0)
    chart.putpalette([255, 255, 255, 200, 30, 30] + [0, 0, 0] * 254)
    chart.paste(1, (50, 50, 350, 250))
    chart.save(issue / "chart.gif")
    Image.linear_gradient("L").resize((2000, 1000)).save(issue / "grey.jpg", quality=90)
    append_body(first_article(issue), "![A bar chart](chart.gif)\n\n![A grey sky](grey.jpg)")
    chart_use, grey_use = compose_issue(issue, https).images
    published = published_image(chart_use.image.data)
    assert (published.format, published.size) == ("PNG", (400, 300))
    assert _near(published.getpixel((200, 150)), (200, 30, 30), slack=0)
    grey = published_image(grey_use.image.data)
    assert (grey.format, grey.mode, grey.size) == ("JPEG", "L", (MAX_WIDTH, MAX_WIDTH // 2))
