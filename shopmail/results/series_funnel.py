"""The funnel of a series (campaign files with `[[steps]]`): how many entered, what became of each
step (sent, held out, skipped and why), how many left the series and why, and how many ordered: the
mailed entries against the held-out ones.

Converted = an order at or after the moment the entry's first step fell due (its entry + the first
step's delay), for the mailed entries that got at least one step and for the held-out entries alike,
so both groups are measured from the same moment.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

import pandas as pd
from sqlalchemy import Engine, text

from segments.series import EXIT_WORDS
from shopmail.campaigns import Campaign
from shopmail.state import series


@dataclass
class StepCounts:
    label: str
    sent: int = 0
    held_out: int = 0
    open: int = 0  # claimed, failed or in doubt: the ledger will finish it
    skipped: dict[str, int] = field(default_factory=dict)


@dataclass
class SeriesFunnel:
    campaign: str
    entered: int
    entered_holdout: int
    steps: list[StepCounts]
    exited: dict[str, int]
    mailed: int  # entries (not held out) that got at least one step
    mailed_converted: int
    holdout_converted: int

    def rate(self, converted: int, total: int) -> str:
        return "-" if not total else f"{converted / total:.1%}"

    def rows(self) -> list[tuple[str, str]]:
        """(measure, value) lines in words, for the CLI and the artifact."""
        out = [("entered the series", f"{self.entered:,} ({self.entered_holdout:,} of them held out)")]
        for step in self.steps:
            out.append((f"{step.label}: sent", f"{step.sent:,}"))
            if step.held_out:
                out.append((f"{step.label}: held out", f"{step.held_out:,}"))
            if step.open:
                out.append((f"{step.label}: still open", f"{step.open:,}"))
            out += [
                (f"{step.label}: skipped, {reason}", f"{n:,}") for reason, n in sorted(step.skipped.items())
            ]
        out += [(f"left the series: {reason}", f"{n:,}") for reason, n in sorted(self.exited.items())]
        out.append(
            ("ordered after a step (mailed)", f"{self.mailed_converted:,} of {self.mailed:,} "
             f"({self.rate(self.mailed_converted, self.mailed)})")
        )  # fmt: skip
        out.append(
            ("ordered in the same time (held out)", f"{self.holdout_converted:,} of {self.entered_holdout:,} "
             f"({self.rate(self.holdout_converted, self.entered_holdout)})")
        )  # fmt: skip
        return out

    def markdown(self) -> str:
        lines = [f"# Series funnel: {self.campaign}", "", "| measure | count |", "|---|---|"]
        lines += [f"| {a} | {b} |" for a, b in self.rows()]
        return "\n".join(lines)


def _reason_words(error: object) -> str:
    return str(error or "skipped").split(":")[0]


def funnel(spec: Campaign, entries: pd.DataFrame, steps: pd.DataFrame, orders: pd.DataFrame) -> SeriesFunnel:
    """The funnel from the series' entries, its step rows in the ledger (occasion_key, customer_id,
    status, error) and the shop's orders (customer_id, created_at) (pure)."""
    counts = [StepCounts(spec.step_label(n)) for n in range(1, len(spec.steps) + 1)]
    sent_entries: set[str] = set()
    for occasion, status, error in zip(steps["occasion_key"], steps["status"], steps["error"], strict=True):
        entry, _, number = str(occasion).rpartition(":step")
        if not number.isdigit() or not 1 <= int(number) <= len(counts):
            continue
        step = counts[int(number) - 1]
        if status == "sent":
            step.sent += 1
            sent_entries.add(entry)
        elif status == "holdout":
            step.held_out += 1
        elif status in ("expired", "rejected"):
            words = _reason_words(error) if status == "expired" else "refused by the provider"
            step.skipped[words] = step.skipped.get(words, 0) + 1
        else:
            step.open += 1
    exited: dict[str, int] = {}
    for reason in entries["exit_reason"].dropna():
        words = EXIT_WORDS.get(reason, reason)
        exited[words] = exited.get(words, 0) + 1
    first_due = pd.to_datetime(entries["entered_at"]) + timedelta(hours=spec.steps[0].delay_hours)
    last_order = (
        orders.groupby("customer_id")["created_at"].max()
        if len(orders)
        else pd.Series(dtype="datetime64[ns]")
    )
    ordered_after = pd.to_datetime(
        pd.Series(entries["customer_id"].map(last_order).to_numpy(), index=entries.index)
    )
    converted = (ordered_after >= first_due).fillna(False)
    held = entries["holdout"].astype(bool)
    mailed = entries["entry_key"].isin(sent_entries) & ~held
    return SeriesFunnel(
        campaign=spec.name,
        entered=len(entries),
        entered_holdout=int(held.sum()),
        steps=counts,
        exited=exited,
        mailed=int(mailed.sum()),
        mailed_converted=int((converted & mailed).sum()),
        holdout_converted=int((converted & held).sum()),
    )


def shop_orders_since(shop: Engine, since: object) -> pd.DataFrame:
    """The shop's orders (customer_id, created_at) placed since `since`."""
    with shop.connect() as conn:
        rows = conn.execute(
            text("SELECT customer_id, created_at FROM orders WHERE created_at >= :since"), {"since": since}
        ).all()
    frame = pd.DataFrame(rows, columns=["customer_id", "created_at"])
    frame["created_at"] = pd.to_datetime(frame["created_at"])
    return frame


def series_funnel(state: Engine, shop: Engine, spec: Campaign) -> SeriesFunnel:
    """The funnel of `spec`'s series as the state DB and the shop hold it now."""
    entries = series.all_entries(state, spec.name)
    since = pd.to_datetime(entries["entered_at"]).min() if len(entries) else pd.Timestamp("2000-01-01")
    return funnel(
        spec, entries, series.step_rows(state, spec.name), shop_orders_since(shop, since.to_pydatetime())
    )
