"""Who of an audience may be mailed, and why the others are skipped (pure pandas)."""

from __future__ import annotations

import re
from collections.abc import Collection

import pandas as pd

EMAIL = re.compile(r"^[A-Za-z0-9._%+\-']+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}$")

# Reasons, in the order they are checked; a recipient gets the first that applies.
REASONS = ("quarantined", "invalid_email", "no_consent", "unsubscribed", "suppressed", "already_sent")


def eligibility(
    recipients: pd.DataFrame,
    *,
    marketing: bool,
    quarantined_ids: Collection[int],
    suppressed: Collection[str],
    done_keys: Collection[str],
    unsubscribed_ids: Collection[int] = (),
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split recipients into (eligible, skipped with a `reason` column).

    `recipients` needs customer_id, email, marketing_consent and message_key columns.
    Service mails (`marketing=False`) ignore consent; suppressions (addresses from bounces,
    spam reports, unsubscribes) and one-click unsubscribes (customer ids) apply to marketing only.
    """
    email = recipients["email"].fillna("").astype(str)
    checks = {
        "quarantined": recipients["customer_id"].isin(list(quarantined_ids)),
        "invalid_email": ~email.str.match(EMAIL.pattern),
        "no_consent": ~recipients["marketing_consent"].astype(bool) if marketing else False,
        "unsubscribed": recipients["customer_id"].isin(list(unsubscribed_ids)) if marketing else False,
        "suppressed": email.str.lower().isin(list(suppressed)) if marketing else False,
        "already_sent": recipients["message_key"].isin(list(done_keys)),
    }
    reason = pd.Series(pd.NA, index=recipients.index, dtype="object")
    for name in REASONS:
        mask = checks[name]
        if isinstance(mask, bool):
            continue
        reason = reason.mask(reason.isna() & mask, name)
    skipped = recipients[reason.notna()].assign(reason=reason[reason.notna()])
    return recipients[reason.isna()].copy(), skipped
