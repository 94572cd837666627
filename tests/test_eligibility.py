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


def test_missing_names_become_empty_strings_not_nan() -> None:
    from shopmail.campaigns import get_campaign
    from shopmail.run.pipeline import attach_customers

    customers = pd.DataFrame(
        {
            "id": [1],
            "email": ["a@x.ru"],
            "first_name": [None],
            "last_name": [float("nan")],
            "language": [None],
            "marketing_consent": [True],
        }
    )
    audience = pd.DataFrame({"customer_id": [1], "issue": ["2026-W48"], "products": [[1, 2]]})
    [row] = attach_customers(get_campaign("new_arrivals"), audience, customers).to_dict("records")
    assert (row["first_name"], row["last_name"]) == ("", "")


def test_gate_checks_carts_and_coupons_and_quarantines_their_bad_rows() -> None:
    from shopmail.shop.data_checks import run_gate
    from tasks.validate import drop_quarantined

    carts = pd.DataFrame(
        {"id": range(1, 41), "customer_id": range(1, 41), "updated_at": pd.Timestamp("2026-11-22")}
    )
    items = pd.DataFrame({"cart_id": list(range(1, 41)), "product_id": 1, "qty": [0] + [1] * 39})
    coupons = pd.DataFrame(
        {"code": [f"C{i}" for i in range(40)], "value": [-5.0] + [100.0] * 39, "kind": "coupon"}
    )
    report = run_gate({"carts": carts, "cart_items": items, "coupons": coupons})
    assert report.success  # one bad row in 40 is quarantined, not fatal
    assert report.quarantined_keys("cart_items") == {1}
    assert report.quarantined_keys("coupons") == {"C0"}
    cleaned = drop_quarantined({"cart_items": items, "coupons": coupons}, report)
    assert 1 not in set(cleaned["cart_items"]["cart_id"]) and "C0" not in set(cleaned["coupons"]["code"])
    duplicated = run_gate({"coupons": pd.concat([coupons, coupons.head(1)])})
    assert not duplicated.success and "coupons.code" in duplicated.failure_text()


def _shared_address() -> pd.DataFrame:
    """Three accounts of one person (case and spaces differ), one of another, one occasion."""
    return pd.DataFrame(
        {
            "customer_id": [10, 11, 12, 13],
            "email": ["Anna@Mail.RU", " anna@mail.ru ", "anna@MAIL.ru", "boris@mail.ru"],
            "marketing_consent": [True, True, True, True],
            "registered_at": pd.to_datetime(["2024-01-01", "2025-06-01", "2023-01-01", "2024-01-01"]),
            "occasion_key": ["sale:7"] * 4,
            "message_key": ["k10", "k11", "k12", "k13"],
        }
    )


def test_one_mail_per_address_goes_to_the_most_recent_account() -> None:
    eligible, skipped = eligibility(
        _shared_address(), marketing=True, quarantined_ids=(), suppressed=(), done_keys=()
    )
    assert sorted(eligible["customer_id"]) == [11, 13]
    assert eligible.set_index("customer_id").loc[11, "email"] == "anna@mail.ru"  # trimmed, domain lower
    assert dict(zip(skipped["customer_id"], skipped["reason"], strict=True)) == {
        10: "duplicate_address",
        12: "duplicate_address",
    }


def test_a_rerun_never_mails_the_address_again_through_another_account() -> None:
    """The first run mailed account 10; a rerun (same occasion) mails no other account of Anna."""
    eligible, skipped = eligibility(
        _shared_address(), marketing=True, quarantined_ids=(), suppressed=(), done_keys={"k10"}
    )
    assert eligible["customer_id"].tolist() == [13]
    reasons = dict(zip(skipped["customer_id"], skipped["reason"], strict=True))
    assert reasons == {10: "already_sent", 11: "duplicate_address", 12: "duplicate_address"}


def test_different_occasions_of_one_address_each_get_their_mail() -> None:
    """Two accounts, two orders: two order mails are two occasions, not duplicates."""
    rows = _shared_address().iloc[:2].assign(occasion_key=["order:1:shipped", "order:2:shipped"])
    eligible, _ = eligibility(rows, marketing=False, quarantined_ids=(), suppressed=(), done_keys=())
    assert sorted(eligible["customer_id"]) == [10, 11]


def test_an_unsubscribe_or_suppression_holds_for_every_account_of_the_address() -> None:
    rows = _shared_address()
    by_account = eligibility(
        rows,
        marketing=True,
        quarantined_ids=(),
        suppressed=(),
        done_keys=(),
        unsubscribed_addresses={"ANNA@mail.ru"},
    )
    assert by_account[0]["customer_id"].tolist() == [13]
    assert set(by_account[1]["reason"]) == {"unsubscribed"}
    suppressed = eligibility(
        rows, marketing=True, quarantined_ids=(), suppressed={"anna@mail.ru"}, done_keys=()
    )
    assert suppressed[0]["customer_id"].tolist() == [13]
    service = eligibility(
        rows, marketing=False, quarantined_ids=(), suppressed={"anna@mail.ru"}, done_keys=()
    )
    assert sorted(service[0]["customer_id"]) == [11, 13]  # service mail: one per address, not suppressed
