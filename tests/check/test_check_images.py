"""`mailer check` on local images (mailer/compose/images.py publishes them): alt text at the
line that shows the image, and the published size against the budget."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PIL import Image
from typer.testing import Result

from mailer.check.images import IMAGE_BUDGET_BYTES
from tests.check.conftest import ISSUE, edit

STUDY = f"{ISSUE}/study-tour-usa.md"
EXAMPLE = "For example, meetings were held"  # line 10 of study-tour-usa.md


def small_photo(path: Path) -> Path:
    Image.new("RGB", (400, 300), (30, 120, 200)).save(path, "JPEG", quality=80)
    return path


def noisy_photo(path: Path) -> Path:
    """Noise does not compress: published at 1136 px wide it stays far over the budget."""
    Image.effect_noise((2400, 1800), 120).convert("RGB").save(path, "JPEG", quality=95)
    return path


def lines(result: Result) -> list[str]:
    return [x for x in result.stdout.rstrip("\n").split("\n")[:-1] if not x.startswith("note:")]


def test_a_local_image_with_alt_text_is_clean(check: Callable[..., Result], workdir: Path) -> None:
    small_photo(workdir / ISSUE / "tour.jpg")
    edit(workdir / STUDY, EXAMPLE, f"![The delegation in Boston](tour.jpg)\n{EXAMPLE}")
    edit(workdir / STUDY, "\n---\n", "\nimage: tour.jpg\nalt: The delegation\n---\n")
    result = check()
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{ISSUE}: 0 errors, 0 warnings\n"


def test_a_local_image_without_alt_text_is_an_error_at_its_line(
    check: Callable[..., Result], workdir: Path
) -> None:
    small_photo(workdir / ISSUE / "tour.jpg")
    edit(workdir / STUDY, EXAMPLE, f"Our visit:\n![](tour.jpg) {EXAMPLE}")  # the body's line 11
    result = check()
    assert result.exit_code == 1
    assert lines(result) == [
        f"{STUDY}:11: error: image has no alt text: write ![what it shows](url)"
    ]


def test_a_cover_image_without_alt_text_is_an_error_at_its_line(
    check: Callable[..., Result], workdir: Path
) -> None:
    small_photo(workdir / ISSUE / "tour.jpg")
    edit(workdir / STUDY, "\n---\n", "\nimage: tour.jpg\n---\n")
    result = check()
    assert result.exit_code == 1
    assert lines(result) == [
        f"{STUDY}:3: error: image without alt text: add 'alt: ...' describing it"
    ]


def test_a_missing_image_file_is_the_builds_error(
    check: Callable[..., Result], workdir: Path
) -> None:
    edit(workdir / STUDY, EXAMPLE, f"![The delegation](missing.jpg) {EXAMPLE}")
    result = check()
    assert result.exit_code == 1
    (line,) = lines(result)
    assert line.startswith(f"{STUDY}:10: error: image 'missing.jpg': no such file in "), line


def test_an_image_over_the_budget_is_a_warning_with_its_published_size(
    check: Callable[..., Result], workdir: Path
) -> None:
    noisy_photo(workdir / ISSUE / "crowd.jpg")
    small_photo(workdir / ISSUE / "tour.jpg")
    edit(workdir / STUDY, EXAMPLE, f"![A crowd](crowd.jpg) ![The tour](tour.jpg) {EXAMPLE}")
    result = check()
    assert result.exit_code == 0, result.output
    (line,) = lines(result)
    prefix = f"{STUDY}:10: warning: image 'crowd.jpg' is "
    assert line.startswith(prefix), line
    size = int(line[len(prefix) :].split(" ")[0].replace(",", ""))
    assert size > IMAGE_BUDGET_BYTES
    assert f"bytes as published (1136x852), over the {IMAGE_BUDGET_BYTES // 1000} KB budget" in line
