"""Unsubscribing by mail: the `mailto:` of a real marketing mail's List-Unsubscribe header, sent as a
mail client sends it, posted by SendGrid Inbound Parse (multipart/form-data, parsed fields or the raw
MIME message) to the running feedback app, unsubscribes the customer; forged or missing tokens do not,
and every post gets a 2xx (SendGrid retries anything else for three days)."""

from __future__ import annotations

import json
from email.message import EmailMessage
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import httpx
import pytest

from config.settings import Settings
from shopmail.campaigns import get_campaign
from shopmail.db import get_engine
from shopmail.mail.samples import sample_products, sample_rows
from shopmail.mail.unsubscribe_mail import token_in_subject
from shopmail.run.composer import MailComposer
from shopmail.state import state_db
from shopmail.state.feedback import unsubscribed_customers
from shopmail.web.feedback_app import running_feedback_app


def _marketing_mail(settings: Settings):
    campaign = get_campaign("wakeup")
    composer = MailComposer(campaign, settings, sample_products(settings.templates_dir))
    row = {**sample_rows(campaign.template, settings.templates_dir)[0], "language": "ru"}
    return row, composer.compose(row)


def _uris(header: str) -> list[str]:
    return [part.strip().strip("<>") for part in header.split(",")]


def _client_mail(mailto: str, sender: str) -> EmailMessage:
    """The mail a client sends for a `mailto:` URI (RFC 6068: address, then ?subject=...)."""
    parts = urlsplit(mailto)
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = unquote(parts.path)
    msg["Subject"] = parse_qs(parts.query)["subject"][0]
    msg.set_content("This message was automatically generated to unsubscribe.")
    return msg


def _parse_fields(msg: EmailMessage) -> dict[str, str]:
    """What Inbound Parse posts by default: the message's parts as form fields."""
    return {
        "headers": "".join(f"{k}: {v}\n" for k, v in msg.items()),
        "to": msg["To"],
        "from": msg["From"],
        "subject": msg["Subject"],
        "text": msg.get_content(),
        "envelope": json.dumps({"to": [msg["To"]], "from": msg["From"]}),
        "charsets": json.dumps({"to": "UTF-8", "subject": "UTF-8", "from": "UTF-8", "text": "UTF-8"}),
        "SPF": "pass",
    }


@pytest.fixture
def app(settings: Settings, tmp_path: Path):
    engine = state_db.upgrade(f"sqlite:///{tmp_path / 'state.sqlite'}")
    with (
        running_feedback_app(settings, engine) as running,
        httpx.Client(base_url=running.url, timeout=10) as http,
    ):
        yield http, engine
    get_engine.cache_clear()


def test_list_unsubscribe_has_the_https_link_then_the_mailto_form(settings: Settings) -> None:
    row, mail = _marketing_mail(settings)
    link, mailto = _uris(mail.headers["List-Unsubscribe"])
    assert link.startswith("https://") and "token=" in link
    assert mailto.startswith(f"mailto:{settings.unsubscribe_mailbox}?subject=unsubscribe%20")
    assert token_in_subject(unquote(mailto.split("subject=", 1)[1])) == link.split("token=", 1)[1]
    assert mail.headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    without = MailComposer(
        get_campaign("wakeup"), settings.model_copy(update={"unsubscribe_mailbox": ""}), {}
    )
    assert without.compose(row).headers["List-Unsubscribe"] == f"<{link}>"


@pytest.mark.parametrize("raw", [False, True], ids=["parsed-fields", "raw-mime"])
def test_a_mail_to_the_unsubscribe_mailbox_unsubscribes(settings: Settings, app, raw: bool) -> None:
    http, engine = app
    row, mail = _marketing_mail(settings)
    sent = _client_mail(_uris(mail.headers["List-Unsubscribe"])[1], "Анна <anna@mail.example>")
    if raw:  # "POST the raw, full MIME message"
        form = {"email": sent.as_string(), "to": sent["To"], "from": sent["From"], "envelope": "{}"}
    else:
        form = _parse_fields(sent)
    response = http.post("/sendgrid/inbound", files={k: (None, v) for k, v in form.items()})
    assert response.status_code == 200 and response.json() == {"unsubscribed": True}
    assert unsubscribed_customers(engine, [row["customer_id"]]) == {row["customer_id"]}


@pytest.mark.parametrize(
    "subject", ["unsubscribe AAAA.BBBB", "Re: hello", "", "unsubscribe " + "x" * 600 + ".y"]
)
def test_forged_or_missing_tokens_unsubscribe_nobody_and_get_a_2xx(settings: Settings, app, subject) -> None:
    http, engine = app
    form = {"subject": subject, "from": "x@mail.example", "to": settings.unsubscribe_mailbox}
    response = http.post("/sendgrid/inbound", files={k: (None, v) for k, v in form.items()})
    assert response.status_code == 200 and response.json() == {"unsubscribed": False}
    not_multipart = http.post(
        "/sendgrid/inbound", content=b"subject=unsubscribe", headers={"content-type": "text/plain"}
    )
    assert not_multipart.status_code == 200 and not_multipart.json() == {"unsubscribed": False}
    assert unsubscribed_customers(engine, [4242]) == set()
