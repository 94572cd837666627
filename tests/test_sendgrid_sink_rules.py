"""The local SendGrid server is as strict as SendGrid: one test per documented `/v3/mail/send` rule
(`shopmail/devtools/sink_rules.py`), the 415 for non-UTF-8 bodies, and the sink's own guards: the key
on `/sink/*` and the Host check against DNS rebinding."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from shopmail.devtools.sendgrid_sink import (
    PAGE_COOKIE,
    HostGuard,
    RunningSink,
    SinkStore,
    allowed_host_names,
    create_app,
    running_sink,
    sink_banner,
)
from shopmail.devtools.sink_rules import json_size_over, validate_mail_send
from shopmail.mailer.base import OutgoingMail
from shopmail.mailer.sendgrid_api import merged_payload

KEY = "SG.rules-test"
AUTH = {"Authorization": f"Bearer {KEY}"}
Payload = dict[str, Any]


def valid_payload() -> Payload:
    return {
        "personalizations": [
            {
                "to": [{"email": "ivan@example.com", "name": "Иван Петров"}],
                "custom_args": {"shopmail_key": "k1"},
                "headers": {"List-Unsubscribe": "<https://shop.example/u>"},
            }
        ],
        "from": {"email": "shop@shop.example", "name": "Магазин"},
        "reply_to": {"email": "support@shop.example", "name": "Поддержка"},
        "subject": "Привет",
        "content": [
            {"type": "text/plain", "value": "Привет"},
            {"type": "text/html", "value": "<p>Привет</p>"},
        ],
        "categories": ["trigger", "wakeup"],
        "custom_args": {"campaign": "wakeup"},
    }


def mutate(change: Callable[[Payload], object]) -> Payload:
    payload = valid_payload()
    change(payload)
    return payload


def p0(payload: Payload) -> dict[str, Any]:
    return payload["personalizations"][0]


def recipients(n: int, prefix: str = "u") -> list[dict[str, str]]:
    return [{"email": f"{prefix}{i}@example.com"} for i in range(n)]


def setting(section: str, name: str, **values: Any) -> Callable[[Payload], object]:
    return lambda p: p.setdefault(section, {}).setdefault(name, {}).update(values)


B64 = base64.b64encode(b"%PDF-1.4").decode()
ATTACHMENT = {"content": B64, "filename": "invoice.pdf", "type": "application/pdf"}

# (rule id, change, field, fragment of SendGrid's message)
RULES: list[tuple[str, Callable[[Payload], object], str, str]] = [
    # personalizations and recipients
    (
        "at most 1000 personalizations",
        lambda p: p.update(personalizations=[{"to": [r]} for r in recipients(1001)]),
        "personalizations",
        "You have provided 1001 personalizations",
    ),
    (
        "at most 1000 recipients in one personalization",
        lambda p: p0(p).update(to=recipients(600), cc=recipients(401, "c")),
        "personalizations",
        "limit of 1000 total recipients (to + cc + bcc) per request",
    ),
    (
        "at most 1000 recipients per request",
        lambda p: p.update(
            personalizations=[{"to": [r]} for r in recipients(999)] + [{"to": recipients(2, "x")}]
        ),
        "personalizations",
        "limit of 1000 total recipients",
    ),
    (
        "personalization is an object",
        lambda p: p["personalizations"].append("x"),
        "personalizations.1",
        "object",
    ),
    (
        "to entries are objects",
        lambda p: p0(p).update(to=["ivan@example.com"]),
        "personalizations.0.to.0.email",
        "valid address",
    ),
    (
        "cc is an array",
        lambda p: p0(p).update(cc={"email": "a@example.com"}),
        "personalizations.0.cc",
        "Expected: array",
    ),
    (
        "bcc address valid",
        lambda p: p0(p).update(bcc=[{"email": "x@"}]),
        "personalizations.0.bcc.0.email",
        "valid address",
    ),
    (
        "to.name without comma",
        lambda p: p0(p)["to"][0].update(name="Петрова, Анна"),
        "personalizations.0.to.0.name",
        "The to.name field cannot contain ';' or ','",
    ),
    (
        "cc.name without semicolon",
        lambda p: p0(p).update(cc=[{"email": "cc@example.com", "name": "Анна; Петрова"}]),
        "personalizations.0.cc.0.name",
        "The cc.name field cannot contain ';' or ','",
    ),
    (
        "bcc.name without comma",
        lambda p: p0(p).update(bcc=[{"email": "bcc@example.com", "name": "A, B"}]),
        "personalizations.0.bcc.0.name",
        "The bcc.name field cannot contain",
    ),
    (
        "to.name is a string",
        lambda p: p0(p)["to"][0].update(name=7),
        "personalizations.0.to.0.name",
        "Expected: string, given: integer",
    ),
    (
        "from.name is a string",
        lambda p: p["from"].update(name=["Shop"]),
        "from.name",
        "Expected: string, given: array",
    ),
    (
        "reply_to.name is a string",
        lambda p: p["reply_to"].update(name=True),
        "reply_to.name",
        "given: boolean",
    ),
    (
        "to and bcc addresses differ",
        lambda p: p0(p).update(bcc=[{"email": "Ivan@Example.com"}]),
        "personalizations.0",
        "unique between to, cc, and bcc",
    ),
    (
        "cc and bcc addresses differ",
        lambda p: p0(p).update(cc=[{"email": "a@example.com"}], bcc=[{"email": "a@example.com"}]),
        "personalizations.0",
        "in the personalizations.0.bcc field",
    ),
    (
        "personalization from is valid",
        lambda p: p0(p).update({"from": {"email": "nope"}}),
        "personalizations.0.from.email",
        "valid address",
    ),
    (
        "dynamic_template_data is an object",
        lambda p: p0(p).update(dynamic_template_data="x"),
        "personalizations.0.dynamic_template_data",
        "Expected: object",
    ),
    # subject
    (
        "global subject not empty",
        lambda p: (p.update(subject=""), p0(p).update(subject="Личная")),
        "subject",
        "at least one character",
    ),
    ("global subject a string", lambda p: p.update(subject=5), "subject", "at least one character"),
    (
        "personalization subject not empty",
        lambda p: p0(p).update(subject=""),
        "personalizations.0.subject",
        "at least one character",
    ),
    (
        "subject needed without template unless every personalization has one",
        lambda p: (p.pop("subject"), p["personalizations"].append({"to": recipients(1), "subject": "x"})),
        "subject",
        "The subject is required",
    ),
    # from / reply_to
    ("from required", lambda p: p.pop("from"), "from.email", "from object must be provided"),
    ("from address valid", lambda p: p.update({"from": {"email": "shop@"}}), "from.email", "valid address"),
    (
        "reply_to address valid",
        lambda p: p.update(reply_to={"email": "x"}),
        "reply_to.email",
        "valid address",
    ),
    (
        "reply_to or reply_to_list, not both",
        lambda p: p.update(reply_to_list=[{"email": "a@example.com"}]),
        "reply_to_list",
        "either the reply_to property or reply_to_list property but not both",
    ),
    (
        "reply_to_list addresses unique",
        lambda p: (
            p.pop("reply_to"),
            p.update(reply_to_list=[{"email": "a@example.com"}, {"email": "A@example.com"}]),
        ),
        "reply_to_list",
        "unique",
    ),
    (
        "reply_to_list not empty",
        lambda p: (p.pop("reply_to"), p.update(reply_to_list=[])),
        "reply_to_list",
        "1 to 1000",
    ),
    (
        "reply_to_list addresses valid",
        lambda p: (p.pop("reply_to"), p.update(reply_to_list=[{"email": "bad"}])),
        "reply_to_list",
        "valid email",
    ),
    # content
    (
        "content required without template",
        lambda p: p.pop("content"),
        "content",
        "content parameter is required",
    ),
    (
        "content value not empty",
        lambda p: p["content"][0].update(value=""),
        "content.0.value",
        "at least one character",
    ),
    (
        "content type not empty",
        lambda p: p["content"][0].update(type=""),
        "content.0.type",
        "at least one character",
    ),
    (
        "content type without ';'",
        lambda p: p["content"][1].update(type="text/html; charset=utf-8"),
        "content.1.type",
        "Cannot contain ';', or CRLF characters.",
    ),
    (
        "content type without CRLF",
        lambda p: p["content"][0].update(type="text/plain\r\nX: y"),
        "content.0.type",
        "CRLF",
    ),
    ("text/plain before text/html", lambda p: p["content"].reverse(), "content", "in this order"),
    # custom_args
    (
        "custom_args not empty",
        lambda p: p.update(custom_args={}),
        "custom_args",
        "custom_args cannot be empty.",
    ),
    (
        "personalization custom_args not empty",
        lambda p: p0(p).update(custom_args={}),
        "personalizations.0.custom_args",
        "cannot be empty",
    ),
    (
        "custom_args values are strings",
        lambda p: p0(p)["custom_args"].update(n=1),
        "personalizations.0.custom_args.n",
        "Expected: string",
    ),
    (
        "custom_args at most 10,000 bytes, global + personalization",
        lambda p: (p["custom_args"].update(a="x" * 6000), p0(p)["custom_args"].update(b="я" * 2500)),
        "personalizations.0.custom_args",
        "may not exceed 10,000 bytes per personalization",
    ),
    (
        "global custom_args at most 10,000 bytes",
        lambda p: p["custom_args"].update(a="x" * 10_000),
        "custom_args",
        "may not exceed 10,000 bytes",
    ),
    # headers
    (
        "header keys without spaces",
        lambda p: p.update(headers={"X Campaign": "1"}),
        "headers",
        "non-ASCII characters and empty spaces",
    ),
    (
        "personalization header keys ASCII",
        lambda p: p0(p)["headers"].update({"X-Кампания": "1"}),
        "personalizations.0.headers",
        "non-ASCII characters or empty spaces",
    ),
    (
        "reserved headers",
        lambda p: p.update(headers={"DKIM-Signature": "x"}),
        "headers",
        "Header can not be one of the reserved keys.",
    ),
    (
        "reserved personalization headers",
        lambda p: p0(p)["headers"].update({"x-sg-id": "1"}),
        "personalizations.0.headers",
        "Header cannot be one of the reserved keys.",
    ),
    (
        "header values are strings",
        lambda p: p.update(headers={"X-A": 1}),
        "headers.X-A",
        "The header values must be strings.",
    ),
    (
        "personalization header values are strings",
        lambda p: p0(p)["headers"].update({"X-A": None}),
        "personalizations.0.headers.X-A",
        "All values of the headers object must be strings.",
    ),
    (
        "header keys unique (any case)",
        lambda p: p0(p)["headers"].update({"list-unsubscribe": "<https://x.example>"}),
        "personalizations.0.headers",
        "cannot contain duplicate keys",
    ),
    # substitutions
    (
        "substitution values are strings",
        lambda p: p0(p).update(substitutions={"-name-": 1}),
        "personalizations.0.substitutions",
        "where the values are all strings",
    ),
    (
        "substitutions an object",
        lambda p: p0(p).update(substitutions=["x"]),
        "personalizations.0.substitutions",
        "key/value pairs",
    ),
    (
        "at most 10,000 substitutions per request",
        lambda p: p.update(
            personalizations=[
                {"to": [r], "substitutions": {f"-{k}-": "" for k in range(11)}} for r in recipients(1000)
            ]
        ),
        f"personalizations.{10_000 // 11}.substitutions",  # the one whose keys pass 10,000
        "limited to 10,000 substitutions",
    ),
    (
        "at most 150 substitutions per personalization",
        lambda p: p0(p).update(substitutions={f"-{i}-": "" for i in range(151)}),
        "personalizations.0.substitutions",
        "limited to 150 items per personalization block",
    ),
    (
        "substitutions (keys + values) at most 10,000 bytes",
        lambda p: p0(p).update(substitutions={"-a-": "x" * 9998}),
        "personalizations.0.substitutions",
        "may not exceed 10,000 bytes per personalization object",
    ),
    (
        "no substitutions with a dynamic template",
        lambda p: (p.update(template_id="d-123"), p0(p).update(substitutions={"-a-": "A"})),
        "personalizations.0.substitutions",
        "Substitutions may not be used with dynamic templating",
    ),
    # categories
    (
        "at most 10 categories",
        lambda p: p.update(categories=[f"c{i}" for i in range(11)]),
        "categories",
        "You provided 11 categories.",
    ),
    (
        "categories are strings",
        lambda p: p.update(categories="wakeup"),
        "categories",
        "Categories must be an array of strings.",
    ),
    (
        "categories ASCII",
        lambda p: p.update(categories=["скидки"]),
        "categories",
        "Categories can not contain non-ASCII characters.",
    ),
    (
        "categories at most 255 characters",
        lambda p: p.update(categories=["x" * 256]),
        "categories",
        "must not be longer than 255",
    ),
    (
        "categories unique",
        lambda p: p.update(categories=["a", "b", "a"]),
        "categories",
        "included a more than once",
    ),
    ("categories not empty", lambda p: p.update(categories=[""]), "categories", "non-empty strings"),
    # send_at, batch_id, template_id, ip_pool_name, sections
    ("send_at an integer", lambda p: p.update(send_at="1800000000"), "send_at", "Expected: integer"),
    (
        "send_at at most 72 h ahead",
        lambda p: p0(p).update(send_at=int(time.time()) + 73 * 3600),
        "personalizations.0.send_at",
        "72 hours",
    ),
    ("batch_id a string", lambda p: p.update(batch_id=123), "batch_id", "The batch_id must be a string."),
    (
        "template_id a string",
        lambda p: p.update(template_id=42),
        "template_id",
        "The template ID must be a string, you provided 42.",
    ),
    ("ip_pool_name a string", lambda p: p.update(ip_pool_name=1), "ip_pool_name", "IP pool must be a string"),
    ("ip_pool_name 2 to 64 characters", lambda p: p.update(ip_pool_name="x"), "ip_pool_name", "2 to 64"),
    (
        "section values are strings",
        lambda p: p.update(sections={":s": 1}),
        "sections",
        "The section values must be strings.",
    ),
    # asm
    ("asm an object", lambda p: p.update(asm=5), "asm", "Expected: object"),
    (
        "asm.group_id an integer",
        lambda p: p.update(asm={"group_id": "12"}),
        "asm.group_id",
        "The ASM group ID must be an integer.",
    ),
    (
        "asm.group_id required",
        lambda p: p.update(asm={"groups_to_display": [1]}),
        "asm.group_id",
        "must be an integer",
    ),
    (
        "asm.groups_to_display integers",
        lambda p: p.update(asm={"group_id": 1, "groups_to_display": [1, "2"]}),
        "asm.groups_to_display",
        "must be an array of integers",
    ),
    (
        "asm.groups_to_display at most 25",
        lambda p: p.update(asm={"group_id": 1, "groups_to_display": list(range(26))}),
        "asm.groups_to_display",
        "limit of 25 unsubscribe groups",
    ),
    # tracking_settings
    (
        "tracking_settings an object",
        lambda p: p.update(tracking_settings=[]),
        "tracking_settings",
        "Expected: object",
    ),
    (
        "tracking setting an object",
        lambda p: p.update(tracking_settings={"click_tracking": True}),
        "tracking_settings.click_tracking",
        "Expected: object",
    ),
    (
        "click_tracking.enable boolean",
        setting("tracking_settings", "click_tracking", enable="false"),
        "tracking_settings.click_tracking.enable",
        "The click tracking enable param should be a boolean value.",
    ),
    (
        "click_tracking.enable_text boolean",
        setting("tracking_settings", "click_tracking", enable=False, enable_text=0),
        "tracking_settings.click_tracking.enable_text",
        "enable text must be a boolean",
    ),
    (
        "open_tracking.enable boolean",
        setting("tracking_settings", "open_tracking", enable=1),
        "tracking_settings.open_tracking.enable",
        "open tracking enable param",
    ),
    (
        "open_tracking.substitution_tag string",
        setting("tracking_settings", "open_tracking", substitution_tag=1),
        "tracking_settings.open_tracking.substitution_tag",
        "substitution tag must be a string",
    ),
    (
        "subscription_tracking.html string",
        setting("tracking_settings", "subscription_tracking", html=1),
        "tracking_settings.subscription_tracking.html",
        "text/html messages must be a string",
    ),
    (
        "ganalytics.utm_source string",
        setting("tracking_settings", "ganalytics", utm_source=1),
        "tracking_settings.ganalytics.utm_source",
        "The Google Analytics utm_source must be a string value.",
    ),
    # mail_settings
    ("mail_settings an object", lambda p: p.update(mail_settings="x"), "mail_settings", "Expected: object"),
    (
        "sandbox_mode.enable boolean",
        setting("mail_settings", "sandbox_mode", enable="true"),
        "mail_settings.sandbox_mode.enable",
        "sandbox mode enable param should be a boolean",
    ),
    (
        "footer.text string",
        setting("mail_settings", "footer", enable=True, text=1),
        "mail_settings.footer.text",
        "text/plain version of your footer should be a string",
    ),
    (
        "bypass_list_management alone",
        lambda p: (
            setting("mail_settings", "bypass_list_management", enable=True)(p),
            setting("mail_settings", "bypass_spam_management", enable=True)(p),
        ),
        "mail_settings.bypass_list_management",
        "cannot be combined",
    ),
    (
        "bcc setting needs an address",
        setting("mail_settings", "bcc", enable=True),
        "mail_settings.bcc.email",
        "You must include a recipient object",
    ),
    (
        "spam_check needs a url",
        setting("mail_settings", "spam_check", enable=True, threshold=5),
        "mail_settings.spam_check.post_to_url",
        "url to post to",
    ),
    (
        "spam_check url http(s)",
        setting("mail_settings", "spam_check", enable=True, threshold=5, post_to_url="ftp://x"),
        "mail_settings.spam_check.post_to_url",
        "must start with `http://` or `https://`",
    ),
    (
        "spam_check threshold 1 to 10",
        setting("mail_settings", "spam_check", enable=True, threshold=11, post_to_url="https://x.example"),
        "mail_settings.spam_check.threshold",
        "between 1 and 10",
    ),
    # attachments
    (
        "attachment content base64",
        lambda p: p.update(attachments=[{**ATTACHMENT, "content": "not base64!"}]),
        "attachments.0.content",
        "must be base64 encoded",
    ),
    (
        "attachment filename required",
        lambda p: p.update(attachments=[{"content": B64}]),
        "attachments.0.filename",
        "filename is required.",
    ),
    (
        "attachment type without ';'",
        lambda p: p.update(attachments=[{**ATTACHMENT, "type": "text/plain; charset=utf-8"}]),
        "attachments.0.type",
        "cannot contain ';'",
    ),
    (
        "attachment disposition",
        lambda p: p.update(attachments=[{**ATTACHMENT, "disposition": "embedded"}]),
        "attachments.0.disposition",
        'either "inline" or "attachment"',
    ),
    (
        "attachment content_id without CRLF",
        lambda p: p.update(attachments=[{**ATTACHMENT, "content_id": "a\r\nb"}]),
        "attachments.0.content_id",
        "cannot contain CRLF",
    ),
]


@pytest.mark.parametrize(("change", "field", "fragment"), [r[1:] for r in RULES], ids=[r[0] for r in RULES])
def test_each_documented_rule_refuses_with_sendgrid_message(
    change: Callable[[Payload], object], field: str, fragment: str
) -> None:
    errors = validate_mail_send(mutate(change))
    assert all(set(e) == {"message", "field", "help"} for e in errors)
    assert any(e["field"] == field and fragment in e["message"] for e in errors), errors


@pytest.mark.parametrize(
    "change",
    [
        lambda p: None,
        lambda p: p0(p)["to"][0].update(name="Петрова Анна (VIP) «Ёлка»"),  # only , and ; are refused
        lambda p: p["from"].update(name="Shop, Inc."),  # from.name may hold a comma
        lambda p: p.update(personalizations=[{"to": [r]} for r in recipients(1000)]),
        lambda p: p0(p).update(to=recipients(500), cc=recipients(250, "c"), bcc=recipients(250, "b")),
        lambda p: (p.pop("reply_to"), p.update(reply_to_list=[{"email": "a@example.com", "name": "A"}])),
        lambda p: (p.pop("subject"), p.pop("content"), p.update(template_id="d-123")),
        lambda p: p.update(categories=[f"c{i}" for i in range(10)] + []),
        lambda p: p.update(categories=["x" * 255]),
        lambda p: (p["custom_args"].update(a="x" * 4900), p0(p)["custom_args"].update(b="x" * 4900)),
        lambda p: p0(p).update(substitutions={"-name-": "Иван", "-coupon-": "SM-1"}),
        lambda p: p.update(headers={"X-Campaign": "wakeup"}, batch_id="b1", ip_pool_name="main"),
        lambda p: p.update(asm={"group_id": 12, "groups_to_display": list(range(25))}),
        lambda p: p.update(
            tracking_settings={
                "click_tracking": {"enable": False, "enable_text": False},
                "open_tracking": {"enable": True, "substitution_tag": "%open%"},
                "ganalytics": {"enable": True, "utm_source": "mail"},
            },
            mail_settings={"sandbox_mode": {"enable": False}, "footer": {"enable": True, "text": "f"}},
        ),
        lambda p: p.update(attachments=[{**ATTACHMENT, "disposition": "inline", "content_id": "logo"}]),
        lambda p: p["content"].insert(1, {"type": "text/x-amp-html", "value": "<html amp4email></html>"}),
    ],
)
def test_documented_valid_forms_pass(change: Callable[[Payload], object]) -> None:
    assert validate_mail_send(mutate(change)) == []


def test_size_limits_are_measured_as_compact_utf8_json() -> None:
    assert not json_size_over({"a": "x" * 9992}, 10_000)  # {"a":"x..."} = 8 + 9992 bytes
    assert json_size_over({"a": "x" * 9993}, 10_000)
    assert json_size_over({"a": "я" * 4997}, 10_000)  # 2 bytes each
    assert not json_size_over({"a": "я" * 4996}, 10_000)


def test_our_largest_request_validates_fast() -> None:
    """1,000 personalizations as `sendgrid_api` builds them: valid, and cheap to check."""
    mails = [
        OutgoingMail(
            message_key=f"k{i}",
            to_email=f"user{i}@example.com",
            to_name="Иван Петров",
            subject="Тема",
            html="<p>x</p>" * 200,
            text="x" * 2000,
            from_email="shop@shop.example",
            from_name="Магазин",
            headers={"List-Unsubscribe": "<https://shop.example/u?token=t>"},
            custom_args={"campaign": "wakeup", "occasion": f"wakeup14:order:{i}", "customer_id": str(i)},
            categories=("trigger", "wakeup"),
        )
        for i in range(1000)
    ]
    payload = merged_payload(mails)
    assert validate_mail_send(payload) == []
    started = time.perf_counter()
    for _ in range(5):
        validate_mail_send(payload)
    assert (time.perf_counter() - started) / 5 < 0.1  # ~5 ms here; 7,500 mails/s leaves 133 ms


# --- over HTTP: encoding, the key on /sink/*, the Host check ------------------------------------


@pytest.fixture(scope="module")
def sink() -> Iterator[RunningSink]:
    with running_sink(SinkStore(api_key=KEY)) as running:
        yield running


@pytest.fixture
def client(sink: RunningSink) -> Iterator[httpx.Client]:
    sink.store.reset()
    with httpx.Client(base_url=sink.url, timeout=10) as http:
        yield http


def test_body_that_is_not_utf8_is_415(client: httpx.Client, sink: RunningSink) -> None:
    body = json.dumps(valid_payload(), ensure_ascii=False).encode("cp1251")
    response = client.post("/v3/mail/send", content=body, headers=AUTH)
    assert response.status_code == 415
    assert response.json()["errors"][0]["message"] == "Invalid UTF8 in request"
    assert sink.store.messages == []


def test_refused_payload_over_http_carries_every_error(client: httpx.Client, sink: RunningSink) -> None:
    payload = mutate(lambda p: (p0(p)["to"][0].update(name="Петрова, Анна"), p.update(categories=["скидки"])))
    response = client.post("/v3/mail/send", json=payload, headers=AUTH)
    assert response.status_code == 400
    fields = {e["field"] for e in response.json()["errors"]}
    assert fields == {"personalizations.0.to.0.name", "categories"}
    assert sink.store.messages == []


SINK_ENDPOINTS = [
    ("GET", "/sink/messages"),
    ("DELETE", "/sink/messages"),
    ("GET", "/sink/faults"),
    ("PUT", "/sink/faults"),
    ("PATCH", "/sink/faults"),
    ("GET", "/sink/stats"),
]


@pytest.mark.parametrize(("method", "path"), SINK_ENDPOINTS)
@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer SG.other"}, {"Authorization": f"Basic {KEY}"}]
)
def test_sink_endpoints_need_the_key(
    client: httpx.Client, method: str, path: str, headers: dict[str, str]
) -> None:
    response = client.request(method, path, headers=headers, json={} if method in ("PUT", "PATCH") else None)
    assert response.status_code == 401
    assert response.json() == {"errors": [{"message": "authorization required", "field": None, "help": None}]}


@pytest.mark.parametrize(("method", "path"), SINK_ENDPOINTS)
def test_sink_endpoints_answer_the_key(client: httpx.Client, method: str, path: str) -> None:
    response = client.request(method, path, headers=AUTH, json={} if method in ("PUT", "PATCH") else None)
    assert response.status_code == 200


def test_pages_ask_for_the_key_and_open_with_a_cookie(client: httpx.Client, sink: RunningSink) -> None:
    message_id = client.post("/v3/mail/send", json=valid_payload(), headers=AUTH).headers["X-Message-Id"]
    for path in ("/sink", f"/sink/messages/{message_id}"):
        page = client.get(path)
        assert page.status_code == 401 and 'name="key"' in page.text and "ivan@example.com" not in page.text
        assert "form-action 'self'" in page.headers["content-security-policy"]
    wrong = client.get("/sink", params={"key": "SG.guess"})
    assert (
        wrong.status_code == 401 and "not this sink's key" in wrong.text and PAGE_COOKIE not in wrong.cookies
    )

    opened = client.get("/sink", params={"key": KEY})  # the link printed at start / the form
    assert opened.status_code == 303 and opened.headers["location"] == "/sink"
    cookie = opened.headers["set-cookie"]
    assert (
        "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/sink" in cookie and KEY not in cookie
    )
    assert PAGE_COOKIE in client.cookies  # the browser keeps it
    assert "ivan@example.com" in client.get("/sink").text
    assert client.get(f"/sink/messages/{message_id}").status_code == 200
    assert client.get("/sink/messages").status_code == 200 and client.get("/sink/stats").status_code == 200
    # the cookie opens reads only: changes need the Bearer key (no cross-site form can make them)
    assert client.delete("/sink/messages").status_code == 401
    assert client.put("/sink/faults", json={"rate_503": 1.0}).status_code == 401
    assert len(sink.store.messages) == 1
    client.cookies.set(PAGE_COOKIE, "forged", path="/sink")
    assert client.get("/sink").status_code == 401


def test_without_an_api_key_the_pages_need_the_random_key_printed_at_start() -> None:
    with running_sink() as open_sink:
        store = open_sink.store
        any_key = {"Authorization": "Bearer SG.whatever"}
        assert (
            httpx.post(f"{open_sink.url}/v3/mail/send", json=valid_payload(), headers=any_key).status_code
            == 202
        )
        assert httpx.get(f"{open_sink.url}/sink/messages", headers=any_key).status_code == 401
        listed = httpx.get(f"{open_sink.url}/sink/messages", headers=open_sink.auth)
        assert listed.status_code == 200 and len(listed.json()) == 1
        assert store.access_key == store.page_key and len(store.page_key) > 20
        assert SinkStore().page_key != store.page_key  # random per sink
    banner = sink_banner("127.0.0.1", 8025, store)
    assert f"http://127.0.0.1:8025/sink?key={store.page_key}" in banner


def test_banner_never_prints_a_configured_api_key() -> None:
    banner = sink_banner("0.0.0.0", 8025, SinkStore(api_key="SG.secret"))
    assert "SG.secret" not in banner and "http://127.0.0.1:8025/sink" in banner


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        ("127.0.0.1:{port}", True),
        ("localhost:{port}", True),
        ("LOCALHOST:{port}", True),
        ("[::1]:{port}", True),
        ("evil.example:{port}", False),  # DNS rebinding: the attacker's name resolved to 127.0.0.1
        ("127.0.0.1.nip.io:{port}", False),
        ("127.0.0.1:1", False),  # another port
        ("127.0.0.1", False),  # port 80 implied
        ("127.0.0.1:x", False),
        ("", False),
    ],
)
def test_host_header_must_name_the_sink(
    client: httpx.Client, sink: RunningSink, host: str, allowed: bool
) -> None:
    port = int(sink.url.rsplit(":", 1)[1])
    headers = {**AUTH, "Host": host.format(port=port)}
    for request in (
        lambda: client.get("/sink/messages", headers=headers),
        lambda: client.post("/v3/mail/send", json=valid_payload(), headers=headers),
        lambda: client.get("/sink", headers=headers),
    ):
        response = request()
        if allowed:
            assert response.status_code in (200, 202)
        else:
            assert response.status_code == 421
            assert "Misdirected Request" in response.json()["errors"][0]["message"]
    assert len(sink.store.messages) == (1 if allowed else 0)


def test_host_guard_names_and_extra_hosts() -> None:
    guard = HostGuard(create_app(), allowed_host_names("0.0.0.0", ["sink.internal"]), 8025)
    assert guard.allows("sink.internal:8025") and guard.allows("localhost:8025")
    assert not guard.allows("sink.internal:8026") and not guard.allows("other:8025")
    assert HostGuard(create_app(), allowed_host_names("::1"), 80).allows("[::1]")
    assert HostGuard(create_app(), allowed_host_names(), None).allows("localhost:1234")  # port unknown
    with running_sink(SinkStore(api_key=KEY), allow_hosts=["sink.internal"]) as named:
        port = named.url.rsplit(":", 1)[1]
        stats = httpx.get(f"{named.url}/sink/stats", headers={**AUTH, "Host": f"sink.internal:{port}"})
        other = httpx.get(f"{named.url}/sink/stats", headers={**AUTH, "Host": f"other.internal:{port}"})
    assert stats.status_code == 200 and other.status_code == 421
