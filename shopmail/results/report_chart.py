"""The campaign result as a small SVG bar chart (hand-written SVG: no plotting dependency).

Two panels: conversion (%) and revenue per recipient, each with a mailed and a holdout bar.
"""

from __future__ import annotations

from datetime import date
from html import escape
from pathlib import Path

from shopmail.results.attribution import CampaignResult

WIDTH, HEIGHT = 640, 360
COLOURS = {"mailed": "#2563eb", "holdout": "#9ca3af"}
_PANEL_W, _TOP, _BOTTOM = 280, 70, 300  # panel width, plot top and baseline (y)


def _panel(x0: int, title: str, values: dict[str, float | None], fmt: str) -> list[str]:
    top = max((v for v in values.values() if v is not None), default=0.0) or 1.0
    parts = [
        f'<text x="{x0 + _PANEL_W / 2}" y="{_TOP - 20}" text-anchor="middle" font-size="14" '
        f'font-weight="bold">{escape(title)}</text>',
        f'<line x1="{x0 + 20}" y1="{_BOTTOM}" x2="{x0 + _PANEL_W - 20}" y2="{_BOTTOM}" stroke="#374151"/>',
    ]
    bar_w = 80
    for i, (group, value) in enumerate(values.items()):
        x = x0 + 50 + i * 110
        height = 0.0 if value is None else (_BOTTOM - _TOP) * value / top
        label = "–" if value is None else fmt.format(value)
        parts += [
            f'<rect x="{x}" y="{_BOTTOM - height:.1f}" width="{bar_w}" height="{height:.1f}" '
            f'fill="{COLOURS[group]}"><title>{group}: {escape(label)}</title></rect>',
            f'<text x="{x + bar_w / 2}" y="{_BOTTOM - height - 6:.1f}" text-anchor="middle" '
            f'font-size="12">{escape(label)}</text>',
            f'<text x="{x + bar_w / 2}" y="{_BOTTOM + 18}" text-anchor="middle" '
            f'font-size="12">{group}</text>',
        ]
    return parts


def chart_svg(result: CampaignResult) -> str:
    """The SVG document (UTF-8 text)."""
    m, h = result.mailed, result.holdout
    conversion = {
        "mailed": None if m.conversion is None else m.conversion * 100,
        "holdout": None if h.conversion is None else h.conversion * 100,
    }
    revenue = {"mailed": m.revenue_per_recipient, "holdout": h.revenue_per_recipient}
    p = result.p_value
    foot = f"mailed {m.recipients:,} · holdout {h.recipients:,} · {result.window_days}-day window" + (
        "" if p is None else f" · conversion p = {p:.3f}"
    )
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif">',
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>',
        f'<text x="{WIDTH / 2}" y="24" text-anchor="middle" font-size="16" font-weight="bold">'
        f"{escape(result.title())}</text>",
        *_panel(20, "Conversion", conversion, "{:.2f} %"),
        *_panel(340, "Revenue per recipient", revenue, "{:,.2f}"),
        f'<text x="{WIDTH / 2}" y="{HEIGHT - 14}" text-anchor="middle" font-size="12" fill="#374151">'
        f"{escape(foot)}</text>",
        "</svg>",
    ]
    return "\n".join(parts) + "\n"


def default_chart_path(data_dir: Path, campaign: str, day: date) -> Path:
    return data_dir / "reports" / f"{campaign}-{day.isoformat()}.svg"


def save_chart(result: CampaignResult, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(chart_svg(result), encoding="utf-8")
    return path
