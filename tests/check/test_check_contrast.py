"""WCAG 2.x contrast, computed by hand in mailer.check.contrast, against known pairs."""

from __future__ import annotations

import pytest

from mailer.check.contrast import contrast_ratio, layout_pairs, parse_colour, relative_luminance

# (text, background, the ratio WCAG's formula gives, to 2 decimals: WebAIM's checker agrees)
KNOWN = [
    ("#000000", "#ffffff", 21.0),
    ("#ffffff", "#ffffff", 1.0),
    ("#777777", "#ffffff", 4.48),  # the classic "just fails AA" grey
    ("#767676", "#ffffff", 4.54),  # the lightest grey that passes AA on white
    ("#595959", "#ffffff", 7.0),  # AAA's 7:1
    ("#ff0000", "#ffffff", 4.0),
    ("#0000ff", "#ffffff", 8.59),
    ("#fff", "#12355b", 12.46),
]


@pytest.mark.parametrize(("text", "background", "ratio"), KNOWN)
def test_contrast_of_known_pairs(text: str, background: str, ratio: float) -> None:
    fg, bg = parse_colour(text), parse_colour(background)
    assert fg is not None and bg is not None
    assert round(contrast_ratio(fg, bg), 2) == ratio
    assert contrast_ratio(fg, bg) == contrast_ratio(bg, fg)  # symmetric: lighter over darker


def test_relative_luminance_ends_and_the_linear_segment() -> None:
    assert relative_luminance((0, 0, 0)) == 0.0
    assert relative_luminance((255, 255, 255)) == pytest.approx(1.0)
    # 10/255 = 0.039 is below the 0.04045 knee: divided by 12.92, not the power curve.
    assert relative_luminance((10, 10, 10)) == pytest.approx(10 / 255 / 12.92)


def test_colour_spellings() -> None:
    assert parse_colour("#ABC") == (0xAA, 0xBB, 0xCC)
    assert parse_colour("rgb(1, 2, 3)") == (1, 2, 3)
    assert parse_colour("White") == (255, 255, 255)
    assert parse_colour("{{ colour }}") is None
    assert parse_colour("transparent") is None


def test_layout_pairs_inherit_backgrounds_and_defaults() -> None:
    layout = "\n".join(
        [
            "<mjml><mj-head><mj-attributes>",
            '<mj-text color="#777777" />',  # line 2: the default colour
            '<mj-section background-color="#ffffff" />',
            "</mj-attributes>",
            "<mj-style>.big a { color:#999999; font-size:24px; }",  # line 5
            "@media (x) { .big a { color:#fff; } }",
            "</mj-style></mj-head>",
            '<mj-body background-color="#000000"><mj-section><mj-column>',
            '<mj-text css-class="big">x</mj-text>',  # line 9
            '<mj-text color="#ffffff" font-size="30px">y</mj-text>',  # line 10
            "</mj-column></mj-section></mj-body></mjml>",
        ]
    )
    pairs = [(p.line, p.text, p.background, p.large) for p in layout_pairs(layout)]
    assert pairs == [
        (2, "#777777", "#ffffff", False),  # reported where the colour is set
        (10, "#ffffff", "#ffffff", True),
        (5, "#999999", "#ffffff", True),  # the rule, on its text block's section; not @media
    ]
