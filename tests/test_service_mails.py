"""Service mails on crafted data (no Prefect, no DB): the event window, welcome, password reset
(and that its secret link never reaches a run report)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pandas as pd
import pytest

from config.settings import Settings
from segments.audiences.password_reset import password_reset_audience
from segments.audiences.registry import build_audience
from segments.audiences.welcome import welcome_audience
from segments.service_window import event_window, in_window
from shopmail.campaigns import load_campaign
from shopmail.run.composer import MailComposer
from shopmail.run.pipeline import attach_customers
from shopmail.run.run_report import RunReport, redact_tokens

MSK = ZoneInfo("Europe/Moscow")
AS_OF = date(2026, 11, 23)  # the local day is [2026-11-22 21:00, 2026-11-23 21:00) UTC
DAY_START, DAY_END = datetime(2026, 11, 22, 21, 0), datetime(2026, 11, 23, 21, 0)
CAMPAIGNS = Path(__file__).parent.parent / "config" / "campaigns"


def _ts(text: str | None) -> pd.Timestamp:
    return pd.Timestamp(text) if text else pd.NaT


# --------------------------------------------------------------------------------------------
# The shared window helper


def test_default_window_is_the_shop_local_day() -> None:
    assert event_window(AS_OF, MSK) == (DAY_START, DAY_END)


def test_poller_window_is_used_as_given_and_tz_aware_bounds_become_naive_utc() -> None:
    since, until = datetime(2026, 11, 23, 9, 0), datetime(2026, 11, 23, 9, 5)
    assert event_window(AS_OF, MSK, (since, until)) == (since, until)
    aware = (since.replace(tzinfo=UTC).astimezone(MSK), until.replace(tzinfo=UTC))
    assert event_window(AS_OF, MSK, aware) == (since, until)
    with pytest.raises(ValueError, match="starts after it ends"):
        event_window(AS_OF, MSK, (until, since))


def test_max_age_moves_the_start_forward_never_back() -> None:
    until = datetime(2026, 11, 23, 12, 0)
    first_run = (datetime(2020, 1, 1), until)
    assert event_window(AS_OF, MSK, first_run, max_age_hours=36) == (until - timedelta(hours=36), until)
    short = (until - timedelta(minutes=5), until)
    assert event_window(AS_OF, MSK, short, max_age_hours=36) == short
    with pytest.raises(ValueError):
        event_window(AS_OF, MSK, short, max_age_hours=0)


def test_in_window_is_half_open_and_skips_nat() -> None:
    stamps = pd.Series(
        pd.to_datetime(
            ["2026-11-22 21:00", "2026-11-23 20:59:59", "2026-11-23 21:00", None], format="ISO8601"
        )
    )
    assert in_window(stamps, (DAY_START, DAY_END)).tolist() == [True, True, False, False]


# --------------------------------------------------------------------------------------------
# Welcome


def _customers(rows: list[tuple[int, str, str | None]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["id", "registered_at", "discount_card"])
    frame["registered_at"] = pd.to_datetime(frame["registered_at"], format="ISO8601")
    frame["email"] = [f"c{i}@mail.example" for i in frame["id"]]
    frame["first_name"], frame["last_name"] = "Анна", None
    frame["language"], frame["marketing_consent"] = "ru", False
    return frame


WELCOME = [
    (1, "2026-11-22 20:59:59", None),  # 23:59:59 on the 22nd in Moscow: yesterday
    (2, "2026-11-22 21:00:00", "DC00000002"),  # 00:00 on the 23rd: first instant of the day
    (3, "2026-11-23 20:59:59", "  "),  # last instant of the day; blank card -> None
    (4, "2026-11-23 21:00:00", None),  # tomorrow
]


def test_welcome_takes_registrations_of_the_local_day_without_a_window() -> None:
    audience = welcome_audience({"customers": _customers(WELCOME)}, AS_OF, MSK)
    assert audience["customer_id"].tolist() == [2, 3]
    assert audience["registered_on"].tolist() == [AS_OF, AS_OF]
    assert audience["discount_card"].tolist() == ["DC00000002", None]


def test_welcome_with_a_poller_window_and_max_age() -> None:
    frames = {"customers": _customers(WELCOME)}
    window = (datetime(2026, 11, 23, 20, 55), datetime(2026, 11, 23, 21, 0))
    assert welcome_audience(frames, AS_OF, MSK, window=window)["customer_id"].tolist() == [3]
    # a first poll reaching back years still mails only the last max_age_hours
    window = (datetime(2000, 1, 1), datetime(2026, 11, 23, 21, 0))
    assert welcome_audience(frames, AS_OF, MSK, window=window, max_age_hours=24)["customer_id"].tolist() == [
        2,
        3,
    ]
    audience = build_audience("welcome", frames, AS_OF, MSK, {"max_age_hours": 0.5}, window=window)
    assert audience["customer_id"].tolist() == [3]


def test_welcome_campaign_is_a_polled_service_mail_keyed_per_customer() -> None:
    campaign = load_campaign(CAMPAIGNS / "welcome.toml")
    assert campaign.kind == "service" and not campaign.marketing and campaign.polled
    frames = {"customers": _customers(WELCOME)}
    recipients = attach_customers(campaign, welcome_audience(frames, AS_OF, MSK), frames["customers"])
    assert recipients["occasion_key"].tolist() == ["welcome:2", "welcome:3"]


def test_welcome_mail_has_no_unsubscribe_and_tags_links(settings: Settings) -> None:
    campaign = load_campaign(CAMPAIGNS / "welcome.toml")
    frames = {"customers": _customers(WELCOME)}
    rows = attach_customers(campaign, welcome_audience(frames, AS_OF, MSK), frames["customers"])
    composer = MailComposer(campaign, settings, {})
    for language in ("ru", "en"):
        mail = composer.compose({**rows.iloc[0].to_dict(), "language": language})
        assert "DC00000002" in mail.text and "DC00000002" in mail.html
        assert "/account?utm_source=" in mail.text and "utm_campaign=welcome" in mail.html
        assert "List-Unsubscribe" not in mail.headers and "token=" not in mail.text
        assert settings.support_email in mail.text


# --------------------------------------------------------------------------------------------
# Password reset


def _resets(rows: list[tuple]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["id", "customer_id", "requested_at", "reset_url", "expires_at"])
    for column in ("requested_at", "expires_at"):
        frame[column] = pd.to_datetime(frame[column], format="ISO8601")
    return frame


def _url(token: str) -> str:
    return f"https://shop.example/account/password/reset?token={token}"


RESETS = [
    (1, 10, "2026-11-22 20:59:59", _url("yesterday"), "2026-11-23 22:00"),  # before the day
    (2, 11, "2026-11-22 21:00:00", _url("first"), "2026-11-23 21:00:01"),  # valid 1 s past the end
    (3, 12, "2026-11-23 10:00:00", _url("expiring"), "2026-11-23 21:00:00"),  # expires at the end
    (4, 13, "2026-11-23 10:00:00", _url("older"), "2026-11-24 10:00"),  # superseded by 5
    (5, 13, "2026-11-23 11:00:00", _url("newer"), "2026-11-24 11:00"),
    (6, 14, "2026-11-23 10:00:00", _url("valid-older"), "2026-11-24 10:00"),  # the newer one
    (7, 14, "2026-11-23 12:00:00", _url("expired-newer"), "2026-11-23 13:00"),  # ... has expired
    (8, 15, "2026-11-23 12:00:00", "not a url", "2026-11-24 12:00"),  # broken link
    (9, 16, "2026-11-23 12:00:00", _url("no-expiry"), None),
    (10, 17, "2026-11-23 21:00:00", _url("tomorrow"), "2026-11-24 21:00"),  # after the day
]


def test_password_reset_mails_live_requests_of_the_window_latest_per_customer() -> None:
    audience = password_reset_audience({"password_resets": _resets(RESETS)}, AS_OF, MSK)
    assert list(zip(audience["customer_id"], audience["reset_id"], strict=True)) == [(11, 2), (13, 5)]
    assert audience["valid_minutes"].tolist() == [1440, 1440]
    assert audience["reset_url"].tolist() == [_url("first"), _url("newer")]


def test_password_reset_expiry_is_checked_at_the_end_of_the_poll_window() -> None:
    frames = {"password_resets": _resets(RESETS)}
    window = (datetime(2026, 11, 23, 11, 59), datetime(2026, 11, 23, 12, 1))
    # at 12:01 request 7 (valid until 13:00) is live: it is the latest of customer 14
    audience = build_audience("password_reset", frames, AS_OF, MSK, {}, window=window)
    assert audience["reset_id"].tolist() == [7]
    assert audience["valid_minutes"].tolist() == [60]
    # a window ending after 13:00 finds it expired, and never falls back to the older link
    late = (datetime(2026, 11, 23, 11, 59), datetime(2026, 11, 23, 13, 0))
    assert build_audience("password_reset", frames, AS_OF, MSK, {}, window=late).empty


def test_password_reminder_campaign_and_mail(settings: Settings) -> None:
    campaign = load_campaign(CAMPAIGNS / "password_reminder.toml")
    assert campaign.kind == "service" and not campaign.marketing and campaign.polled
    assert "password_resets" in campaign.datasets
    frames = {"password_resets": _resets(RESETS), "customers": _customers([(11, "2025-01-01", None)])}
    audience = build_audience(campaign.audience, frames, AS_OF, MSK, campaign.params)
    rows = attach_customers(campaign, audience, frames["customers"])
    assert rows["occasion_key"].tolist() == ["password_reset:2"]
    composer = MailComposer(campaign, settings, {})
    for language in ("ru", "en"):
        mail = composer.compose({**rows.iloc[0].to_dict(), "language": language})
        # the link goes out exactly as issued: no UTM tags on a secret (possibly signed) link
        assert f"{_url('first')}\n" in mail.text and f'href="{_url("first")}"' in mail.html
        assert "24 h" in mail.text or "24 ч" in mail.text
        assert "List-Unsubscribe" not in mail.headers
        assert "first" not in str(mail.custom_args)


def test_run_report_never_shows_the_reset_link(settings: Settings) -> None:
    campaign = load_campaign(CAMPAIGNS / "password_reminder.toml")
    frames = {"password_resets": _resets(RESETS), "customers": _customers([(11, "2025-01-01", None)])}
    rows = attach_customers(
        campaign, build_audience(campaign.audience, frames, AS_OF, MSK, campaign.params), frames["customers"]
    )
    mail = MailComposer(campaign, settings, {}).compose(rows.iloc[0].to_dict())
    report = RunReport(run_id="r1", campaign=campaign.name, as_of=AS_OF, dry_run=True, sample=mail)
    markdown = report.markdown("completed")
    assert "## Sample mail" in markdown and "reset?token=…" in markdown
    assert "token=first" not in markdown and _url("first") not in markdown
    assert "first" not in str(report.details())


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("https://s/reset?token=abc123", "https://s/reset?token=…"),
        ("https://s/reset?token=a%2Bb%2F%3D&utm_source=x", "https://s/reset?token=…&utm_source=x"),
        ('<a href="https://s/r?x=1&reset_token=Zz~9">', '<a href="https://s/r?x=1&reset_token=…">'),
        ("https://s/u?token=abc.def-ghi_jkl#top", "https://s/u?token=…#top"),
    ],
)
def test_redact_tokens_hides_the_whole_value_whatever_its_alphabet(text: str, expected: str) -> None:
    assert redact_tokens(text) == expected


def test_data_checks_quarantine_broken_reset_links_without_showing_them() -> None:
    from shopmail.run.vocabulary import checks_table
    from shopmail.shop.data_checks import run_gate

    good = [(i, i, "2026-11-23 10:00", _url(f"secret{i}"), "2026-11-24 10:00") for i in range(1, 40)]
    broken = (99, 99, "2026-11-23 10:00", "not a url", "2026-11-24 10:00")
    gate = run_gate({"password_resets": _resets([*good, broken])})
    assert gate.success and gate.quarantined_keys("password_resets") == {99}  # 1 of 40: quarantined
    many_broken = [(90 + i, 90 + i, "2026-11-23 10:00", f"bad {i}", "2026-11-24 10:00") for i in range(6)]
    # 6 of 45 (more than 5 % and more than 5 rows: a small table's single odd row does not stop it)
    too_many = run_gate({"password_resets": _resets([*good[:39], *many_broken])})
    assert not too_many.success and "password_resets.reset_url" in too_many.failure_text()
    tables = checks_table(gate.results), checks_table(too_many.results)
    for shown in (tables[0], tables[1] + too_many.failure_text()):
        assert "password_resets" in shown and "secret" not in shown and "not a url" not in shown
        assert "bad 0" not in shown
