"""Text colour contrast in the layout, against WCAG 2.x AA (4.5:1, 3:1 for large text).

Relative luminance and the contrast ratio are WCAG 2.x's own formulas (a dozen lines:
written out here rather than adding a colour library for them). The colours come from the
layout's source, so a finding names its line: each ``mj-text``'s ``color`` against the
``background-color`` of its section, column or body (``mj-attributes`` defaults included,
MJML's own defaults otherwise), and each ``mj-style`` rule that sets ``color`` or a
background, against its own background or that of the ``mj-text`` whose ``css-class`` the
selector names. Rules inside ``@media`` blocks (the dark-mode colours) are not checked:
which of them apply together is up to the mail program. Colours written as Jinja
expressions are skipped.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from mailer.check.findings import Finding, warning

AA_NORMAL = 4.5
AA_LARGE = 3.0  # 24px and up, or 18.66px (14pt) bold and up
_NAMED = {
    "white": "#ffffff",
    "black": "#000000",
    "red": "#ff0000",
    "gray": "#808080",
    "grey": "#808080",
    "silver": "#c0c0c0",
    "blue": "#0000ff",
    "navy": "#000080",
}
_MJML_TEXT_COLOUR = "#000000"  # MJML's default for mj-text
_PAGE = "#ffffff"  # what shows through when nothing sets a background

RGB = tuple[int, int, int]


def parse_colour(text: str) -> RGB | None:
    """``#abc``, ``#aabbcc``, ``rgb(1, 2, 3)`` or a few names; None for anything else."""
    value = _NAMED.get(text.strip().lower(), text.strip().lower())
    hexa = re.fullmatch(r"#([0-9a-f]{3}|[0-9a-f]{6})", value)
    if hexa:
        digits = hexa.group(1)
        if len(digits) == 3:
            digits = "".join(c * 2 for c in digits)
        return (int(digits[0:2], 16), int(digits[2:4], 16), int(digits[4:6], 16))
    rgb = re.fullmatch(r"rgb\(\s*(\d{1,3})\s*,\s*(\d{1,3})\s*,\s*(\d{1,3})\s*\)", value)
    if rgb:
        r, g, b = (min(int(x), 255) for x in rgb.groups())
        return (r, g, b)
    return None


def relative_luminance(colour: RGB) -> float:
    """WCAG 2.x relative luminance of an sRGB colour (0 for black, 1 for white)."""

    def linear(channel: int) -> float:
        c = channel / 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (linear(c) for c in colour)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast_ratio(a: RGB, b: RGB) -> float:
    """(L1 + 0.05) / (L2 + 0.05), the lighter over the darker: from 1 to 21."""
    light, dark = sorted((relative_luminance(a), relative_luminance(b)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


@dataclass(frozen=True)
class Pair:
    line: int
    what: str
    text: str  # the colours as written
    background: str
    large: bool


def check_contrast(layout: Path) -> list[Finding]:
    try:
        source = layout.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return []  # the build names the layout
    found = []
    for pair in layout_pairs(source):
        fg, bg = parse_colour(pair.text), parse_colour(pair.background)
        if fg is None or bg is None:
            continue
        ratio = contrast_ratio(fg, bg)
        needed = AA_LARGE if pair.large else AA_NORMAL
        if ratio < needed:
            found.append(
                warning(
                    layout,
                    pair.line,
                    f"{pair.what}: text {pair.text} on {pair.background} has contrast "
                    f"{ratio:.2f}:1, below WCAG AA's {needed}:1",
                )
            )
    return found


_TAG = re.compile(r"<(/?)(mj-[a-z-]+)\b([^>]*?)(/?)>", re.DOTALL)
_ATTR = re.compile(r"([a-z-]+)=\"([^\"]*)\"")
_BLOCKS = ("mj-body", "mj-wrapper", "mj-section", "mj-group", "mj-column", "mj-hero")


@dataclass(frozen=True)
class _Text:
    classes: frozenset[str]
    colour: str
    background: str


def layout_pairs(source: str) -> list[Pair]:
    """Every (text colour, background) the layout sets, at the line that sets the colour (the
    element's own attribute, or the ``mj-attributes`` default it inherits)."""
    source = re.sub(r"\{#.*?#\}", lambda m: re.sub(r"[^\n]", " ", m.group(0)), source, flags=re.S)
    defaults: dict[str, dict[str, tuple[str, int]]] = {}  # tag -> attribute -> (value, line)
    pairs: list[Pair] = []
    texts: list[_Text] = []
    stack: list[str] = []  # backgrounds of the open blocks
    in_attributes = False
    for tag in _TAG.finditer(source):
        closing, name, attrs_text, empty = tag.groups()
        line = source.count("\n", 0, tag.start()) + 1
        if name == "mj-attributes":
            in_attributes = not closing
            continue
        own = {
            **defaults.get("mj-all", {}),
            **defaults.get(name, {}),
            **{k: (v, line) for k, v in _ATTR.findall(attrs_text)},
        }
        if in_attributes:
            defaults[name] = own
        elif name in _BLOCKS and closing:
            if stack:
                stack.pop()
        elif name in _BLOCKS:
            colour = own.get("background-color")
            stack.append(colour[0] if colour else (stack[-1] if stack else _PAGE))
            if empty:
                stack.pop()
        elif name in ("mj-text", "mj-button") and not closing:
            pair = _element_pair(name, own, stack[-1] if stack else _PAGE, line)
            pairs.append(pair)
            classes = frozenset(own.get("css-class", ("", 0))[0].split())
            texts.append(_Text(classes, pair.text, pair.background))
    pairs += _style_pairs(source, texts)
    return pairs


def _element_pair(name: str, own: dict[str, tuple[str, int]], around: str, line: int) -> Pair:
    """An mj-text's colour on its block's background; an mj-button's on its own."""
    if name == "mj-button":
        background = own.get("background-color", ("#414141", line))[0]  # MJML's defaults
        colour, where = own.get("color", ("#ffffff", line))
    else:
        background = around
        colour, where = own.get("color", (_MJML_TEXT_COLOUR, line))
    values = {k: v for k, (v, _) in own.items()}
    return Pair(where, name, colour, background, _large(values))


def _large(style: dict[str, str]) -> bool:
    size = re.search(r"(\d+(?:\.\d+)?)px", style.get("font-size", "") + " " + style.get("font", ""))
    bold = "bold" in style.get("font-weight", "") + style.get("font", "")
    if size is None:
        return False
    px = float(size.group(1))
    return px >= 24 or (bold and px >= 18.66)


def _style_pairs(source: str, texts: list[_Text]) -> Iterator[Pair]:
    """The top-level rules of every mj-style block (not those inside @media)."""
    for block in re.finditer(r"<mj-style[^>]*>(.*?)</mj-style>", source, re.S):
        css, offset = block.group(1), block.start(1)
        for rule in _top_level_rules(css):
            start, selector, body = rule
            decls = dict(
                (k.strip().lower(), v.strip())
                for k, _, v in (d.partition(":") for d in body.split(";"))
                if v.strip()
            )
            colour = decls.get("color")
            own_bg = decls.get("background-color") or decls.get("background")
            if colour is None and own_bg is None:
                continue
            classes = set(re.findall(r"\.([\w-]+)", selector))
            host = next((t for t in texts if t.classes & classes), None)
            if host is None:
                continue  # a rule for no text block of ours: nothing to pair it with
            line = source.count("\n", 0, offset + start) + 1
            yield Pair(
                line,
                f"the rule {' '.join(selector.split())!r}",
                colour or host.colour,
                own_bg or host.background,
                _large(decls),
            )


def _top_level_rules(css: str) -> Iterator[tuple[int, str, str]]:
    """(offset, selector, declarations) of each rule not nested in an at-rule."""
    depth, start, selector_start = 0, 0, 0
    at_rule_depth: int | None = None
    for i, char in enumerate(css):
        if char == "{":
            if depth == 0 and css[selector_start:i].strip().startswith("@"):
                at_rule_depth = 0
            elif at_rule_depth is None and depth == 0:
                start = i
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                if at_rule_depth is None:
                    selector = css[selector_start:start]
                    offset = selector_start + len(selector) - len(selector.lstrip())
                    yield offset, selector.strip(), css[start + 1 : i]
                at_rule_depth = None
                selector_start = i + 1
