"""Payloads SendGrid never rejects: display names cleaned, campaign categories checked when the
campaign file is loaded, click tracking off for mails whose links carry secrets."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from shopmail.campaigns import (
    MAX_CATEGORIES,
    SENDER_CATEGORIES,
    CampaignError,
    category_problems,
    get_campaign,
    load_campaign,
    registry,
)
from shopmail.devtools.sendgrid_sink import SinkStore, running_sink, validate_mail_send
from shopmail.mailer.base import OutgoingMail, SendStatus
from shopmail.mailer.sendgrid_api import (
    SendGridSender,
    display_name,
    group_for_requests,
    merged_payload,
    sendgrid_payload,
)

CAMPAIGNS_DIR = Path(__file__).resolve().parent.parent / "config" / "campaigns"


def make_mail(key: str = "k1", **changes: object) -> OutgoingMail:
    mail = OutgoingMail(
        message_key=key,
        to_email=f"{key}@example.com",
        to_name="Иван Петров",
        subject="Тема",
        html="<p>Привет</p>",
        text="Привет",
        from_email="shop@shop.example",
        from_name="Магазин",
        reply_to="support@shop.example",
        custom_args={"campaign": "wakeup"},
        categories=("trigger", "wakeup"),
    )
    return replace(mail, **changes)


# --- display names ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "cleaned"),
    [
        ("Петрова, Анна", "Петрова Анна"),
        ("Анна;Петрова", "Анна Петрова"),
        ("Иван\r\nBcc: victim@example.com", "Иван Bcc: victim@example.com"),
        ("Tab\there\x00\x7f\x85end", "Tab here end"),
        ("Line\u2028Para\u2029graph", "Line Para graph"),
        ("  O'Brien  (VIP)  «Ёлка» ", "O'Brien (VIP) «Ёлка»"),
        (" , ; \r\n", None),
        ("", None),
        (None, None),
    ],
)
def test_display_name_drops_what_sendgrid_refuses(name: str | None, cleaned: str | None) -> None:
    assert display_name(name) == cleaned


def test_hostile_names_give_a_payload_sendgrid_accepts() -> None:
    mail = make_mail(
        to_name="Петрова, Анна;\r\nBcc: x@evil.example",
        from_name="Shop; Inc,\x00",
        reply_to="Support, Team <support@shop.example>",
    )
    payload = sendgrid_payload(mail)

    assert payload["personalizations"][0]["to"] == [
        {"email": "k1@example.com", "name": "Петрова Анна Bcc: x@evil.example"}
    ]
    assert payload["from"] == {"email": "shop@shop.example", "name": "Shop Inc"}
    assert payload["reply_to"] == {"email": "support@shop.example", "name": "Support Team"}
    assert validate_mail_send(payload) == []
    assert validate_mail_send(merged_payload([mail, make_mail("k2", to_name=",;")])) == []


def test_a_comma_in_the_name_no_longer_rejects_the_mail() -> None:
    """The failure being fixed: SendGrid answered 400 and the mail was marked rejected for good."""
    with (
        running_sink(SinkStore(api_key="SG.names")) as sink,
        SendGridSender("SG.names", sink.url, retries=0, activity_lookup=False) as sender,
    ):
        [result] = sender.send_batch([make_mail(to_name="Петрова, Анна")])
        [stored] = sink.store.messages
    assert result.status is SendStatus.sent
    assert stored.payload["personalizations"][0]["to"][0]["name"] == "Петрова Анна"


# --- click tracking ---------------------------------------------------------------------------------


def test_click_tracking_is_switched_off_for_mails_whose_links_carry_secrets() -> None:
    reset = make_mail(html='<a href="https://shop.example/reset?token=s3cret">x</a>', click_tracking=False)
    payload = sendgrid_payload(reset)
    assert payload["tracking_settings"] == {"click_tracking": {"enable": False, "enable_text": False}}
    assert validate_mail_send(payload) == []
    assert "tracking_settings" not in sendgrid_payload(make_mail())  # the account's setting applies


def test_mails_with_different_click_tracking_never_share_a_request() -> None:
    mails = [make_mail("a"), make_mail("b", click_tracking=False), make_mail("c")]
    groups = group_for_requests(mails)
    assert sorted([m.message_key for m in g] for g in groups) == [["a", "c"], ["b"]]
    [untracked] = [g for g in groups if not g[0].click_tracking]
    assert merged_payload(untracked)["tracking_settings"]["click_tracking"]["enable"] is False


def test_password_reset_campaign_switches_click_tracking_off() -> None:
    campaigns = registry(CAMPAIGNS_DIR)
    assert campaigns["password_reminder"].click_tracking is False
    assert [n for n, c in campaigns.items() if not c.click_tracking] == ["password_reminder"]


# --- campaign categories ----------------------------------------------------------------------------


def write_campaign(folder: Path, name: str, categories: list[str]) -> Path:
    text = (CAMPAIGNS_DIR / "wakeup.toml").read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if not line.startswith(("name =", "categories ="))]
    path = folder / f"{name}.toml"
    body = "\n".join([f'name = "{name}"', f"categories = {categories!r}".replace("'", '"'), *lines])
    path.write_text(body + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("categories", "problem"),
    [
        ([f"c{i}" for i in range(11)], "11 categories, SendGrid allows at most 10 per mail"),
        (["trigger", "скидки"], "is not ASCII"),
        (["x" * 256], "longer than 255 characters"),
        (["trigger", "wakeup", "trigger"], "duplicate categories ['trigger']"),
        (["trigger", ""], "a category is empty"),
    ],
)
def test_campaign_file_with_categories_sendgrid_refuses_is_an_error_naming_the_file(
    tmp_path: Path, categories: list[str], problem: str
) -> None:
    path = write_campaign(tmp_path, "bad_categories", categories)
    with pytest.raises(CampaignError) as error:
        load_campaign(path)
    assert str(error.value).startswith("bad_categories.toml: ") and problem in str(error.value)


def test_ten_unique_ascii_categories_load(tmp_path: Path) -> None:
    categories = [f"c{i}" for i in range(MAX_CATEGORIES - len(SENDER_CATEGORIES))]
    assert load_campaign(write_campaign(tmp_path, "many", categories)).categories == tuple(categories)


def test_categories_the_sender_adds_count_against_the_limit() -> None:
    ten = tuple(f"c{i}" for i in range(10))
    assert category_problems(ten, added=()) == []
    assert category_problems(ten, added=("shopmail",)) == [
        "11 categories, SendGrid allows at most 10 per mail (the sender adds 1)"
    ]
    assert category_problems(("a", "shopmail"), added=("shopmail",)) == [
        "duplicate categories ['shopmail'] (SendGrid needs a unique list)"
    ]


def test_sender_adds_exactly_sender_categories() -> None:
    campaign = get_campaign("wakeup")
    payload = sendgrid_payload(make_mail(categories=campaign.categories))
    assert payload["categories"] == [*campaign.categories, *SENDER_CATEGORIES]


@pytest.mark.parametrize("name", list(registry(CAMPAIGNS_DIR)))
def test_every_shipped_campaign_has_categories_sendgrid_accepts(name: str) -> None:
    campaign = registry(CAMPAIGNS_DIR)[name]
    assert category_problems(campaign.categories) == []
    payload = sendgrid_payload(
        make_mail(categories=campaign.categories, click_tracking=campaign.click_tracking)
    )
    assert validate_mail_send(payload) == []
