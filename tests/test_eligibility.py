"""Who may be mailed: consent, address, quarantine, suppression, already-sent."""

from __future__ import annotations

import pandas as pd

from segments.eligibility import eligibility


def _recipients() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": [1, 2, 3, 4, 5, 6, 7],
            "email": ["a@x.ru", "b@x.ru", None, "bad@", "E@X.RU", "f@x.ru", "g@x.ru"],
            "marketing_consent": [True, False, True, True, True, True, True],
            "message_key": ["k1", "k2", "k3", "k4", "k5", "k6", "k7"],
        }
    )


def test_marketing_mail_reasons() -> None:
    eligible, skipped = eligibility(
        _recipients(),
        marketing=True,
        quarantined_ids={7},
        suppressed={"e@x.ru"},
        done_keys={"k6"},
        unsubscribed_ids={1},
    )
    assert eligible["customer_id"].tolist() == []
    reasons = dict(zip(skipped["customer_id"], skipped["reason"], strict=True))
    assert reasons == {
        1: "unsubscribed",
        2: "no_consent",
        3: "invalid_email",
        4: "invalid_email",
        5: "suppressed",
        6: "already_sent",
        7: "quarantined",
    }


def test_service_mail_ignores_consent_and_marketing_suppressions() -> None:
    eligible, skipped = eligibility(
        _recipients(),
        marketing=False,
        quarantined_ids=set(),
        suppressed={"e@x.ru"},
        done_keys=set(),
        unsubscribed_ids={1},
    )
    assert eligible["customer_id"].tolist() == [1, 2, 5, 6, 7]
    assert set(skipped["reason"]) == {"invalid_email"}


def test_first_applicable_reason_wins() -> None:
    _, skipped = eligibility(
        _recipients(), marketing=True, quarantined_ids={2}, suppressed=set(), done_keys={"k2"}
    )
    assert skipped.set_index("customer_id").loc[2, "reason"] == "quarantined"
