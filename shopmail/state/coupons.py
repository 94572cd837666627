"""Personal single-use coupons of a campaign's coupon policy (plain functions, no Prefect).

A coupon belongs to one mail: its code is an HMAC of the mail's `message_key`, so preflight, dry
runs and `shopmail preview` show the exact code the customer will get without issuing anything,
and a rerun of the same mail re-uses the same code. `issue_coupons` makes the codes real just
before the mails go out: first a record in the state DB (`issued_coupons`, one per mail), then the
coupon itself in the shop DB (`SHOPMAIL_COUPON_TABLE`): the contract's `coupons` table, or a table
Shopmail owns (`shopmail/shop/coupon_outbox.py`) whose trigger, installed by a platform kit, creates the
platform's own coupon. Both steps insert only what is missing, so the function can run again after a
crash or a retry without duplicates or errors.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, func, insert, select

from config.settings import get_settings
from shopmail.campaigns import Campaign, CouponPolicy
from shopmail.coupon_codes import ALPHABET, FULL_RANDOM_CHARS, GROUP_SIZE, random_chars_for
from shopmail.redaction import redact_tokens
from shopmail.shop import schema as shop_schema
from shopmail.shop.coupon_outbox import CONTRACT_TABLE, outbox_table
from shopmail.state.schema import issued_coupons, send_ledger
from shopmail.state.state_db import present_values, utcnow

__all__ = [
    "ALPHABET",
    "Coupon",
    "CouponConflict",
    "coupon_code",
    "coupon_for",
    "issue_coupons",
    "restore_missing_coupons",
]
_CHUNK = 500
UTC_ZONE = ZoneInfo("UTC")


class CouponConflict(RuntimeError):
    """A code already belongs to another customer or mail (a changed secret, or a collision):
    the mail must not go out with it."""


def coupon_code(secret: str, message_key: str, prefix: str, max_length: int | None = None) -> str:
    """The deterministic, unguessable code of the coupon in mail `message_key`, e.g. BDAY-7KQ2-M9XD-4TZP.
    Within `max_length` (e.g. 20 for OpenCart) the random part is shortened (the code is a prefix of the
    full one); ValueError if the prefix leaves room for fewer than `MIN_RANDOM_CHARS`."""
    count = FULL_RANDOM_CHARS if max_length is None else random_chars_for(prefix, max_length)
    digest = hmac.new(secret.encode(), f"coupon|{message_key}".encode(), hashlib.sha256).digest()
    number = int.from_bytes(digest, "big")
    chars = []
    for _ in range(count):
        number, index = divmod(number, len(ALPHABET))
        chars.append(ALPHABET[index])
    groups = ["".join(chars[i : i + GROUP_SIZE]) for i in range(0, len(chars), GROUP_SIZE)]
    return "-".join([prefix, *groups])


@dataclass(frozen=True, slots=True)
class Coupon:
    """One personal coupon, as templates show it and as both databases store it."""

    code: str
    message_key: str
    customer_id: int
    value: Decimal
    percent: bool
    expires_at: datetime  # naive UTC: the last second of the shop-local day `expires_on`
    expires_on: date

    @property
    def discount(self) -> str:
        """`15%` for a percent coupon; a money coupon's bare amount (`500`, `24.99`): templates write
        money with the `money` filter, in the shop's currency and the mail's language."""
        if self.percent:
            return f"{self.value.normalize():f}%"
        return f"{self.value.normalize():f}"

    def template_context(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "value": float(self.value),
            "percent": self.percent,
            "discount": self.discount,
            "expires_at": self.expires_at,
            "expires_on": self.expires_on,
        }


def expiry(issued_at: datetime, valid_days: int, tz: ZoneInfo) -> tuple[datetime, date]:
    """End of the shop-local day `valid_days` after the (naive UTC) issue time: (naive UTC, local date)."""
    issued_on = issued_at.replace(tzinfo=UTC).astimezone(tz).date()
    expires_on = issued_on + timedelta(days=valid_days)
    end = datetime.combine(expires_on, time(23, 59, 59), tzinfo=tz)
    return end.astimezone(UTC).replace(tzinfo=None), expires_on


def _money(value: Any) -> Decimal:
    return Decimal(str(value)).quantize(Decimal("0.01"))


def _local_date(stamp: datetime, tz: ZoneInfo) -> date:
    return stamp.replace(tzinfo=UTC).astimezone(tz).date()


def coupon_for(
    policy: CouponPolicy,
    message_key: str,
    customer_id: int,
    issued_at: datetime,
    tz: ZoneInfo,
    secret: str,
    max_length: int | None = -1,
) -> Coupon:
    """The coupon mail `message_key` carries when issued at `issued_at` (naive UTC); codes within
    `max_length` (default: `SHOPMAIL_COUPON_CODE_MAX_LENGTH`; None: the contract's 40)."""
    if max_length == -1:
        max_length = get_settings().coupon_code_max_length
    expires_at, expires_on = expiry(issued_at, policy.valid_days, tz)
    return Coupon(
        code=coupon_code(secret, message_key, policy.prefix, max_length),
        message_key=message_key,
        customer_id=int(customer_id),
        value=_money(policy.value),
        percent=policy.percent,
        expires_at=expires_at,
        expires_on=expires_on,
    )


def _chunks(items: Sequence[Any]) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


_RECORD_COLUMNS = (
    issued_coupons.c.code,
    issued_coupons.c.message_key,
    issued_coupons.c.customer_id,
    issued_coupons.c.value,
    issued_coupons.c.percent,
    issued_coupons.c.expires_at,
)


def _from_record(row: Any, tz: ZoneInfo) -> Coupon:
    return Coupon(
        code=row.code,
        message_key=row.message_key,
        customer_id=int(row.customer_id),
        value=_money(row.value),
        percent=bool(row.percent),
        expires_at=row.expires_at,
        expires_on=_local_date(row.expires_at, tz),
    )


def recorded_coupons(state: Engine, message_keys: Iterable[str], tz: ZoneInfo) -> dict[str, Coupon]:
    """Coupons already issued for these mails (state DB), by message key."""
    found: dict[str, Coupon] = {}
    with state.connect() as conn:
        for chunk in _chunks(sorted(set(message_keys))):
            rows = conn.execute(select(*_RECORD_COLUMNS).where(issued_coupons.c.message_key.in_(chunk)))
            found.update({row.message_key: _from_record(row, tz) for row in rows})
    return found


def _terms(coupon: Coupon) -> tuple:
    return coupon.code, coupon.customer_id, coupon.value, coupon.percent, coupon.expires_at


def _record(state: Engine, coupons: Sequence[Coupon], campaign: str, run_id: str, now: datetime) -> None:
    """Insert the missing state-DB records (by message key). A mail already recorded with other terms,
    or a code recorded for another mail, raises `CouponConflict` (and nothing is written)."""
    t = issued_coupons
    with state.begin() as conn:
        for chunk in _chunks(list({c.message_key: c for c in coupons}.values())):
            keys, codes = [c.message_key for c in chunk], [c.code for c in chunk]
            known = {
                row.message_key: _from_record(row, UTC_ZONE)
                for row in conn.execute(select(*_RECORD_COLUMNS).where(t.c.message_key.in_(keys)))
            }
            taken = set(conn.execute(select(t.c.code).where(t.c.code.in_(codes))).scalars())
            missing = []
            for c in chunk:
                if c.message_key in known:
                    if _terms(known[c.message_key]) != _terms(c):
                        raise CouponConflict(
                            f"mail {c.message_key} already has a coupon on other terms: "
                            "render it with the recorded coupon"
                        )
                elif c.code in taken:
                    raise CouponConflict(
                        f"code {redact_tokens(c.code)} of mail {c.message_key} is already recorded "
                        "for another mail"
                    )
                else:
                    missing.append(c)
            if missing:
                conn.execute(
                    insert(t),
                    [
                        {
                            "code": c.code,
                            "campaign": campaign,
                            "customer_id": c.customer_id,
                            "message_key": c.message_key,
                            "value": c.value,
                            "percent": c.percent,
                            "expires_at": c.expires_at,
                            "run_id": run_id,
                            "issued_at": now,
                        }
                        for c in missing
                    ],
                )


def _shop_row(c: Coupon, note: str, campaign: str, outbox: bool, now: datetime) -> dict[str, Any]:
    row = {
        "code": c.code,
        "customer_id": c.customer_id,
        "value": c.value,
        "percent": c.percent,
        "expires_at": c.expires_at,
        "note": note,
    }
    if outbox:
        return {**row, "campaign": campaign, "message_key": c.message_key, "created_at": now}
    return {**row, "kind": "coupon", "used": False}


def _insert_into_shop(
    shop: Engine,
    coupons: Sequence[Coupon],
    note: str,
    table: str = CONTRACT_TABLE,
    campaign: str = "",
    now: datetime | None = None,
) -> int:
    """Insert the shop coupons that are missing (by code) into `table` (the contract's `coupons`, or
    Shopmail's outbox table whose trigger makes the platform coupon); a code owned by another customer
    fails."""
    outbox = table != CONTRACT_TABLE
    t = outbox_table(table) if outbox else shop_schema.coupons
    now = now or utcnow().replace(microsecond=0)
    inserted = 0
    with shop.begin() as conn:
        for chunk in _chunks(list(coupons)):
            owners = {
                code: owner
                for code, owner in conn.execute(
                    select(t.c.code, t.c.customer_id).where(t.c.code.in_([c.code for c in chunk]))
                )
            }
            for c in chunk:
                if c.code in owners and owners[c.code] != c.customer_id:
                    raise CouponConflict(
                        f"shop coupon {redact_tokens(c.code)} of mail {c.message_key} belongs to "
                        "another customer"
                    )
            missing = [c for c in chunk if c.code not in owners]
            if missing:
                conn.execute(insert(t), [_shop_row(c, note, campaign, outbox, now) for c in missing])
                inserted += len(missing)
    return inserted


def coupon_note(campaign: Campaign) -> str:
    """The shop-side note of the campaign's coupons (shown in the coupon-expiry reminder)."""
    policy = campaign.coupon
    return (policy.note if policy and policy.note else campaign.title)[:200]


def issue_coupons(
    shop_engine: Engine,
    state_engine: Engine,
    rows: Sequence[Coupon],
    campaign: Campaign,
    run_id: str,
    now: datetime | None = None,
    table: str | None = None,
) -> list[Coupon]:
    """Make the coupons of these mails real; idempotent (safe to repeat after a crash or retry).

    Order: the state-DB record first (what the mail promises, keyed by message key), then the shop
    coupon (keyed by code). Render the mails with `recorded_coupons` first, so a mail whose coupon
    was issued before (a crash, a retry) shows the recorded terms; `CouponConflict` is raised (before
    the shop is touched) if a recorded coupon differs from `rows` or a code belongs to someone else.
    `table`: where the shop coupons go (default `SHOPMAIL_COUPON_TABLE`).
    """
    if not rows:
        return []
    now = now or utcnow().replace(microsecond=0)
    table = table or get_settings().coupon_table
    _record(state_engine, rows, campaign.name, run_id, now)
    _insert_into_shop(shop_engine, rows, coupon_note(campaign), table, campaign.name, now)
    return list(rows)


def restore_missing_coupons(
    shop_engine: Engine,
    state_engine: Engine,
    campaign: Campaign,
    now: datetime | None = None,
    table: str | None = None,
) -> list[Coupon]:
    """Insert again the campaign's issued, unexpired coupons (state DB `issued_coupons`) that the shop no
    longer has: a shop restored from a backup, or coupon rows deleted, would otherwise leave customers
    with mailed codes that do not work. Returns the coupons inserted (by code; idempotent)."""
    now = now or utcnow().replace(microsecond=0)
    table = table or get_settings().coupon_table
    t = issued_coupons
    with state_engine.connect() as conn:
        rows = conn.execute(
            select(*_RECORD_COLUMNS).where(t.c.campaign == campaign.name, t.c.expires_at > now)
        )
        issued = [_from_record(row, UTC_ZONE) for row in rows]
    if not issued:
        return []
    target = outbox_table(table) if table != CONTRACT_TABLE else shop_schema.coupons
    present = present_values(shop_engine, target.c.code, [c.code for c in issued])
    missing = [c for c in issued if c.code not in present]
    if missing:
        _insert_into_shop(shop_engine, missing, coupon_note(campaign), table, campaign.name, now)
    return missing


WAITING_STATES = ("pending", "failed", "in_doubt")  # the mail was not (provably) sent yet


def coupons_waiting(state: Engine, campaign: str | None = None) -> dict[str, int]:
    """Per campaign: coupons issued (in the shop) whose mail is not sent yet (ledger pending, failed
    or in doubt): a rerun sends those mails with the same codes."""
    query = (
        select(issued_coupons.c.campaign, func.count())
        .select_from(
            issued_coupons.join(send_ledger, send_ledger.c.message_key == issued_coupons.c.message_key)
        )
        .where(send_ledger.c.status.in_(WAITING_STATES))
        .group_by(issued_coupons.c.campaign)
    )
    if campaign is not None:
        query = query.where(issued_coupons.c.campaign == campaign)
    with state.connect() as conn:
        return {name: int(count) for name, count in conn.execute(query)}
