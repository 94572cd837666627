"""Render once, personalize per recipient, in the local SendGrid sink: SendGrid's documented
`substitutions` rules, the mail each recipient gets (substitutions applied, one pass), and the cost of
a 1,000-personalization request (one shared body stored per request, mails made when read).

`python -m tests.test_sink_substitutions` prints the measurements (validation, storing, HTTP round
trip, mails/s from 8 client threads)."""

from __future__ import annotations

import json
import statistics
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from shopmail.devtools.sendgrid_sink import RunningSink, SinkStore, running_sink
from shopmail.devtools.sink_faults import Faults
from shopmail.devtools.sink_page import substitute
from shopmail.devtools.sink_rules import (
    MAX_SUBSTITUTION_BYTES,
    MAX_SUBSTITUTIONS,
    MAX_SUBSTITUTIONS_PER_PERSONALIZATION,
    MSG_SUBSTITUTIONS,
    MSG_SUBSTITUTIONS_DYNAMIC,
    MSG_SUBSTITUTIONS_ITEMS,
    MSG_SUBSTITUTIONS_SIZE,
    MSG_TOO_MANY_SUBSTITUTIONS,
    validate_mail_send,
)

KEY = "SG.substitutions-test"
AUTH = {"Authorization": f"Bearer {KEY}"}
Payload = dict[str, Any]
NAME, COUPON, LINK = "-smv.customer.first_name.h-", "-smv.coupon.h-", "-smv.unsubscribe_url.h-"
HTML_KB = 20


def name_of(i: int) -> str:
    """A name no other recipient's name contains."""
    return f"Имя{i:05d}"


def mass_payload(n: int = 1000, html_kb: int = HTML_KB, keys_per_mail: int = 4) -> Payload:
    """A mass mail as Shopmail sends it: one shared ~20 KB body with tags, `n` personalizations
    each with its own values."""
    paragraph = f"<p>Здравствуйте, {NAME}! Ваш купон: {COUPON}. <a href='{LINK}'>Отписаться</a></p>\n"
    html = (paragraph * (html_kb * 1024 // len(paragraph.encode()) + 1))[: html_kb * 1024]
    extra = [f"-smv.extra{k}.h-" for k in range(max(keys_per_mail - 3, 0))]
    return {
        "personalizations": [
            {
                "to": [{"email": f"user{i}@example.com"}],
                "custom_args": {"shopmail_key": f"k{i}"},
                "headers": {"List-Unsubscribe": f"<https://shop.example/u/{i}>"},
                "substitutions": {
                    NAME: name_of(i),
                    COUPON: f"SM-{i:05d}",
                    LINK: f"https://shop.example/u/{i}",
                    **{key: f"x{i}" for key in extra},
                },
            }
            for i in range(n)
        ],
        "from": {"email": "shop@shop.example", "name": "Магазин"},
        "subject": f"{NAME}, распродажа",
        "content": [
            {"type": "text/plain", "value": f"Здравствуйте, {NAME}! Купон {COUPON}. Отписаться: {LINK}"},
            {"type": "text/html", "value": html},
        ],
        "categories": ["mass"],
        "custom_args": {"campaign": "sale"},
    }


def small_payload(**substitutions: str) -> Payload:
    payload = mass_payload(1, html_kb=1)
    payload["personalizations"][0]["substitutions"] = substitutions
    return payload


def errors_at(payload: Payload, field: str) -> list[str]:
    return [e["message"] for e in validate_mail_send(payload) if e["field"] == field]


# --- SendGrid's documented rules -------------------------------------------------------------


def test_substitution_values_must_be_strings() -> None:
    payload = mass_payload(2, html_kb=1)
    payload["personalizations"][1]["substitutions"][COUPON] = 10
    assert errors_at(payload, "personalizations.1.substitutions") == [MSG_SUBSTITUTIONS]


def test_substitutions_keys_and_values_at_most_10000_utf8_bytes_per_personalization() -> None:
    key, value = "-k-", "я" * 4998 + "x"  # "я": 2 bytes in UTF-8
    assert len(key.encode()) + len(value.encode()) == MAX_SUBSTITUTION_BYTES
    assert validate_mail_send(small_payload(**{key: value})) == []
    over = small_payload(**{key: value + "x"})
    assert errors_at(over, "personalizations.0.substitutions") == [MSG_SUBSTITUTIONS_SIZE]


def test_at_most_150_substitutions_per_personalization() -> None:
    limit = MAX_SUBSTITUTIONS_PER_PERSONALIZATION
    assert validate_mail_send(small_payload(**{f"-{i}-": "v" for i in range(limit)})) == []
    over = small_payload(**{f"-{i}-": "v" for i in range(limit + 1)})
    assert errors_at(over, "personalizations.0.substitutions") == [MSG_SUBSTITUTIONS_ITEMS]


def test_at_most_10000_substitutions_per_request() -> None:
    per_mail = MAX_SUBSTITUTIONS // 1000
    assert validate_mail_send(mass_payload(1000, html_kb=1, keys_per_mail=per_mail)) == []
    errors = validate_mail_send(mass_payload(1000, html_kb=1, keys_per_mail=per_mail + 1))
    passing = MAX_SUBSTITUTIONS // (per_mail + 1)  # the personalization whose keys pass 10,000
    assert errors == [
        {
            "message": MSG_TOO_MANY_SUBSTITUTIONS,
            "field": f"personalizations.{passing}.substitutions",
            "help": None,
        }
    ]


def test_substitutions_with_a_dynamic_template_are_refused() -> None:
    payload = mass_payload(2, html_kb=1)
    payload["template_id"] = "d-0123456789abcdef0123456789abcdef"
    fields = [e["field"] for e in validate_mail_send(payload) if e["message"] == MSG_SUBSTITUTIONS_DYNAMIC]
    assert fields == ["personalizations.0.substitutions", "personalizations.1.substitutions"]
    payload["template_id"] = "13b8f94f-bcae-4ec6-b752-70d6cb59f932"  # a legacy template: allowed
    assert validate_mail_send(payload) == []


# --- applying them: single pass ----------------------------------------------------------------


def test_a_key_inside_another_keys_value_is_not_substituted_again() -> None:
    subs = {"-a-": "-b-", "-b-": "B"}
    assert substitute("-a- and -b-", subs) == "-b- and B"


def test_the_longest_key_wins_where_keys_overlap() -> None:
    subs = {"-name-": "Иван", "-name-full-": "Иван Петров"}
    assert substitute("-name-full- / -name-", subs) == "Иван Петров / Иван"


def test_regex_characters_in_keys_are_literal() -> None:
    assert substitute("{{.*}} and {{x}}", {"{{.*}}": "$1\\g<0>"}) == "$1\\g<0> and {{x}}"


# --- over HTTP: every recipient gets its own mail ------------------------------------------------


@pytest.fixture(scope="module")
def sink() -> Iterator[RunningSink]:
    with running_sink(SinkStore(api_key=KEY)) as running:
        yield running


@pytest.fixture
def client(sink: RunningSink) -> Iterator[httpx.Client]:
    sink.store.reset()
    sink.store.set_faults(Faults())
    with httpx.Client(base_url=sink.url, timeout=30) as http:
        yield http


def send(client: httpx.Client, payload: Payload) -> str:
    response = client.post("/v3/mail/send", json=payload, headers=AUTH)
    assert response.status_code == 202, response.text
    return response.headers["X-Message-Id"]


def all_mails(client: httpx.Client, **params: Any) -> list[dict[str, Any]]:
    mails: list[dict[str, Any]] = []
    while True:
        page = client.get("/sink/mails", params={**params, "offset": len(mails)}, headers=AUTH).json()
        mails += page["mails"]
        if not page["mails"] or len(mails) >= page["total"]:
            return mails


def test_each_of_1000_recipients_gets_only_its_own_values(client: httpx.Client, sink: RunningSink) -> None:
    payload = mass_payload(1000)
    message_id = send(client, payload)
    mails = all_mails(client, message_id=message_id, limit=300)

    assert [m["to"][0]["email"] for m in mails] == [f"user{i}@example.com" for i in range(1000)]
    names = [name_of(i) for i in range(1000)]
    for i, mail in enumerate(mails):
        text, html = (block["value"] for block in mail["content"])
        assert mail["subject"] == payload["subject"].replace(NAME, names[i])
        assert names[i] in text and f"SM-{i:05d}" in html and f"https://shop.example/u/{i}'" in html
        everything = mail["subject"] + text + html
        assert not any(tag in everything for tag in (NAME, COUPON, LINK))
        assert sum(name in everything for name in names) == 1  # its own, nobody else's
    [stored] = sink.store.messages  # one request, one shared body, kept as sent
    assert stored.payload["content"] == payload["content"]


def test_a_recipient_without_substitutions_gets_the_content_as_sent(client: httpx.Client) -> None:
    payload = mass_payload(2, html_kb=1)
    del payload["personalizations"][1]["substitutions"]
    send(client, payload)
    plain = all_mails(client)[1]
    assert plain["subject"] == payload["subject"] and plain["content"] == payload["content"]


def test_reply_to_is_substituted_headers_and_custom_args_are_not(client: httpx.Client) -> None:
    payload = small_payload(**{NAME: "Иван"})
    payload["reply_to"] = {"email": "support@shop.example", "name": f"Для {NAME}"}
    payload["personalizations"][0]["headers"] = {"X-Greeting": NAME}
    payload["personalizations"][0]["custom_args"] = {"shopmail_key": NAME}
    send(client, payload)
    [mail] = all_mails(client)
    assert mail["reply_to"]["name"] == "Для Иван"
    assert mail["headers"]["X-Greeting"] == NAME and mail["custom_args"]["shopmail_key"] == NAME


def test_activity_api_and_pages_show_the_recipients_text(client: httpx.Client) -> None:
    message_id = send(client, mass_payload(3, html_kb=1))
    found = client.get("/v3/messages", params={"query": "", "limit": 10}, headers=AUTH).json()["messages"]
    assert [m["subject"] for m in found] == [f"{name_of(i)}, распродажа" for i in range(3)]
    by_subject = f'subject="{name_of(2)}, распродажа"'
    found = client.get("/v3/messages", params={"query": by_subject}, headers=AUTH).json()["messages"]
    assert [m["msg_id"] for m in found] == [f"{message_id}.2"]

    assert name_of(0) in client.get("/sink", headers=AUTH).text
    page = client.get(f"/sink/messages/{message_id}.2", headers=AUTH)
    body = page.text.split("<h2>text/plain</h2>")[1]
    assert page.status_code == 200 and name_of(2) in body and name_of(1) not in body and NAME not in body
    assert f'href="/sink/messages/{message_id}.1"' in page.text
    assert client.get(f"/sink/messages/{message_id}.3", headers=AUTH).status_code == 404


def test_mails_endpoint_pages_and_checks_its_arguments(client: httpx.Client) -> None:
    send(client, mass_payload(3, html_kb=1))
    send(client, mass_payload(2, html_kb=1))
    page = client.get("/sink/mails", params={"offset": 2, "limit": 2}, headers=AUTH).json()
    assert page["total"] == 5 and [m["msg_id"].split(".")[1] for m in page["mails"]] == ["2", "0"]
    for params in ({"limit": 0}, {"limit": 1001}, {"offset": -1}):
        assert client.get("/sink/mails", params=params, headers=AUTH).status_code == 400
    assert client.get("/sink/mails").status_code == 401


# --- cost ------------------------------------------------------------------------------------------


def test_slow_ms_is_per_request_not_per_personalization(client: httpx.Client, sink: RunningSink) -> None:
    sink.store.set_faults(Faults(slow_ms=200))
    body = json.dumps(mass_payload(1000))
    started = time.monotonic()
    response = client.post(
        "/v3/mail/send", content=body, headers={**AUTH, "Content-Type": "application/json"}
    )
    elapsed = time.monotonic() - started
    assert response.status_code == 202 and 0.2 <= elapsed < 2.0  # per personalization: 200 s


def test_storing_a_1000_personalization_request_keeps_one_body() -> None:
    """Storing refers to the request as parsed: one shared body however many recipients (the cost in
    milliseconds is measured by `python -m tests.test_sink_substitutions`, not asserted)."""
    payload, store = mass_payload(1000), SinkStore(api_key=KEY)
    assert validate_mail_send(payload) == []
    for _ in range(5):
        store.add(payload)
    assert all(m.payload["content"] is payload["content"] for m in store.messages)  # no copies


# --- measurements (not a test): python -m tests.test_sink_substitutions ---------------------------


def _best_ms(action: Callable[[], object], repeat: int = 10) -> tuple[float, float]:
    """(min, median) milliseconds of `action`."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return min(times) * 1000, statistics.median(times) * 1000


def _report(label: str, action: Callable[[], object], repeat: int = 10) -> None:
    low, median = _best_ms(action, repeat)
    print(f"{label}: {low:.3f} ms min, {median:.3f} ms median")


def _throughput(url: str, payload: Payload, requests: int, encode: bool, threads: int = 8) -> float:
    """Mails/s of `requests` posts of `payload` (1,000 personalizations) from `threads` httpx
    clients; `encode`: each post encodes the JSON (as a sender does), else one body is reused."""
    local = threading.local()
    headers = {**AUTH, "Content-Type": "application/json"}
    body = json.dumps(payload).encode()

    def post(_: int) -> None:
        if not hasattr(local, "client"):
            local.client = httpx.Client(base_url=url, timeout=30)
        content = json.dumps(payload).encode() if encode else body
        assert local.client.post("/v3/mail/send", content=content, headers=headers).status_code == 202

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(post, range(threads)))  # connect
        started = time.perf_counter()
        list(pool.map(post, range(requests)))
        return requests * 1000 / (time.perf_counter() - started)


def measure(requests: int = 80) -> None:
    """Print the per-request costs of a 1,000-personalization mass mail and the mails/s it gets."""
    payload = mass_payload(1000)
    body = json.dumps(payload, ensure_ascii=False).encode()
    store = SinkStore(api_key=KEY)
    print(f"request: 1,000 personalizations, {len(body) // 1024} KB (shared HTML {HTML_KB} KB)")
    _report("json parse", lambda: json.loads(body))
    _report("validation", lambda: validate_mail_send(payload))
    _report("storing", lambda: store.add(payload))
    stored = store.messages[0]
    _report("making its 1,000 mails (read side)", lambda: list(stored.mails()), repeat=3)
    with running_sink(SinkStore(api_key=KEY)) as sink, httpx.Client(base_url=sink.url) as client:
        headers = {**AUTH, "Content-Type": "application/json"}
        _report("HTTP round trip", lambda: client.post("/v3/mail/send", content=body, headers=headers))
        for encode in (False, True):
            sink.store.reset()
            rate = _throughput(sink.url, payload, requests, encode)
            print(f"8 threads, {requests} requests, JSON encoded per request {encode}: {rate:.0f} mails/s")
    print(f"memory of one stored request: {_stored_mb(body):.2f} MB (its 1,000 mails share one body)")


def _stored_mb(body: bytes, copies: int = 10) -> float:
    """MB the sink holds per stored request (the parsed JSON)."""
    tracemalloc.start()
    store = SinkStore(api_key=KEY)
    for _ in range(copies):
        store.add(json.loads(body))
    held = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return held / copies / 1e6


if __name__ == "__main__":
    measure()
