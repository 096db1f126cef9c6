"""The email in a real browser (Debian's Chromium via Playwright) at phone and desktop widths.

Screenshots go to test-artifacts/ (compose-*.png).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mailer.compose.build import build
from mailer.compose.issue import load_issue
from mailer.compose.model import Newsletter
from tests.conftest import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, SAMPLE_ISSUE
from tests.photos import camera_photo

pytestmark = pytest.mark.browser


# Contrast of every visible text against its effective background (WCAG 2 formula).
CONTRAST_JS = """
() => {
  const rgb = s => (s.match(/[\\d.]+/g) || []).map(Number);
  const lum = ([r, g, b]) => {
    const c = [r, g, b].map(v => (v /= 255) <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4);
    return 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2];
  };
  const background = el => {
    for (; el; el = el.parentElement) {
      const c = rgb(getComputedStyle(el).backgroundColor);
      if (c.length === 3 || (c.length === 4 && c[3] > 0)) return c.slice(0, 3);
    }
    return [255, 255, 255];
  };
  const out = [];
  for (const el of document.body.querySelectorAll('*')) {
    const own = [...el.childNodes].some(n => n.nodeType === 3 && n.textContent.trim());
    if (!own || !el.getClientRects().length) continue;
    const style = getComputedStyle(el);
    if (style.visibility === 'hidden' || parseFloat(style.opacity) === 0) continue;
    const a = lum(rgb(style.color)), b = lum(background(el));
    const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    out.push({text: el.textContent.trim().slice(0, 40), ratio, size: parseFloat(style.fontSize)});
  }
  return out;
}
"""

LAYOUT_JS = """
() => {
  const flow = document.querySelector('td.flow');
  const p = flow.querySelector('.title ~ p');  // an article paragraph (not the notice)
  const rect = e => e.getBoundingClientRect();
  return {
    scrollWidth: document.documentElement.scrollWidth,
    clientWidth: document.documentElement.clientWidth,
    column: rect(flow).width,
    text: rect(flow.querySelector('.title')).width,
    fontSize: parseFloat(getComputedStyle(p).fontSize),
    lineHeight: parseFloat(getComputedStyle(p).lineHeight),
    titleLefts: [...document.querySelectorAll('.title')].map(h => Math.round(rect(h).left)),
    widest: Math.max(...[...document.body.querySelectorAll('*')].map(e => rect(e).right)),
  };
}
"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def sample_file(newsletter: Newsletter, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("browser") / "index.html"
    path.write_text(build(SAMPLE_ISSUE, newsletter).html, encoding="utf-8")
    return path


def _open(browser: Any, path: Path, width: int, color_scheme: str = "light") -> Any:
    page = browser.new_page(viewport={"width": width, "height": 900}, color_scheme=color_scheme)
    # The email must not need the network: fail any request that is not the file itself.
    page.route(
        "**/*",
        lambda route: route.continue_() if route.request.url.startswith("file:") else route.abort(),
    )
    page.goto(path.as_uri())
    return page


def test_phone_375_one_column_no_horizontal_scroll(browser: Any, sample_file: Path) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page = _open(browser, sample_file, 375)
    m = page.evaluate(LAYOUT_JS)
    assert m["scrollWidth"] <= m["clientWidth"] == 375
    assert m["widest"] <= 375
    assert 340 <= m["column"] <= 375  # the text column takes the phone's width
    assert m["text"] >= 320  # narrow side padding on phones
    assert len(set(m["titleLefts"])) == 1  # one column: every title starts at the same x
    assert m["fontSize"] >= 16 and m["lineHeight"] >= 1.4 * m["fontSize"]
    page.screenshot(path=str(ARTIFACTS / "compose-sample-375.png"))
    page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
    page.screenshot(path=str(ARTIFACTS / "compose-sample-375-footer.png"))
    page.close()


def test_desktop_1200_comfortable_reading_width(browser: Any, sample_file: Path) -> None:
    page = _open(browser, sample_file, 1200)
    m = page.evaluate(LAYOUT_JS)
    assert m["scrollWidth"] <= m["clientWidth"]
    assert 600 <= m["column"] <= 640
    assert 540 <= m["text"] <= 600  # ~70-80 characters a line at 16 px
    assert m["fontSize"] >= 16
    page.screenshot(path=str(ARTIFACTS / "compose-sample-1200.png"))
    page.screenshot(path=str(ARTIFACTS / "compose-sample-1200-full.png"), full_page=True)
    page.close()


@pytest.mark.parametrize("width", [375, 1200])
def test_text_is_legible_and_contrasted(browser: Any, sample_file: Path, width: int) -> None:
    page = _open(browser, sample_file, width)
    texts = page.evaluate(CONTRAST_JS)
    page.close()
    assert len(texts) > 200
    low = [t for t in texts if t["ratio"] < 4.5]
    assert low == [], low[:5]
    small = [t for t in texts if t["size"] < 13]
    assert small == [], small[:5]


def test_small_issue_with_image_fits_the_phone(
    browser: Any, issue: Path, newsletter: Newsletter
) -> None:
    path = issue.parent / "small.html"
    path.write_text(build(issue, newsletter).html, encoding="utf-8")
    # A 1200 px wide picture, served locally for the snippet's image URL.
    canvas = browser.new_page(viewport={"width": 1200, "height": 500})
    canvas.set_content('<body style="margin:0;background:#1c7c9c"></body>')
    picture = canvas.screenshot()
    canvas.close()
    page = browser.new_page(viewport={"width": 375, "height": 900})
    page.route(
        "https://example.org/images/groups.png",
        lambda route: route.fulfill(body=picture, content_type="image/png"),
    )
    page.goto(path.as_uri())
    page.wait_for_function("document.querySelector('td.flow img').complete")
    m = page.evaluate(LAYOUT_JS)
    img = page.evaluate(
        "(() => { const r = document.querySelector('td.flow img')"
        ".getBoundingClientRect(); return [r.width, r.right]; })()"
    )
    assert m["scrollWidth"] <= m["clientWidth"]
    assert img[0] >= 320 and img[1] <= 375  # scaled down to the column, not cropped
    page.screenshot(path=str(ARTIFACTS / "compose-small-375.png"), full_page=True)
    page.close()


PREHEADER_JS = """
() => {
  const div = document.body.firstElementChild;
  return {
    text: div.textContent.trim(),
    boxes: div.getClientRects().length,
    width: div.getBoundingClientRect().width,
    height: div.getBoundingClientRect().height,
    shown: document.body.innerText,
  };
}
"""


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_preheader_is_not_visible(browser: Any, sample_file: Path, scheme: str) -> None:
    page = _open(browser, sample_file, 375, scheme)
    found = page.evaluate(PREHEADER_JS)
    page.close()
    preheader = load_issue(SAMPLE_ISSUE).meta.preheader
    assert found["text"].startswith(preheader)  # the div is the preheader
    assert found["boxes"] == 0 and found["width"] == found["height"] == 0  # nothing laid out
    assert preheader not in found["shown"] and preheader[:30] not in found["shown"]
    assert "Democracy in Uzbekistan" in found["shown"]  # innerText does show the rest


# The effective background of the article column and the footer, and whether the page
# is in dark mode at all.
SCHEME_JS = """
() => {
  const rgb = s => (s.match(/[\\d.]+/g) || []).map(Number);
  const background = el => {
    for (; el; el = el.parentElement) {
      const c = rgb(getComputedStyle(el).backgroundColor);
      if (c.length === 3 || (c.length === 4 && c[3] > 0)) return c.slice(0, 3);
    }
    return [255, 255, 255];
  };
  return {
    dark: matchMedia('(prefers-color-scheme: dark)').matches,
    page: background(document.body),
    column: background(document.querySelector('td.flow')),
    footer: background(document.querySelector('td.foot')),
    text: rgb(getComputedStyle(document.querySelector('td.flow p')).color),
  };
}
"""


def _luminance(rgb: list[float]) -> float:
    def channel(v: float) -> float:
        v /= 255
        return v / 12.92 if v <= 0.03928 else ((v + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(v) for v in rgb)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


@pytest.mark.parametrize("width", [375, 1200])
def test_dark_mode_is_dark_and_readable(browser: Any, sample_file: Path, width: int) -> None:
    page = _open(browser, sample_file, width, "dark")
    found = page.evaluate(SCHEME_JS)
    texts = page.evaluate(CONTRAST_JS)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"compose-sample-dark-{width}.png"))
    if width == 375:
        page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
        page.screenshot(path=str(ARTIFACTS / "compose-sample-dark-375-footer.png"))
    page.close()
    assert found["dark"]
    # The layout's own dark colours took over: dark backgrounds, light text.
    for name in ("page", "column", "footer"):
        assert _luminance(found[name]) < 0.03, (name, found[name])
    assert _luminance(found["text"]) > 0.6, found["text"]
    assert len(texts) > 200
    low = [t for t in texts if t["ratio"] < 4.5]
    assert low == [], low[:5]


def test_the_light_page_stays_light(browser: Any, sample_file: Path) -> None:
    page = _open(browser, sample_file, 375, "light")
    found = page.evaluate(SCHEME_JS)
    page.close()
    assert not found["dark"]
    assert found["column"] == [255, 255, 255] and found["page"] == [233, 237, 242]


def test_a_right_to_left_language_reads_right_to_left(
    browser: Any, issue: Path, newsletter: Newsletter
) -> None:
    path = issue.parent / "rtl.html"
    arabic = dataclasses.replace(newsletter, language="ar")
    path.write_text(build(issue, arabic).html, encoding="utf-8")
    page = _open(browser, path, 375)
    found = page.evaluate(
        """() => {
          const flow = document.querySelector('td.flow'), title = flow.querySelector('.title');
          const column = flow.getBoundingClientRect(), box = title.getBoundingClientRect();
          const range = document.createRange();
          range.selectNodeContents(flow.querySelector('.title ~ p'));
          const words = range.getBoundingClientRect();
          return {
            lang: document.documentElement.lang,
            dir: document.documentElement.dir,
            direction: getComputedStyle(title).direction,
            align: getComputedStyle(flow.firstElementChild).textAlign,
            right: column.right - parseFloat(getComputedStyle(flow).paddingRight) - words.right,
            titleRight: column.right - box.right,
          };
        }"""
    )
    page.screenshot(path=str(ARTIFACTS / "compose-small-rtl-375.png"), full_page=True)
    page.close()
    assert (found["lang"], found["dir"], found["direction"]) == ("ar", "rtl", "rtl")
    assert found["align"] == "right"
    assert abs(found["right"]) <= 1  # the paragraph's lines end at the column's right edge
    assert found["titleRight"] <= 40  # within the column's side padding


PHOTO_JS = """
() => {
  const img = document.querySelector('td.flow img[alt="Delegates in Washington"]');
  const r = img.getBoundingClientRect();
  return {complete: img.complete, natural: [img.naturalWidth, img.naturalHeight],
          box: [r.width, r.height, r.left, r.right],
          scrollWidth: document.documentElement.scrollWidth,
          clientWidth: document.documentElement.clientWidth};
}
"""


@pytest.mark.parametrize("width", [375, 1200])
def test_a_photo_from_the_issue_folder_fits_phone_and_desktop(
    browser: Any, issue: Path, newsletter: Newsletter, rng: Any, width: int
) -> None:
    """The published photo, fetched from its BASE_URL/media/ URL (answered here by the
    build's bytes), upright and in proportion in the column at both widths."""
    camera_photo(issue / "photo.jpg", rng)
    article = issue / "study-tour.md"
    text = article.read_text(encoding="utf-8").replace(
        "---\n", "---\nimage: photo.jpg\nalt: Delegates in Washington\n", 1
    )
    article.write_text(text, encoding="utf-8")
    https = dataclasses.replace(newsletter, base_url="https://news.example.org")
    built = build(issue, https)
    media = {image.name: image for image in built.composed.media}
    path = issue.parent / "photo.html"
    path.write_text(built.html, encoding="utf-8")
    page = browser.new_page(viewport={"width": width, "height": 900})
    fetched: list[str] = []

    def answer(route: Any) -> None:
        name = route.request.url.rsplit("/", 1)[1]
        fetched.append(name)
        route.fulfill(body=media[name].data, content_type=media[name].content_type)

    page.route("https://news.example.org/media/*", answer)
    page.route("https://example.org/**", lambda route: route.abort())
    page.goto(path.as_uri())
    page.wait_for_function(
        "document.querySelector('td.flow img[alt=\"Delegates in Washington\"]').complete"
    )
    found = page.evaluate(PHOTO_JS)
    ARTIFACTS.mkdir(exist_ok=True)
    page.locator('td.flow img[alt="Delegates in Washington"]').scroll_into_view_if_needed()
    page.screenshot(path=str(ARTIFACTS / f"compose-photo-{width}.png"))
    page.close()
    assert fetched == list(media)
    assert found["natural"] == [1136, 1515]  # portrait: turned upright
    shown_width, shown_height, left, right = found["box"]
    assert found["scrollWidth"] <= found["clientWidth"] == width
    assert right <= width and left >= 0, found
    expected = 568 if width == 1200 else width - 2 * 18  # the column, less the phone padding
    assert abs(shown_width - expected) <= 1
    assert abs(shown_height / shown_width - 1515 / 1136) < 0.01  # in proportion
