"""Selecting a series' due steps (campaign files with `[[steps]]`; planning rules in segments/series.py).

Each run or poll: the audience (over the series' whole span, up to the first step's moment) gives the
entries; an occasion that entered once never enters again, nor does a customer with an open entry of
the same series; the exit conditions are checked for every open entry; then each entry's next step is
due, waiting, or skipped with the reason. What a real run writes (new entries, exits, skipped steps)
is kept in `SeriesBook` and written by the send step (`record_series`), never by a dry run.
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pandas as pd
from sqlalchemy import Engine

from segments.audiences.registry import build_audience
from segments.holdout import in_holdout
from segments.local_time import local_to_utc
from segments.series import (
    ENTRY_KEY_COLUMN,
    STEP_COLUMN,
    decode_value,
    encode_value,
    exit_reasons,
    plan_steps,
    step_occasion,
)
from shopmail.campaigns import Campaign
from shopmail.state import ledger, series
from shopmail.state.feedback import unsubscribed_customers
from shopmail.state.state_db import utcnow

HOLDOUT_COLUMN = "series_holdout"


@dataclass
class SeriesBook:
    """What a real run of a series writes before sending: new entries, exits, skipped steps."""

    campaign: str
    new_entries: list[dict] = field(default_factory=list)
    exits: dict[str, str] = field(default_factory=dict)
    skips: list[tuple[ledger.LedgerEntry, str]] = field(default_factory=list)
    now: datetime | None = None

    def skipped_by_reason(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for _, reason in self.skips:
            words = reason.split(":")[0]
            out[words] = out.get(words, 0) + 1
        return out


def series_clock(as_of: date, tz: ZoneInfo, window: tuple[datetime, datetime] | None) -> datetime:
    """The moment (naive UTC) a series run plans for: a poll's end, else now, or the end of `as_of`
    (shop time) when the run catches up a past day."""
    if window is not None:
        return window[1]
    end_of_day = local_to_utc(as_of, tz, time(23, 59, 59))
    return min(utcnow(), end_of_day)


def span_hours(spec: Campaign) -> float:
    """How long after its entry a step of the series can still go out (the entries a run looks at)."""
    longest, previous = 0.0, 0.0
    for step in spec.steps:
        moment = (previous if step.after == "previous" else 0.0) + step.delay_hours
        longest = max(longest, moment + step.max_age_hours)
        previous = moment
    return longest


def step_spec(spec: Campaign, number: int) -> Campaign:
    """The campaign as step `number` (1-based) sends it: the step's template folder."""
    step = spec.steps[number - 1]
    return spec.model_copy(update={"template": step.template}) if step.template else spec


def entry_keys(spec: Campaign, audience: pd.DataFrame) -> list[str]:
    """Each audience row's entry key (the campaign's occasion key over its columns)."""
    fields = [f for _, f, _, _ in string.Formatter().parse(spec.occasion_key) if f]
    return (
        [
            spec.occasion_key.format(**dict(zip(fields, values, strict=True)))
            for values in zip(*(audience[f].tolist() for f in fields), strict=True)
        ]
        if len(audience)
        else []
    )


def select_series(
    spec: Campaign,
    frames: dict[str, pd.DataFrame],
    as_of: date,
    tz: ZoneInfo,
    state: Engine,
    window: tuple[datetime, datetime] | None = None,
) -> tuple[pd.DataFrame, SeriesBook]:
    """The rows of the steps due now (the entry's audience values + customer_id, entry_key,
    series_step, series_holdout) and the book of what this run decided."""
    now = series_clock(as_of, tz, window)
    span = timedelta(hours=span_hours(spec))
    book = SeriesBook(spec.name, now=now)
    first = timedelta(hours=spec.steps[0].delay_hours)
    audience = build_audience(spec.audience, frames, as_of, tz, spec.params, (now - span, now - first))
    open_entries = series.open_entries(state, spec.name, now - span)

    audience = audience.assign(entry_key=entry_keys(spec, audience)) if len(audience) else audience
    if len(audience):
        known = series.known_entry_keys(state, spec.name, audience["entry_key"].tolist())
        busy = set(open_entries["customer_id"].astype(int))
        fresh = audience[~audience["entry_key"].isin(known) & ~audience["customer_id"].astype(int).isin(busy)]
        fresh = fresh.drop_duplicates("customer_id", keep="last")
        customers = frames.get("customers")
        if spec.marketing and customers is not None and "marketing_consent" in customers:
            # a marketing series enters only customers it may mail (the funnel counts real entries)
            consenting = customers.loc[customers["marketing_consent"].fillna(False).astype(bool), "id"]
            fresh = fresh[fresh["customer_id"].astype(int).isin(set(consenting.astype(int)))]
        held = in_holdout(
            spec.name, fresh["customer_id"].to_numpy(), spec.holdout_percent if spec.marketing else 0
        )
        for (_, row), holdout in zip(fresh.iterrows(), held, strict=True):
            values = {k: encode_value(v) for k, v in row.items() if k not in ("customer_id", "entry_key")}
            book.new_entries.append(
                {
                    "entry_key": row["entry_key"],
                    "customer_id": int(row["customer_id"]),
                    "entered_at": pd.Timestamp(row[spec.entered_at]).to_pydatetime().replace(tzinfo=None),
                    "holdout": bool(holdout),
                    "data": values,
                }
            )
    entries = pd.concat(
        [open_entries, pd.DataFrame(book.new_entries, columns=series.ENTRY_COLUMNS[:-1])], ignore_index=True
    )
    if entries.empty:
        return pd.DataFrame(columns=["customer_id", ENTRY_KEY_COLUMN, STEP_COLUMN, HOLDOUT_COLUMN]), book

    customers = entries["customer_id"].astype(int).tolist()
    since = pd.to_datetime(entries["entered_at"]).min().to_pydatetime()
    book.exits = exit_reasons(
        entries,
        spec.exit_when,
        frames,
        clicks=series.latest_clicks(state, spec.name, customers, since)
        if "clicked" in spec.exit_when
        else None,
        unsubscribed=unsubscribed_customers(state, customers) if "unsubscribed" in spec.exit_when else set(),
        other_series=series.latest_other_entries(state, spec.name, customers, since)
        if "other_series" in spec.exit_when
        else None,
    )
    staying = entries[~entries["entry_key"].isin(book.exits)]
    keys = {
        ledger.message_key(spec.name, step_occasion(k, n), int(c)): (k, n)
        for k, c in zip(staying["entry_key"], staying["customer_id"], strict=True)
        for n in range(1, len(spec.steps) + 1)
    }
    outcome = {keys[m]: found for m, found in series.step_outcomes(state, list(keys)).items()}
    plan = plan_steps(staying, spec.steps, outcome, now)
    by_key = staying.set_index("entry_key")
    for key, number, reason in plan.skipped:
        cid = int(by_key.at[key, "customer_id"])
        book.skips.append((ledger.LedgerEntry(spec.name, step_occasion(key, number), cid), reason))
    rows = []
    for key, number in plan.due:
        entry = by_key.loc[key]
        values = {k: decode_value(v) for k, v in (entry["data"] or {}).items()}
        values.update(spec.steps[number - 1].values)
        rows.append(
            {
                **values,
                "customer_id": int(entry["customer_id"]),
                ENTRY_KEY_COLUMN: key,
                STEP_COLUMN: number,
                HOLDOUT_COLUMN: bool(entry["holdout"]),
            }
        )
    columns = ["customer_id", ENTRY_KEY_COLUMN, STEP_COLUMN, HOLDOUT_COLUMN]
    return (pd.DataFrame(rows) if rows else pd.DataFrame(columns=columns)), book


def record_series(state: Engine, book: SeriesBook, run_id: str) -> None:
    """Write what a real run decided: new entries first (once each), then exits, then skipped steps."""
    series.add_entries(state, book.campaign, book.new_entries, run_id)
    if book.exits:
        series.mark_exits(state, book.campaign, book.exits, book.now)
    if book.skips:
        series.record_skips(state, book.skips, run_id)
