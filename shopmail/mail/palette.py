"""The mail palette from the shop's brand colours: readable in light and in dark mode.

Mail clients show the same HTML on a white card and, in dark mode, on a dark one (Apple Mail and
Outlook apply the templates' `prefers-color-scheme: dark` styles; others invert on their own). The
brand colour is used as it is for buttons (with whichever of the brand text colour, white or near
black reads best on it) and, for text and links, shaded just enough to reach WCAG's 4.5:1 contrast
on the light card and tinted just enough to reach it on the dark card.
"""

from __future__ import annotations

LIGHT_CARD = "#ffffff"
DARK_CARD = "#1c1c1e"
TEXT = "#222222"
DARK_TEXT = "#e8e8ea"
MUTED = "#5c5c66"
DARK_MUTED = "#b4b4bc"
MIN_CONTRAST = 4.5  # WCAG 2 AA for body text


def _rgb(color: str) -> tuple[int, int, int]:
    value = color.lstrip("#")
    return int(value[0:2], 16), int(value[2:4], 16), int(value[4:6], 16)


def _hex(rgb: tuple[float, float, float]) -> str:
    return "#" + "".join(f"{max(0, min(255, round(c))):02x}" for c in rgb)


def luminance(color: str) -> float:
    """WCAG relative luminance of a `#rrggbb` colour."""

    def channel(c: int) -> float:
        s = c / 255
        return s / 12.92 if s <= 0.04045 else ((s + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(c) for c in _rgb(color))
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a: str, b: str) -> float:
    """WCAG contrast ratio of two `#rrggbb` colours (1 to 21)."""
    high, low = sorted((luminance(a), luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def readable_on(color: str, background: str, minimum: float = MIN_CONTRAST) -> str:
    """`color`, mixed towards black (on a light background) or white (on a dark one) in small steps
    until its contrast with `background` reaches `minimum`."""
    target = (0, 0, 0) if luminance(background) > 0.18 else (255, 255, 255)
    rgb = _rgb(color)
    for step in range(21):
        share = step / 20
        mixed = _hex(tuple(c + (t - c) * share for c, t in zip(rgb, target, strict=True)))
        if contrast(mixed, background) >= minimum:
            return mixed
    return _hex(target)


def palette(brand_color: str, brand_text_color: str) -> dict[str, str]:
    """The colours templates use (`shop.palette.*`)."""
    brand = brand_color.lower()
    candidates = (brand_text_color.lower(), "#ffffff", "#111111")
    button_text = next((c for c in candidates if contrast(c, brand) >= MIN_CONTRAST), None)
    if button_text is None:
        button_text = max(candidates, key=lambda c: contrast(c, brand))
    return {
        "button": brand,
        "button_text": button_text,
        "accent": readable_on(brand, LIGHT_CARD),
        "accent_dark": readable_on(brand, DARK_CARD),
        "text": TEXT,
        "text_dark": DARK_TEXT,
        "muted": MUTED,
        "muted_dark": DARK_MUTED,
        "card": LIGHT_CARD,
        "card_dark": DARK_CARD,
        "page": "#f2f2f5",
        "page_dark": "#111113",
        "line": "#e4e4e8",
        "line_dark": "#3a3a3f",
    }
