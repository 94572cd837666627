"""Series planning (pure): which step of each entry is due at `now`, which are skipped and why, and
which entries leave the series.

A step is due `delay_hours` after the entry (`after = "entry"`) or after the previous step went out
(`after = "previous"`; a skipped previous step counts from the moment it was due). The first run or
poll at or after that moment sends it; one later than `max_age_hours` skips it ("too late"). One
step per entry per run: the next one waits for a later run even when it is due too, so the steps
always go out in order. A step whose conditions (`column >= number` over the entry's values) do not
hold is skipped with the condition as the reason.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

DONE = ("sent", "expired", "holdout", "rejected")  # a step in one of these ledger states is over
STEP_COLUMN = "series_step"
ENTRY_KEY_COLUMN = "entry_key"
EXIT_WORDS = {
    "ordered": "ordered since entering",
    "cart_changed": "changed or recovered the cart",
    "clicked": "clicked a mail of the series",
    "unsubscribed": "unsubscribed",
    "other_series": "entered another series",
}
_OPS = {
    ">=": operator.ge,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
    ">": operator.gt,
    "<": operator.lt,
}
_CONDITION = re.compile(r"^\s*([a-z_][a-z0-9_]*)\s*(>=|<=|==|!=|>|<)\s*(-?[0-9]+(?:\.[0-9]+)?)\s*$")


def step_occasion(entry_key: str, step: int) -> str:
    """The occasion key of step `step` (1-based) of an entry: `cart:123` -> `cart:123:step2`."""
    return f"{entry_key}:step{step}"


def encode_value(value: Any) -> Any:
    """A JSON-safe form of an audience value (dates and times tagged so `decode_value` restores them)."""
    if isinstance(value, pd.Timestamp | datetime):
        return {"__datetime": pd.Timestamp(value).isoformat()}
    if isinstance(value, date):
        return {"__date": value.isoformat()}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, list | tuple | np.ndarray):
        return [encode_value(v) for v in value]
    if isinstance(value, float) and np.isnan(value):
        return None
    if value is pd.NaT or value is pd.NA:
        return None
    return value


def decode_value(value: Any) -> Any:
    """The audience value `encode_value` stored."""
    if isinstance(value, dict) and "__datetime" in value:
        return pd.Timestamp(value["__datetime"]).to_pydatetime()
    if isinstance(value, dict) and "__date" in value:
        return date.fromisoformat(value["__date"])
    if isinstance(value, list):
        return [decode_value(v) for v in value]
    return value


def condition_holds(condition: str, values: Mapping[str, Any]) -> bool:
    """Whether `column op number` holds over the entry's values (a missing or empty value: no)."""
    match = _CONDITION.match(condition)
    if not match:
        raise ValueError(f"bad condition {condition!r}")
    column, op, number = match.groups()
    value = values.get(column)
    try:
        return value is not None and _OPS[op](float(value), float(number))
    except (TypeError, ValueError):
        return False


@dataclass(frozen=True)
class StepPlan:
    """What one run does with the open entries: (entry_key, step) due now, skipped with the reason."""

    due: list[tuple[str, int]]
    skipped: list[tuple[str, int, str]]


def plan_steps(
    entries: pd.DataFrame,
    steps: Sequence[Any],
    outcome: Mapping[tuple[str, int], tuple[str, datetime]],
    now: datetime,
) -> StepPlan:
    """The due and skipped steps of each entry (entries: entry_key, entered_at, data; `outcome`:
    (entry_key, step) -> (ledger status, last change) of the steps the ledger knows; `now` naive UTC)."""
    due: list[tuple[str, int]] = []
    skipped: list[tuple[str, int, str]] = []
    for key, entered_at, data in zip(
        entries["entry_key"], entries["entered_at"], entries["data"], strict=True
    ):
        previous = pd.Timestamp(entered_at).to_pydatetime()
        entered = previous
        for number, step in enumerate(steps, start=1):
            known = outcome.get((key, number))
            moment = (entered if step.after == "entry" else previous) + timedelta(hours=step.delay_hours)
            if known and known[0] in DONE:
                previous = known[1] if known[0] == "sent" else moment
                continue
            if known:  # claimed or in doubt: the ledger decides whether it still goes out
                due.append((key, number))
                break
            if now < moment:
                break
            late = now - moment
            if late > timedelta(hours=step.max_age_hours):
                hours = late.total_seconds() / 3600
                skipped.append(
                    (
                        key,
                        number,
                        f"too late: due {hours:.0f} h ago, the step allows {step.max_age_hours:g} h",
                    )
                )
                previous = moment
                continue
            failed = [c for c in step.conditions if not condition_holds(c, data or {})]
            if failed:
                skipped.append((key, number, f"condition not met: {failed[0]}"))
                previous = moment
                continue
            due.append((key, number))
            break
    return StepPlan(due, skipped)


def exit_reasons(
    entries: pd.DataFrame,
    conditions: Sequence[str],
    frames: Mapping[str, pd.DataFrame],
    clicks: Mapping[int, datetime] | None = None,
    unsubscribed: set[int] | frozenset[int] = frozenset(),
    other_series: Mapping[int, datetime] | None = None,
) -> dict[str, str]:
    """Entry key -> why it leaves the series now (the first condition of `conditions` that holds):
    ordered (an order at or after the entry), cart_changed (the customer's latest cart is another cart
    or was touched after the entry), clicked (`clicks`: customer -> latest click on the series' mails),
    unsubscribed, other_series (`other_series`: customer -> latest entry into another series)."""
    if entries.empty or not conditions:
        return {}
    reasons: dict[str, str] = {}
    cid = entries["customer_id"].astype(int)
    entered = pd.to_datetime(entries["entered_at"])
    checks: dict[str, pd.Series] = {}
    if "ordered" in conditions and "orders" in frames and len(frames["orders"]):
        last_order = frames["orders"].groupby("customer_id")["created_at"].max()
        checks["ordered"] = pd.Series(cid.map(last_order).to_numpy(), index=entries.index) >= entered
    if "cart_changed" in conditions and "carts" in frames and len(frames["carts"]):
        latest = (
            frames["carts"]
            .sort_values(["customer_id", "updated_at", "id"])
            .drop_duplicates("customer_id", keep="last")
            .set_index("customer_id")
        )
        cart_of = [(d or {}).get("cart_id") for d in entries["data"]]
        latest_id = cid.map(latest["id"]).to_numpy()
        latest_at = pd.to_datetime(pd.Series(cid.map(latest["updated_at"]).to_numpy(), index=entries.index))
        other_cart = pd.Series(
            [
                c is not None and not pd.isna(i) and int(i) != int(c)
                for c, i in zip(cart_of, latest_id, strict=True)
            ],
            index=entries.index,
        )
        checks["cart_changed"] = other_cart | (latest_at > entered + pd.Timedelta(seconds=1))
    for name, moments in (("clicked", clicks), ("other_series", other_series)):
        if name in conditions and moments:
            at = pd.to_datetime(pd.Series(cid.map(moments).to_numpy(), index=entries.index))
            checks[name] = at >= entered
    if "unsubscribed" in conditions and unsubscribed:
        checks["unsubscribed"] = cid.isin(set(unsubscribed))
    for condition in conditions:  # the file's order decides which reason is given
        hit = checks.get(condition)
        if hit is None:
            continue
        for key in entries.loc[hit.fillna(False).astype(bool), "entry_key"]:
            reasons.setdefault(str(key), condition)
    return reasons
