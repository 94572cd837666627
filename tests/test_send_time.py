"""Quiet hours and send times in the customer's local zone (segments/send_time.py), and `send_at`
through the mail providers: SendGrid payload, the local SendGrid sink, the file outbox."""

from __future__ import annotations

from datetime import UTC, datetime, time
from email import policy
from email.parser import BytesParser
from zoneinfo import ZoneInfo

import pandas as pd
import pytest

from config.settings import Settings
from segments.send_time import (
    QuietHours,
    city_zones,
    customer_zones,
    normalise_city,
    send_at,
    send_at_by_zone,
    zones_for_cities,
)
from shopmail.devtools.demo_shop import CITIES
from shopmail.devtools.sendgrid_sink import MSG_SEND_AT_TOO_LATE, running_sink, validate_mail_send
from shopmail.mailer.base import OutgoingMail, SendStatus
from shopmail.mailer.outbox import SEND_AT_HEADER, FileOutboxSender
from shopmail.mailer.sendgrid_api import SendGridSender, merged_payload, sendgrid_payload

QUIET = QuietHours.parse("21-9")


def _local(stamp: int, zone: str) -> datetime:
    return datetime.fromtimestamp(stamp, ZoneInfo(zone))


def test_parse_quiet_hours() -> None:
    assert QuietHours(time(21), time(9)) == QUIET
    assert QuietHours.parse("22:30-8:00") == QuietHours(time(22, 30), time(8))
    assert QuietHours.parse("") is None and QuietHours.parse("off") is None
    for bad in ("21", "25-9", "21-21", "nine-five", "21:60-9"):
        with pytest.raises(ValueError):
            QuietHours.parse(bad)


def test_settings_validate_quiet_hours(settings: Settings) -> None:
    assert settings.quiet_hours == "21-9" and settings.frequency_cap == 3
    assert settings.frequency_window_days == 7 and settings.daily_cap == 1
    with pytest.raises(ValueError):
        Settings(quiet_hours="21-25")


def test_midnight_wrap() -> None:
    inside = [time(21), time(23, 59), time(0), time(3), time(8, 59, 59)]
    outside = [time(9), time(12), time(20, 59, 59)]
    assert all(QUIET.contains(t) for t in inside)
    assert not any(QUIET.contains(t) for t in outside)
    day = QuietHours.parse("1-6")  # no wrap
    assert day.contains(time(1)) and day.contains(time(5, 59)) and not day.contains(time(6))
    assert not day.contains(time(0, 30))
    moscow = ZoneInfo("Europe/Moscow")
    # before midnight: tomorrow 09:00; after midnight: today 09:00; outside: None
    assert QUIET.next_allowed(datetime(2026, 3, 10, 22, 15, tzinfo=moscow)) == datetime(
        2026, 3, 11, 9, tzinfo=moscow
    )
    assert QUIET.next_allowed(datetime(2026, 3, 11, 2, 0, tzinfo=moscow)) == datetime(
        2026, 3, 11, 9, tzinfo=moscow
    )
    assert QUIET.next_allowed(datetime(2026, 3, 11, 9, 0, tzinfo=moscow)) is None


def test_same_instant_kaliningrad_vs_vladivostok() -> None:
    noon_utc = datetime(2026, 3, 10, 12, 0)  # Kaliningrad 14:00 (send now), Vladivostok 22:00 (quiet)
    assert send_at("Europe/Kaliningrad", noon_utc, QUIET) is None
    later = send_at("Asia/Vladivostok", noon_utc, QUIET)
    assert _local(later, "Asia/Vladivostok") == datetime(2026, 3, 11, 9, tzinfo=ZoneInfo("Asia/Vladivostok"))
    assert later - int(noon_utc.replace(tzinfo=UTC).timestamp()) == 11 * 3600

    early_utc = datetime(2026, 3, 10, 5, 0, tzinfo=UTC)  # Kaliningrad 07:00 (quiet), Vladivostok 15:00
    kaliningrad = send_at("Europe/Kaliningrad", early_utc, QUIET)
    assert _local(kaliningrad, "Europe/Kaliningrad").time() == time(9)
    assert kaliningrad - int(early_utc.timestamp()) == 2 * 3600
    assert send_at("Asia/Vladivostok", early_utc, QUIET) is None
    assert send_at("Asia/Vladivostok", noon_utc, None) is None  # no quiet hours: always now

    zones = pd.Series(["Europe/Kaliningrad", "Asia/Vladivostok", "Europe/Kaliningrad"])
    by_zone = send_at_by_zone(zones, noon_utc, QUIET)
    assert by_zone.isna().tolist() == [True, False, True] and by_zone[1] == later


def test_city_zones_and_unknown_city() -> None:
    table = city_zones()
    assert len(table) >= 50
    assert all(normalise_city(c) in table for c, _ in CITIES), "every demo-shop city needs a zone"
    cities = pd.Series(
        ["Калининград", "г. Орёл", "  ВЛАДИВОСТОК ", "Атлантида", None, "Петропавловск-Камчатский"]
    )
    assert zones_for_cities(cities, "Europe/Moscow").tolist() == [
        "Europe/Kaliningrad",
        "Europe/Moscow",
        "Asia/Vladivostok",
        "Europe/Moscow",  # unknown city: shop zone
        "Europe/Moscow",  # no city: shop zone
        "Asia/Kamchatka",
    ]
    customers = pd.DataFrame({"id": [10, 11], "city": ["Новосибирск", "Омск"]})
    ids = pd.Series([11, 12, 10], index=[5, 6, 7])
    assert customer_zones(ids, customers, "Europe/Samara").to_dict() == {
        5: "Asia/Omsk",
        6: "Europe/Samara",  # not in the customers frame
        7: "Asia/Novosibirsk",
    }


def _mail(key: str, email: str, at: int | None) -> OutgoingMail:
    return OutgoingMail(
        message_key=key,
        to_email=email,
        subject="Скидка",
        html="<p>Привет</p>",
        text="Привет",
        from_email="shop@example.com",
        send_at=at,
    )


def test_sendgrid_payload_carries_send_at_per_personalization() -> None:
    at = int(datetime.now(UTC).timestamp()) + 3600
    assert sendgrid_payload(_mail("k1", "a@example.com", at))["personalizations"][0]["send_at"] == at
    assert "send_at" not in sendgrid_payload(_mail("k2", "b@example.com", None))["personalizations"][0]
    merged = merged_payload([_mail("k1", "a@example.com", at), _mail("k2", "b@example.com", None)])
    assert [p.get("send_at") for p in merged["personalizations"]] == [at, None]
    assert "send_at" not in merged  # never message-level: different times share one request
    assert validate_mail_send(merged) == []


def test_sink_validates_send_at_like_sendgrid() -> None:
    now = 1_800_000_000
    payload = sendgrid_payload(_mail("k", "a@example.com", now + 72 * 3600))
    assert validate_mail_send(payload, now=now) == []
    payload["personalizations"][0]["send_at"] = now + 72 * 3600 + 1
    errors = validate_mail_send(payload, now=now)
    assert [(e["message"], e["field"]) for e in errors] == [
        (MSG_SEND_AT_TOO_LATE, "personalizations.0.send_at")
    ]
    payload["personalizations"][0]["send_at"] = "1800000000"
    assert validate_mail_send(payload, now=now)[0]["message"].startswith("Invalid type. Expected: integer")
    payload["personalizations"][0]["send_at"] = now - 60  # in the past: delivered at once
    payload["send_at"] = 1.5
    assert [e["field"] for e in validate_mail_send(payload, now=now)] == ["send_at"]


def test_sendgrid_sender_and_sink_accept_scheduled_mails() -> None:
    at = int(datetime.now(UTC).timestamp()) + 6 * 3600
    with running_sink() as sink:
        sender = SendGridSender("SG.test", host=sink.url, retries=0, activity_lookup=False)
        with sender:
            results = sender.send_batch(
                [_mail("k1", "a@example.com", at), _mail("k2", "b@example.com", None)]
            )
            assert [r.status for r in results] == [SendStatus.sent, SendStatus.sent]
            too_late = sender.send_batch([_mail("k3", "c@example.com", at + 72 * 3600)])
            assert too_late[0].status is SendStatus.rejected and "72 hours" in (too_late[0].error or "")
        personalizations = [p for m in sink.store.messages for p in m.payload["personalizations"]]
    assert {p["custom_args"]["shopmail_key"]: p.get("send_at") for p in personalizations} == {
        "k1": at,
        "k2": None,
    }


def test_outbox_records_send_at(tmp_path) -> None:
    at = 1_800_000_000
    sender = FileOutboxSender(tmp_path)
    results = sender.send_batch([_mail("k1", "a@example.com", at), _mail("k2", "b@example.com", None)])
    assert all(r.status is SendStatus.sent for r in results)
    parse = BytesParser(policy=policy.default).parsebytes
    first = parse(sender.path_for("k1").read_bytes())
    second = parse(sender.path_for("k2").read_bytes())
    assert first[SEND_AT_HEADER] == str(at) and second[SEND_AT_HEADER] is None
