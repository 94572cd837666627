"""A campaign's results in a marketer's words: tables (Prefect table artifacts, the CLI), Markdown
(the `campaign-results` artifact) and an SVG chart per variant and per link."""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shopmail.results.engagement import (
    DIMENSION_WORDS,
    MACHINE_OPENS_NOTE,
    PHASE_WORDS,
    Engagement,
    EngagementReport,
)

if TYPE_CHECKING:
    from shopmail.results.attribution import CampaignResult


def which_is_which(window_days: int) -> str:
    """The one sentence that tells revenue after click from the holdout uplift."""
    return (
        f"Revenue after click counts the orders placed within {window_days} days after a click on one of "
        "these mails (the last click before an order gets it): what the mails touched; the holdout uplift "
        "compares the mailed customers with a random group that got nothing: what the mails caused."
    )


def pct(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value * 100:.{digits}f} %"


def money(value: float | None) -> str:
    return "–" if value is None else f"{value:,.2f}"


def minutes(value: float | None) -> str:
    if value is None:
        return "–"
    if value < 1:
        return f"{value * 60:.0f} s"
    if value < 90:
        return f"{value:.0f} min"
    return f"{value / 60:.1f} h"


def group_name(group: Engagement) -> str:
    """A group's label in words, e.g. `variant b · test group`."""
    if not group.label:
        return "all mails"
    parts = []
    for name, value in group.label.items():
        shown = PHASE_WORDS.get(value, value) if name == "test_phase" else value
        parts.append(f"{DIMENSION_WORDS[name]} {shown or '(none)'}")
    return " · ".join(parts)


def engagement_row(group: Engagement) -> dict[str, Any]:
    """One table row of a group: counts and rates under the words a marketer reads."""
    return {
        "mails": group_name(group),
        "sent": group.sent,
        "delivered": group.delivered,
        "delivery rate": pct(group.rate(group.delivered, group.sent)),
        "bounced (hard / soft / blocked)": f"{group.hard_bounces} / {group.soft_bounces} / {group.blocked}",
        "delayed (deferred)": group.deferred,
        "opened by people": group.opened,
        "open rate": pct(group.open_rate),
        "opened by a machine (Apple Mail)": group.machine_opened,
        "clicked": group.clicked,
        "click rate": pct(group.click_rate, 2),
        "clicks per open": pct(group.rate(group.clicked, group.opened)),
        "median time to first click": minutes(group.first_click_minutes),
        "unsubscribed": group.unsubscribed,
        "spam reports": group.spam_reports,
        "orders after a click": group.orders_after_click,
        "revenue after a click": money(group.revenue_after_click),
        "revenue per mail sent": money(group.revenue_per_mail),
    }


def engagement_rows(report: EngagementReport) -> list[dict[str, Any]]:
    rows = [engagement_row(g) for g in report.groups]
    if len(report.groups) != 1 or report.groups[0].label:
        rows.append(engagement_row(report.total))
    return rows


def link_rows(report: EngagementReport, limit: int = 30) -> list[dict[str, Any]]:
    """The most clicked links: where in the mail (button or block), which page or product."""
    variants = sorted({v for link in report.links for v in link.by_variant})
    rows = []
    for link in report.links[:limit]:
        row: dict[str, Any] = {
            "where in the mail": "unsubscribe link"
            if link.place == "unsubscribe"
            else (link.place or "(untagged)"),
            "product": link.product or "–",
            "page": link.page if link.place != "unsubscribe" else "–",
            "mails clicking it": link.mails,
            "clicks": link.clicks,
        }
        if len(variants) > 1:
            row.update({f"mails, variant {v}": link.by_variant.get(v, 0) for v in variants})
        rows.append(row)
    return rows


def _table(rows: list[dict[str, Any]]) -> list[str]:
    if not rows:
        return ["(none)"]
    head = list(rows[0])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(str(row.get(h, "")).replace("|", "\\|") for h in head) + " |" for row in rows]
    return lines


def bar(value: float | None, top: float, width: int = 20) -> str:
    """A text bar (renders everywhere Markdown does)."""
    if value is None or top <= 0:
        return ""
    return "█" * max(0, round(width * value / top))


def markdown(
    report: EngagementReport, holdout: CampaignResult | None = None, chart: Path | None = None
) -> str:
    """The whole result: engagement per group, a text chart, links, revenue after click, the holdout
    uplift and which is which."""
    first, last = report.since, report.until
    total = report.total
    lines = [
        f"# Results of {report.campaign}: mails queued {first:%Y-%m-%d %H:%M} – {last:%Y-%m-%d %H:%M} UTC",
        "",
        f"**{total.sent:,} mails sent, {total.delivered:,} delivered "
        f"({pct(total.rate(total.delivered, total.sent))}), "
        f"opened by {total.opened:,} people ({pct(total.open_rate)}), clicked by {total.clicked:,} "
        f"({pct(total.click_rate, 2)}); {total.orders_after_click:,} orders after a click, revenue "
        f"{money(total.revenue_after_click)}.**",
        "",
        MACHINE_OPENS_NOTE
        if not report.with_machine_opens
        else "Open rates include machine opens (Apple Mail Privacy Protection): they overstate people.",
        "",
        "## Per " + (", ".join(DIMENSION_WORDS[d] for d in report.by) or "campaign"),
        "",
        *_table(engagement_rows(report)),
    ]
    if len(report.groups) > 1:
        top_open = max((g.open_rate or 0 for g in report.groups), default=0)
        top_click = max((g.click_rate or 0 for g in report.groups), default=0)
        lines += ["", "| mails | open rate | | click rate | |", "|---|---:|---|---:|---|"]
        lines += [
            f"| {group_name(g)} | {pct(g.open_rate)} | {bar(g.open_rate, top_open)} | "
            f"{pct(g.click_rate, 2)} | {bar(g.click_rate, top_click)} |"
            for g in report.groups
        ]
    lines += ["", "## Links clicked", "", *_table(link_rows(report))]
    lines += ["", "## Revenue after click and holdout uplift", "", which_is_which(report.window_days), ""]
    lines += [
        f"- Revenue after click: {total.orders_after_click:,} orders, {money(total.revenue_after_click)} "
        f"({money(total.revenue_per_mail)} per mail sent)",
    ]
    if holdout is not None and holdout.holdout.recipients:
        lines += [
            f"- Holdout uplift: conversion {pct(holdout.mailed.conversion, 2)} mailed vs "
            f"{pct(holdout.holdout.conversion, 2)} held out ({_pp(holdout.conversion_uplift)}), incremental "
            f"revenue {money(holdout.incremental_revenue)}, p = "
            + ("–" if holdout.p_value is None else f"{holdout.p_value:.3f}"),
        ]
    else:
        lines += [
            "- Holdout uplift: no holdout group in this period (`holdout_percent` in the campaign file)."
        ]
    if chart is not None:
        lines += ["", f"Chart: `{chart}`"]
    return "\n".join(lines)


def _pp(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:+.2f} pp"


# --- chart ---------------------------------------------------------------------------------------

WIDTH = 720
COLOURS = ("#2563eb", "#db2777", "#16a34a", "#ea580c", "#7c3aed", "#0891b2")


def _bars(y0: int, title: str, items: list[tuple[str, float | None, str]]) -> tuple[list[str], int]:
    """Horizontal bars (label, value, shown text) under a title; returns the SVG parts and the height."""
    top = max((v for _, v, _ in items if v is not None), default=0.0) or 1.0
    parts = [f'<text x="16" y="{y0 + 18}" font-size="14" font-weight="bold">{escape(title)}</text>']
    y = y0 + 30
    for i, (label, value, text) in enumerate(items):
        width = 0.0 if value is None else 380 * value / top
        parts += [
            f'<text x="16" y="{y + 14}" font-size="12">{escape(label[:40])}</text>',
            f'<rect x="260" y="{y}" width="{width:.1f}" height="18" fill="{COLOURS[i % len(COLOURS)]}">'
            f"<title>{escape(label)}: {escape(text)}</title></rect>",
            f'<text x="{266 + width:.1f}" y="{y + 14}" font-size="12">{escape(text)}</text>',
        ]
        y += 24
    return parts, y - y0 + 10


def chart_svg(report: EngagementReport) -> str:
    """Open rate, click rate and revenue per mail per group, and the most clicked links."""
    groups = report.groups if report.groups else [report.total]
    panels = [
        ("Open rate (people)", [(group_name(g), g.open_rate, pct(g.open_rate)) for g in groups]),
        ("Click rate", [(group_name(g), g.click_rate, pct(g.click_rate, 2)) for g in groups]),
        (
            "Revenue after click per mail",
            [(group_name(g), g.revenue_per_mail, money(g.revenue_per_mail)) for g in groups],
        ),
        (
            "Most clicked links (mails)",
            [
                (f"{link.place or '-'}: {link.product or link.page}", float(link.mails), f"{link.mails:,}")
                for link in report.links[:8]
            ],
        ),
    ]
    parts: list[str] = []
    y = 40
    for title, items in panels:
        drawn, height = _bars(y, title, items)
        parts += drawn
        y += height
    head = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{y + 10}" '
        f'viewBox="0 0 {WIDTH} {y + 10}" font-family="sans-serif">',
        f'<rect width="{WIDTH}" height="{y + 10}" fill="white"/>',
        f'<text x="{WIDTH / 2}" y="24" text-anchor="middle" font-size="16" font-weight="bold">'
        f"{escape(f'Results of {report.campaign}')}</text>",
    ]
    return "\n".join([*head, *parts, "</svg>"]) + "\n"


def save_chart(report: EngagementReport, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(chart_svg(report), encoding="utf-8")
    return path
