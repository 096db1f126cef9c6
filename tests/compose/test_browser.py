"""The email in a real browser (Debian's Chromium via Playwright) at phone and desktop widths.

Screenshots go to test-artifacts/ (compose-*.png).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mailer.compose.build import build
from mailer.compose.model import Newsletter
from tests.conftest import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, SAMPLE_ISSUE

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
  const p = flow.querySelector('h3 ~ p');  // an article paragraph (not the notice)
  const rect = e => e.getBoundingClientRect();
  return {
    scrollWidth: document.documentElement.scrollWidth,
    clientWidth: document.documentElement.clientWidth,
    column: rect(flow).width,
    text: rect(flow.querySelector('h3')).width,
    fontSize: parseFloat(getComputedStyle(p).fontSize),
    lineHeight: parseFloat(getComputedStyle(p).lineHeight),
    titleLefts: [...document.querySelectorAll('h3')].map(h => Math.round(rect(h).left)),
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


def _open(browser: Any, path: Path, width: int) -> Any:
    page = browser.new_page(viewport={"width": width, "height": 900})
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
