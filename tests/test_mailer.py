"""Senders behind the `Sender` contract: file outbox, in-memory, SendGrid (against the local sink)."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from dataclasses import replace
from email import policy
from email.parser import BytesParser
from pathlib import Path

import httpx
import pytest
from sendgrid.helpers.mail import (
    Category,
    CustomArg,
    From,
    Header,
    HtmlContent,
    Mail,
    PlainTextContent,
    ReplyTo,
    To,
)

from config.settings import Settings
from shopmail.devtools.sendgrid_sink import RunningSink, SinkStore, running_sink, validate_mail_send
from shopmail.mailer.base import OutgoingMail, SendStatus
from shopmail.mailer.errors import MailerConfigurationError
from shopmail.mailer.factory import make_sender
from shopmail.mailer.memory import InMemorySender
from shopmail.mailer.outbox import FileOutboxSender, message_id_for, outbox_file_name
from shopmail.mailer.sendgrid_api import SendGridSender, sendgrid_payload
from tests.conftest import production_values

API_KEY = "SG.test-key.never-logged"
UNSUBSCRIBE = {
    "List-Unsubscribe": "<https://shop.example/unsubscribe?t=abc>",
    "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
}


def make_mail(key: str = "wakeup14:order:1", to: str = "ivan@example.com", **changes) -> OutgoingMail:
    mail = OutgoingMail(
        message_key=key,
        to_email=to,
        to_name="Иван Петров",
        subject="Иван, мы скучаем — скидка 10 % ждёт вас",
        html="<p>Здравствуйте, <b>Иван</b>!</p>",
        text="Здравствуйте, Иван!",
        from_email="shop@example.com",
        from_name="Демо-магазин",
        reply_to="support@example.com",
        headers=dict(UNSUBSCRIBE),
        custom_args={"campaign": "wakeup14", "customer_id": "1"},
        categories=("wakeup14", "marketing"),
    )
    return replace(mail, **changes)


def parse_eml(path: Path):
    return BytesParser(policy=policy.default).parsebytes(path.read_bytes())


# --- file outbox -------------------------------------------------------------------------------


def test_outbox_writes_rfc5322_files_that_parse_back(tmp_path: Path) -> None:
    mail = make_mail()
    [result] = FileOutboxSender(tmp_path).send_batch([mail])

    assert result.status is SendStatus.sent
    assert result.provider_message_id == outbox_file_name(mail.message_key)
    path = tmp_path / result.provider_message_id
    raw = path.read_bytes()
    head, _, _ = raw.partition(b"\r\n\r\n")  # CRLF line ends
    assert head.isascii()  # non-ASCII header text is RFC 2047 encoded
    assert "Иван".encode() in raw  # short UTF-8 bodies stay readable (8bit)
    msg = parse_eml(path)
    assert msg["Subject"] == mail.subject
    assert msg["From"].addresses[0].display_name == "Демо-магазин"
    assert msg["From"].addresses[0].addr_spec == "shop@example.com"
    assert msg["To"].addresses[0].addr_spec == "ivan@example.com"
    assert msg["To"].addresses[0].display_name == "Иван Петров"
    assert msg["Reply-To"] == "support@example.com"
    assert msg["Date"].datetime is not None
    assert msg["Message-ID"] == message_id_for(mail)
    assert msg["List-Unsubscribe"] == UNSUBSCRIBE["List-Unsubscribe"]
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert msg["X-Shopmail-Key"] == mail.message_key
    assert msg["X-Shopmail-campaign"] == "wakeup14"
    assert msg["X-Shopmail-customer_id"] == "1"
    assert msg["X-Shopmail-Categories"] == "wakeup14, marketing"
    assert msg.get_content_type() == "multipart/alternative"
    plain, html = msg.iter_parts()
    assert plain.get_content_type() == "text/plain" and plain.get_content_charset() == "utf-8"
    assert plain.get_content().strip() == mail.text
    assert html.get_content_type() == "text/html"
    assert html.get_content().strip() == mail.html


def test_outbox_message_id_is_deterministic_per_key() -> None:
    assert message_id_for(make_mail("a")) == message_id_for(make_mail("a", to="x@example.com"))
    assert message_id_for(make_mail("a")) != message_id_for(make_mail("b"))
    assert message_id_for(make_mail("a")).endswith("@example.com>")


def test_outbox_resend_overwrites_instead_of_duplicating(tmp_path: Path) -> None:
    sender = FileOutboxSender(tmp_path)
    first = sender.send_batch([make_mail("k1"), make_mail("k2")])
    again = sender.send_batch([make_mail("k1", subject="Новая тема"), make_mail("k2")])

    assert [r.provider_message_id for r in first] == [r.provider_message_id for r in again]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        r.provider_message_id for r in first
    )  # exactly two files, no temp leftovers
    assert parse_eml(sender.path_for("k1"))["Subject"] == "Новая тема"


def test_outbox_rejects_bad_mails_and_continues(tmp_path: Path) -> None:
    mails = [
        make_mail("bad-empty", to=""),
        make_mail("bad-format", to="ivan.example.com"),
        make_mail("good"),
        make_mail("injection", subject="Hi\r\nBcc: victim@example.com"),
        make_mail("no-content", text="", html=""),
    ]
    results = FileOutboxSender(tmp_path).send_batch(mails)

    assert [r.status for r in results] == [
        SendStatus.rejected,
        SendStatus.rejected,
        SendStatus.sent,
        SendStatus.rejected,
        SendStatus.rejected,
    ]
    assert "invalid recipient address" in results[0].error
    assert results[1].provider_message_id is None
    assert [p.name for p in tmp_path.iterdir()] == [results[2].provider_message_id]


def test_outbox_html_only_mail_is_a_single_html_part(tmp_path: Path) -> None:
    [result] = FileOutboxSender(tmp_path).send_batch([make_mail(text="")])
    msg = parse_eml(tmp_path / result.provider_message_id)
    assert msg.get_content_type() == "text/html"
    assert "Иван" in msg.get_content()


def test_outbox_unusable_folder_is_a_configuration_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(MailerConfigurationError):
        FileOutboxSender(blocker / "outbox")


# --- in-memory ---------------------------------------------------------------------------------


def test_in_memory_is_idempotent_per_message_key() -> None:
    sender = InMemorySender()
    first = sender.send_batch([make_mail("k1"), make_mail("k2")])
    again = sender.send_batch([make_mail("k1", subject="v2")])

    assert list(sender.sent) == ["k1", "k2"]
    assert sender.sent["k1"].subject == "v2"
    assert [m.message_key for m in sender.messages] == ["k1", "k2"]
    assert again[0].provider_message_id == first[0].provider_message_id
    assert sender.batch_sizes == [2, 1]


def test_in_memory_simulates_refused_and_unavailable_recipients() -> None:
    sender = InMemorySender(fail_addresses={"Bounce@example.com"}, unavailable_addresses={"later@x.ru"})
    results = sender.send_batch(
        [
            make_mail("a", to="bounce@example.com"),
            make_mail("b", to="later@x.ru"),
            make_mail("c", to="not-an-address"),
            make_mail("d"),
        ]
    )
    assert [r.status for r in results] == [
        SendStatus.rejected,
        SendStatus.failed,
        SendStatus.rejected,
        SendStatus.sent,
    ]
    assert list(sender.sent) == ["d"]


# --- SendGrid payload --------------------------------------------------------------------------


def test_sendgrid_payload_is_the_official_helper_payload() -> None:
    mail = make_mail()
    expected = Mail(
        from_email=From("shop@example.com", "Демо-магазин"),
        to_emails=To("ivan@example.com", "Иван Петров"),
        subject=mail.subject,
        plain_text_content=PlainTextContent(mail.text),
        html_content=HtmlContent(mail.html),
    )
    expected.reply_to = ReplyTo("support@example.com")
    for name, value in UNSUBSCRIBE.items():
        expected.header = Header(name, value, p=0)
    for name, value in [("campaign", "wakeup14"), ("customer_id", "1")]:
        expected.custom_arg = CustomArg(name, value, p=0)
    expected.custom_arg = CustomArg("shopmail_key", mail.message_key, p=0)
    expected.category = Category("marketing")
    expected.category = Category("wakeup14")

    payload = sendgrid_payload(mail)

    assert payload == expected.get()
    [personalization] = payload["personalizations"]
    assert personalization["to"] == [{"email": "ivan@example.com", "name": "Иван Петров"}]
    assert personalization["custom_args"] == {
        "campaign": "wakeup14",
        "customer_id": "1",
        "shopmail_key": mail.message_key,
    }
    assert personalization["headers"] == UNSUBSCRIBE
    assert payload["categories"] == ["wakeup14", "marketing"]
    assert [c["type"] for c in payload["content"]] == ["text/plain", "text/html"]
    assert payload["from"] == {"email": "shop@example.com", "name": "Демо-магазин"}
    assert validate_mail_send(payload) == []  # the sink agrees it is valid


def test_sendgrid_payload_skips_empty_parts_and_optional_fields() -> None:
    payload = sendgrid_payload(
        make_mail(text="", reply_to=None, headers={}, custom_args={}, categories=(), from_name="")
    )
    assert payload["content"] == [{"type": "text/html", "value": make_mail().html}]
    assert payload["from"] == {"email": "shop@example.com"}
    assert "reply_to" not in payload and "categories" not in payload
    assert payload["personalizations"][0]["custom_args"] == {"shopmail_key": "wakeup14:order:1"}


# --- SendGrid over HTTP against the local sink -------------------------------------------------


@pytest.fixture(scope="module")
def module_sink() -> Iterator[RunningSink]:
    with running_sink(SinkStore(api_key=API_KEY)) as sink:
        yield sink


@pytest.fixture
def sink(module_sink: RunningSink) -> RunningSink:
    module_sink.store.clear()
    module_sink.store.fail_next.clear()
    module_sink.store.api_key = API_KEY
    return module_sink


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def sender(sink: RunningSink, sleeps: list[float]) -> Iterator[SendGridSender]:
    with SendGridSender(
        API_KEY, sink.url, timeout_s=5, retries=3, backoff_base_s=0.01, sleep=sleeps.append
    ) as sg:
        yield sg


def test_sendgrid_mails_arrive_with_message_ids(sink: RunningSink, sender: SendGridSender) -> None:
    mails = [make_mail(f"k{i}", to=f"user{i}@example.com", subject=f"subject {i}") for i in range(3)]
    results = sender.send_batch(mails)

    assert [r.status for r in results] == [SendStatus.sent] * 3
    received = {
        m.payload["personalizations"][0]["custom_args"]["shopmail_key"]: m for m in sink.store.messages
    }
    assert set(received) == {"k0", "k1", "k2"}  # one request each: the content differs
    for mail, result in zip(mails, results, strict=True):
        assert result.provider_message_id == received[mail.message_key].message_id
        assert received[mail.message_key].payload == sendgrid_payload(mail)
    listed = httpx.get(f"{sink.url}/sink/messages", headers=sink.auth).json()
    assert len(listed) == 3


def test_sendgrid_merges_shared_content_into_personalizations(
    sink: RunningSink, sender: SendGridSender
) -> None:
    mails = [make_mail(f"k{i}", to=f"user{i}@example.com") for i in range(2500)]
    results = sender.send_batch(mails)
    assert {r.status for r in results} == {SendStatus.sent}
    requests = sink.store.messages
    assert sorted(len(m.payload["personalizations"]) for m in requests) == [500, 1000, 1000]
    keys = [p["custom_args"]["shopmail_key"] for m in requests for p in m.payload["personalizations"]]
    assert sorted(keys) == sorted(m.message_key for m in mails)
    first = requests[0].payload
    assert first["subject"] == mails[0].subject and len(first["content"]) == 2


def test_sendgrid_invalid_payload_is_rejected_with_sendgrid_message(
    sink: RunningSink, sender: SendGridSender
) -> None:
    before = sink.store.requests
    results = sender.send_batch(
        [
            make_mail("empty", text="", html=""),
            make_mail("bad-to", to="ivan@"),
            make_mail("ok"),
        ]
    )
    # a refusal about the request (its content), not a recipient: failed, sent again once fixed
    assert [r.status for r in results] == [SendStatus.failed, SendStatus.rejected, SendStatus.sent]
    assert results[0].error.startswith("request refused: HTTP 400: ")
    assert "the content parameter is required" in results[0].error
    assert "(field: content)" in results[0].error
    assert "invalid address" in results[1].error  # refused locally, never posted
    assert sink.store.requests - before == 2 and len(sink.store.messages) == 1


def test_sendgrid_bad_key_raises_configuration_error(sink: RunningSink) -> None:
    with (
        SendGridSender("SG.wrong", sink.url) as sender,
        pytest.raises(MailerConfigurationError, match="authorization grant is invalid"),
    ):
        sender.send_batch([make_mail()])
    assert sink.store.messages == []


def test_sendgrid_auth_failure_after_success_fails_the_mail_retryably(
    sink: RunningSink, sender: SendGridSender
) -> None:
    """A key revoked mid-run concerns every request, not the recipient: failed, never rejected."""
    assert sender.send_batch([make_mail("a")])[0].status is SendStatus.sent
    sink.store.api_key = "SG.revoked-meanwhile"
    [result] = sender.send_batch([make_mail("b")])
    assert result.status is SendStatus.failed and "HTTP 401" in result.error


def test_sendgrid_retries_503_then_sends(
    sink: RunningSink, sender: SendGridSender, sleeps: list[float]
) -> None:
    sink.store.script([503, 502])
    before = sink.store.requests
    [result] = sender.send_batch([make_mail()])

    assert result.status is SendStatus.sent and result.provider_message_id
    assert sink.store.requests - before == 3 and len(sink.store.messages) == 1
    assert len(sleeps) == 2
    assert 0.005 <= sleeps[0] <= 0.01 and 0.01 <= sleeps[1] <= 0.02  # exponential, jittered


def test_sendgrid_waits_for_rate_limit_reset_then_sends(
    sink: RunningSink, sender: SendGridSender, sleeps: list[float]
) -> None:
    sink.store.script([429])
    [result] = sender.send_batch([make_mail()])

    assert result.status is SendStatus.sent
    assert len(sleeps) == 1 and 0 <= sleeps[0] <= 60  # until X-RateLimit-Reset, capped
    assert len(sink.store.messages) == 1


def test_sendgrid_persistent_503_fails_after_retries(
    sink: RunningSink, sender: SendGridSender, sleeps: list[float]
) -> None:
    sink.store.script([503] * 10)
    before = sink.store.requests
    results = sender.send_batch([make_mail("a"), make_mail("b", subject="other")])

    assert [r.status for r in results] == [SendStatus.failed, SendStatus.failed]
    assert "HTTP 503" in results[0].error
    assert sink.store.requests - before == 8  # 1 + 3 retries per request
    assert len(sleeps) == 6 and sink.store.messages == []


def test_sendgrid_payload_too_large_is_rejected(sink: RunningSink, sender: SendGridSender) -> None:
    sink.store.script([413])
    [result] = sender.send_batch([make_mail()])
    assert result.status is SendStatus.rejected and "HTTP 413" in result.error


def test_sendgrid_connection_refused_fails_after_retries(sleeps: list[float]) -> None:
    with socket.socket() as probe:  # a port with nobody listening
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with SendGridSender(
        API_KEY, f"http://127.0.0.1:{port}", retries=2, backoff_base_s=0.01, sleep=sleeps.append
    ) as sender:
        [result] = sender.send_batch([make_mail()])
    assert result.status is SendStatus.failed and "ConnectError" in result.error
    assert len(sleeps) == 2


# --- SendGrid with a scripted transport (exact timing, timeouts, key hygiene) -----------------


def scripted_client(responses: list[httpx.Response | Exception], seen: list[httpx.Request]):
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        item = responses.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    return httpx.Client(transport=httpx.MockTransport(handler))


def test_rate_limit_wait_uses_reset_header_and_is_capped() -> None:
    now = 1_700_000_000.0
    sleeps: list[float] = []
    responses: list[httpx.Response | Exception] = [
        httpx.Response(429, headers={"X-RateLimit-Reset": str(int(now) + 3)}),
        httpx.Response(429, headers={"X-RateLimit-Reset": str(int(now) + 3600)}),
        httpx.Response(202, headers={"X-Message-Id": "abc"}),
    ]
    seen: list[httpx.Request] = []
    sender = SendGridSender(
        API_KEY, client=scripted_client(responses, seen), sleep=sleeps.append, clock=lambda: now
    )
    [result] = sender.send_batch([make_mail()])

    assert result.status is SendStatus.sent and result.provider_message_id == "abc"
    assert sleeps == [3.0, 60.0]
    assert seen[0].url == "https://api.sendgrid.com/v3/mail/send"
    assert seen[0].headers["Authorization"] == f"Bearer {API_KEY}"


@pytest.mark.parametrize(
    "error",
    [
        httpx.ConnectError("refused"),
        httpx.ConnectTimeout("slow"),
        httpx.PoolTimeout("busy"),
        httpx.WriteError("x"),
    ],
)
def test_errors_before_the_body_went_out_are_retried(error: Exception) -> None:
    """No connection, or the body not handed over: SendGrid cannot have accepted it: safe to retry."""
    responses: list[httpx.Response | Exception] = [error, httpx.Response(202, headers={"X-Message-Id": "m1"})]
    sleeps: list[float] = []
    sender = SendGridSender(API_KEY, client=scripted_client(responses, []), sleep=sleeps.append)
    [result] = sender.send_batch([make_mail()])
    assert result.status is SendStatus.sent and len(sleeps) == 1


@pytest.mark.parametrize(
    "error",
    [
        httpx.ReadTimeout("read timed out"),
        httpx.ReadError("reset"),
        httpx.RemoteProtocolError("Server disconnected without sending a response."),
    ],
)
def test_errors_after_the_body_went_out_leave_the_mail_in_doubt_never_retried(error: Exception) -> None:
    """The body may have reached SendGrid (no idempotency key): one request, outcome `in_doubt`."""
    responses: list[httpx.Response | Exception] = [error, httpx.Response(202, headers={"X-Message-Id": "m1"})]
    seen: list[httpx.Request] = []
    sleeps: list[float] = []
    reported: list[list] = []
    sender = SendGridSender(API_KEY, client=scripted_client(responses, seen), sleep=sleeps.append)
    [result] = sender.send_batch([make_mail()], on_results=reported.append)
    assert result.status is SendStatus.in_doubt and "in doubt" in result.error
    assert len(seen) == 1 and sleeps == [] and reported == [[result]]


def test_api_key_never_appears_in_logs_or_errors(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    responses: list[httpx.Response | Exception] = [
        httpx.Response(503, json={"errors": [{"message": "down", "field": None}]}),
        httpx.Response(400, json={"errors": [{"message": "bad", "field": "subject"}]}),
    ]
    sender = SendGridSender(API_KEY, client=scripted_client(responses, []), sleep=lambda s: None)
    [result] = sender.send_batch([make_mail()])

    assert result.error == "request refused: HTTP 400: bad (field: subject)"
    assert "HTTP 503: down" in caplog.text
    assert API_KEY not in caplog.text and API_KEY not in repr(sender)


def test_injected_client_is_not_closed_by_the_sender() -> None:
    client = httpx.Client()
    with SendGridSender(API_KEY, client=client):
        pass
    assert not client.is_closed
    client.close()


def test_sendgrid_sender_refuses_bad_configuration() -> None:
    with pytest.raises(MailerConfigurationError):
        SendGridSender("  ")
    with pytest.raises(MailerConfigurationError):
        SendGridSender(API_KEY, host="api.sendgrid.com")


# --- factory -----------------------------------------------------------------------------------


def settings(**values) -> Settings:
    return Settings(_env_file=None, **values)


def test_factory_builds_each_provider(tmp_path: Path) -> None:
    outbox = make_sender(settings(mail_provider="outbox", outbox_dir=tmp_path / "out"))
    assert isinstance(outbox, FileOutboxSender) and outbox.folder == tmp_path / "out"
    assert isinstance(make_sender(settings(mail_provider="memory")), InMemorySender)
    sg = make_sender(
        settings(
            **production_values(),
            mail_provider="sendgrid",
            sendgrid_api_key=API_KEY,
            sendgrid_host="http://127.0.0.1:9",
            sendgrid_timeout_s=7,
            sendgrid_retries=2,
        )
    )
    assert isinstance(sg, SendGridSender)
    assert (sg.url, sg.timeout_s, sg.retries) == ("http://127.0.0.1:9/v3/mail/send", 7, 2)
    sg.close()


def test_factory_requires_a_sendgrid_key() -> None:
    with pytest.raises(MailerConfigurationError, match="SENDGRID_API_KEY"):
        make_sender(settings(**production_values(), mail_provider="sendgrid", sendgrid_api_key=None))
