"""Who of an audience may be mailed, and why the others are skipped (pure pandas).

Addresses are compared by their *address key*: trimmed and lower-cased as a whole. Domains are
case-insensitive by RFC 5321; local parts may in theory be case-sensitive, but no mailbox provider a
shop meets (Gmail, Yandex, Mail.ru, Outlook, iCloud) treats them so, and SendGrid's suppression lists
compare them case-insensitively too. So `Anna@Mail.ru ` and `anna@mail.ru` are one person: one mail
per occasion, and an unsubscribe or suppression of either stops marketing mail to both.

Whether an address can be mailed is the one rule of config/addresses.py (the data gate's and the
senders'); Unicode domains are mailed in punycode (`почта.рф` -> `xn--80a1acny.xn--p1ai`).
"""

from __future__ import annotations

import re
from collections.abc import Collection

import pandas as pd

from config.addresses import MAX_ADDRESS, is_sendable, sendable_address

# Reasons, in the order they are checked; a recipient gets the first that applies.
REASONS = (
    "quarantined",
    "invalid_email",
    "no_consent",
    "unsubscribed",
    "suppressed",
    "already_sent",
    "duplicate_address",
)


def address_keys(emails: pd.Series) -> pd.Series:
    """The comparison key of each address: trimmed, lower-cased, a Unicode domain in punycode as it is
    mailed (and as provider events and suppressions carry it); '' for a missing address."""
    keys = emails.fillna("").astype(str).str.strip().str.lower()
    unicode = ~keys.str.isascii()
    if unicode.any():
        keys[unicode] = clean_addresses(keys[unicode]).str.lower()
    return keys


def clean_addresses(emails: pd.Series) -> pd.Series:
    """The address to send to: trimmed, with the (case-insensitive) domain lower-cased, a Unicode
    domain in punycode (`config.addresses.sendable_address`, vectorised for plain ASCII)."""
    text = emails.fillna("").astype(str).str.strip()
    if text.empty:
        return text
    parts = text.str.rpartition("@")
    clean = (parts[0] + parts[1] + parts[2].str.lower()).where(text.str.contains("@", regex=False), text)
    unicode = ~clean.str.isascii()
    if unicode.any():  # few: one by one
        clean[unicode] = text[unicode].map(sendable_address)
    return clean


def mailable(emails: pd.Series) -> pd.Series:
    """Which raw addresses can be mailed once cleaned (`clean_addresses` + `sendable`, without
    lower-casing every domain: the rule ignores case)."""
    text = emails.fillna("").astype(str).str.strip()
    unicode = ~text.str.isascii()
    if unicode.any():
        text[unicode] = text[unicode].map(sendable_address)
    return sendable(text)


# `config.addresses.PLAIN_ADDRESS` for addresses without a hyphen and at most 65 characters long, where it
# is exact (no label can start or end with a hyphen, no local part be over 64), at twice its speed
_NO_HYPHEN = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~]+)*@(?:[A-Za-z0-9]{1,63}\.)+[A-Za-z]{2,63}"
)
SHORT = 65


def sendable(addresses: pd.Series) -> pd.Series:
    """Which of these addresses (in the form `clean_addresses` gives) can be mailed: the rule of
    `config.addresses.is_sendable`, vectorised: a fast exact pattern for short addresses without a
    hyphen, the rule itself for the others (hyphens, A-labels, long ones)."""
    text = addresses.fillna("").astype(str)
    lengths = text.str.len()
    others = (lengths > SHORT) | text.str.contains("-", regex=False)
    ok = text.str.fullmatch(_NO_HYPHEN.pattern).fillna(False).astype(bool) & ~others
    checked = others & (lengths <= MAX_ADDRESS)
    if checked.any():
        ok[checked] = [is_sendable(a) for a in text[checked]]
    return ok.astype(bool)


def eligibility(
    recipients: pd.DataFrame,
    *,
    marketing: bool,
    quarantined_ids: Collection[int],
    suppressed: Collection[str],
    done_keys: Collection[str],
    unsubscribed_ids: Collection[int] = (),
    unsubscribed_addresses: Collection[str] = (),
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split recipients into (eligible, skipped with a `reason` column).

    `recipients` needs customer_id, email, marketing_consent and message_key columns (occasion_key
    and registered_at are used when present). Service mails (`marketing=False`) ignore consent;
    suppressions (addresses from bounces, spam reports, unsubscribes), one-click unsubscribes (customer
    ids) and the addresses of unsubscribed accounts apply to marketing only.

    One address, one mail per occasion: of the rows sharing an address key and an occasion key, the
    most recently registered account (the highest customer id on a tie) gets the mail and the others
    are skipped as `duplicate_address`; once any of them was sent, all others are skipped too.
    """
    email = clean_addresses(recipients["email"])
    key = address_keys(recipients["email"])
    checks = {
        "quarantined": recipients["customer_id"].isin(list(quarantined_ids)),
        "invalid_email": ~sendable(email),
        "no_consent": ~recipients["marketing_consent"].astype(bool) if marketing else False,
        "unsubscribed": (
            recipients["customer_id"].isin(list(unsubscribed_ids))
            | key.isin({str(a).strip().lower() for a in unsubscribed_addresses})
            if marketing
            else False
        ),
        "suppressed": key.isin({str(a).strip().lower() for a in suppressed}) if marketing else False,
        "already_sent": recipients["message_key"].isin(list(done_keys)),
    }
    reason = pd.Series(pd.NA, index=recipients.index, dtype="object")
    for name in REASONS[:-1]:
        mask = checks[name]
        if isinstance(mask, bool):
            continue
        reason = reason.mask(reason.isna() & mask, name)
    reason = _with_duplicates(recipients, key, checks["already_sent"], reason)
    skipped = recipients[reason.notna()].assign(reason=reason[reason.notna()])
    kept = recipients[reason.isna()].copy()
    kept["email"] = email[reason.isna()]
    return kept, skipped


def _with_duplicates(
    recipients: pd.DataFrame, key: pd.Series, sent: pd.Series, reason: pd.Series
) -> pd.Series:
    """`reason` with `duplicate_address` for the rows that lose to another row of their address."""
    occasion = recipients["occasion_key"] if "occasion_key" in recipients else recipients["message_key"]
    group = key + "\x00" + occasion.astype(str)
    already = set(group[sent & key.ne("")])
    candidates = reason.isna()
    order = pd.DataFrame({"group": group, "id": recipients["customer_id"]})
    if "registered_at" in recipients:
        order["registered"] = pd.to_datetime(recipients["registered_at"], errors="coerce")
        order = order.sort_values(["registered", "id"], ascending=False, na_position="last")
    else:
        order = order.sort_values("id", ascending=False)
    order = order[candidates.reindex(order.index)]
    winners = order.drop_duplicates("group").index
    loses = candidates & (group.isin(already) | ~recipients.index.isin(winners))
    return reason.mask(loses, "duplicate_address")
