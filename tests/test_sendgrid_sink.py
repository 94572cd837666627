"""The local SendGrid-compatible sink: validation rules, storage, faults, activity lookup,
per-key accounting, HTML pages, background server."""

from __future__ import annotations

import argparse
import copy
import html
import json
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from shopmail.devtools.sendgrid_sink import (
    MAX_BODY_BYTES,
    RunningSink,
    SinkStore,
    main,
    run_sink_in_thread,
    running_sink,
    validate_mail_send,
)
from shopmail.devtools.sink_faults import Faults, add_fault_arguments, faults_from_args
from shopmail.devtools.sink_page import QueryError, parse_query

KEY = "SG.sink-test"
AUTH = {"Authorization": f"Bearer {KEY}"}
Payload = dict[str, Any]


def valid_payload() -> Payload:
    return {
        "personalizations": [
            {
                "to": [{"email": "ivan@example.com", "name": "Иван"}],
                "custom_args": {"shopmail_key": "k1"},
                "headers": {"List-Unsubscribe": "<https://shop.example/u>"},
            }
        ],
        "from": {"email": "shop@example.com", "name": "Магазин"},
        "reply_to": {"email": "support@example.com"},
        "subject": "Привет",
        "content": [
            {"type": "text/plain", "value": "Привет"},
            {"type": "text/html", "value": "<p>Привет</p>"},
        ],
        "categories": ["wakeup14"],
        "custom_args": {"campaign": "wakeup14"},
    }


@pytest.fixture(scope="module")
def sink() -> Iterator[RunningSink]:
    with running_sink(SinkStore(api_key=KEY)) as running:
        yield running


@pytest.fixture
def store(sink: RunningSink) -> SinkStore:
    sink.store.reset()
    sink.store.set_faults(Faults())
    return sink.store


@pytest.fixture(scope="module")
def module_client(sink: RunningSink) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sink.url, timeout=10) as http:
        yield http


@pytest.fixture
def client(module_client: httpx.Client, store: SinkStore) -> httpx.Client:
    return module_client


def post(client: httpx.Client, payload: Any, headers: dict[str, str] = AUTH) -> httpx.Response:
    return client.post("/v3/mail/send", content=json.dumps(payload), headers=headers)


def mutate(change: Callable[[Payload], object]) -> Payload:
    payload = valid_payload()
    change(payload)
    return payload


def test_valid_mail_is_accepted_and_stored(client: httpx.Client, store: SinkStore) -> None:
    response = post(client, valid_payload())

    assert response.status_code == 202
    assert response.content == b""
    message_id = response.headers["X-Message-Id"]
    assert len(message_id) == 22
    for name in ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"):
        assert int(response.headers[name]) >= 0
    [stored] = store.messages
    assert stored.message_id == message_id and stored.payload == valid_payload()

    listed = client.get("/sink/messages", headers=AUTH).json()
    assert [m["message_id"] for m in listed] == [message_id]
    assert listed[0]["payload"]["subject"] == "Привет"
    assert client.delete("/sink/messages", headers=AUTH).json() == {"deleted": 1}
    assert client.get("/sink/messages", headers=AUTH).json() == []


@pytest.mark.parametrize(
    ("change", "field", "fragment"),
    [
        (lambda p: p.pop("personalizations"), "personalizations", "at least one personalization"),
        (lambda p: p.update(personalizations=[]), "personalizations", "at least one"),
        (
            lambda p: p.update(personalizations=[{"to": [{"email": f"u{i}@x.ru"}]} for i in range(1001)]),
            "personalizations",
            "limited to 1000 personalizations",
        ),
        (
            lambda p: p["personalizations"][0].update(to=[{"email": f"u{i}@x.ru"} for i in range(1001)]),
            "personalizations",
            "limit of 1000 total recipients",
        ),
        (lambda p: p["personalizations"][0].pop("to"), "personalizations.0.to", "to array is required"),
        (lambda p: p["personalizations"][0].update(to=[]), "personalizations.0.to", "to array"),
        (
            lambda p: p["personalizations"][0].update(to=[{"email": "ivan@"}]),
            "personalizations.0.to.0.email",
            "valid address",
        ),
        (
            lambda p: p["personalizations"][0].update(cc=[{"email": "IVAN@example.com"}]),
            "personalizations.0",
            "should be unique",
        ),
        (lambda p: p.pop("from"), "from.email", "from object must be provided"),
        (lambda p: p.update({"from": {"email": "shop"}}), "from.email", "valid address"),
        (lambda p: p.update(reply_to={"email": "x"}), "reply_to.email", "valid address"),
        (lambda p: p.pop("subject"), "subject", "subject is required"),
        (lambda p: p.update(subject=""), "subject", "subject is required"),
        (lambda p: p.pop("content"), "content", "content parameter is required"),
        (lambda p: p["content"][1].update(value=""), "content.1.value", "at least one character"),
        (lambda p: p["content"].reverse(), "content", "only be provided in this order"),
        (lambda p: p.update(custom_args={"n": 5}), "custom_args.n", "Expected: string, given: integer"),
        (
            lambda p: p["personalizations"][0].update(custom_args={"ok": True}),
            "personalizations.0.custom_args.ok",
            "given: boolean",
        ),
        (lambda p: p.update(custom_args="x"), "custom_args", "Expected: object, given: string"),
        (lambda p: p.update(headers={"Subject": "x"}), "headers", "reserved"),
        (lambda p: p.update(categories=["ok", 3]), "categories", "array of strings"),
    ],
)
def test_invalid_mail_gets_sendgrid_shaped_400(
    client: httpx.Client, store: SinkStore, change: Callable[[Payload], object], field: str, fragment: str
) -> None:
    response = post(client, mutate(change))

    assert response.status_code == 400
    errors = response.json()["errors"]
    assert all(set(e) == {"message", "field", "help"} for e in errors)
    assert any(e["field"] == field and fragment in e["message"] for e in errors), errors
    assert store.messages == []


def test_all_errors_are_reported_at_once() -> None:
    payload = mutate(lambda p: (p.pop("from"), p.pop("subject")))
    assert {e["field"] for e in validate_mail_send(payload)} == {"from.email", "subject"}


@pytest.mark.parametrize(
    "change",
    [
        lambda p: (p.pop("subject"), p["personalizations"][0].update(subject="Личная тема")),
        lambda p: p.update(content=[{"type": "text/html", "value": "<p>only html</p>"}]),
        lambda p: p.update(content=[{"type": "text/plain", "value": "only text"}]),
        lambda p: (p.pop("content"), p.update(template_id="d-123")),
        lambda p: p.update(personalizations=[{"to": [{"email": f"u{i}@x.ru"}]} for i in range(1000)]),
    ],
)
def test_documented_alternatives_are_valid(client: httpx.Client, change: Callable) -> None:
    assert post(client, mutate(change)).status_code == 202


def test_malformed_json_is_a_bad_request(client: httpx.Client) -> None:
    response = client.post("/v3/mail/send", content=b"{not json", headers=AUTH)
    assert response.status_code == 400
    assert response.json() == {"errors": [{"message": "Bad Request", "field": None, "help": None}]}
    assert post(client, ["a list"]).status_code == 400


def test_oversized_body_is_413(client: httpx.Client) -> None:
    payload = valid_payload()
    payload["content"][1]["value"] = "x" * MAX_BODY_BYTES
    response = post(client, payload)
    assert response.status_code == 413
    assert "too large" in response.json()["errors"][0]["message"]


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({}, "authorization required"),
        ({"Authorization": f"Basic {KEY}"}, "authorization required"),
        ({"Authorization": "Bearer"}, "authorization required"),
        ({"Authorization": "Bearer SG.other"}, "authorization grant is invalid"),
    ],
)
def test_authorization_is_required(
    client: httpx.Client, store: SinkStore, headers: dict[str, str], message: str
) -> None:
    response = post(client, valid_payload(), headers=headers)
    assert response.status_code == 401
    [error] = response.json()["errors"]
    assert message in error["message"] and error["field"] is None and error["help"] is None
    assert store.messages == []


def test_any_key_is_accepted_when_none_is_configured() -> None:
    with running_sink() as open_sink:
        response = httpx.post(
            f"{open_sink.url}/v3/mail/send", json=valid_payload(), headers={"Authorization": "Bearer x"}
        )
    assert response.status_code == 202


def test_sandbox_mode_validates_but_does_not_store(client: httpx.Client, store: SinkStore) -> None:
    payload = mutate(lambda p: p.update(mail_settings={"sandbox_mode": {"enable": True}}))
    response = post(client, payload)
    assert response.status_code == 200 and "X-Message-Id" not in response.headers
    assert store.messages == []
    broken = copy.deepcopy(payload)
    broken.pop("subject")
    assert post(client, broken).status_code == 400


def test_scripted_failures_come_first_then_normal_service(client: httpx.Client, store: SinkStore) -> None:
    store.script([503, 429, 500])
    statuses = [post(client, valid_payload()) for _ in range(4)]

    assert [r.status_code for r in statuses] == [503, 429, 500, 202]
    assert statuses[0].json()["errors"][0]["message"] == "Service Unavailable"
    assert statuses[1].headers["X-RateLimit-Remaining"] == "0"
    assert len(store.messages) == 1 and store.requests == 4


def test_scripted_failures_are_not_used_up_by_unauthorized_requests(
    client: httpx.Client, store: SinkStore
) -> None:
    store.script([503])
    assert post(client, valid_payload(), headers={}).status_code == 401
    assert post(client, valid_payload()).status_code == 503


def test_rate_limit_window_answers_429_with_reset() -> None:
    with running_sink(SinkStore(rate_limit=2, rate_window_s=3600)) as limited:
        responses = [
            httpx.post(f"{limited.url}/v3/mail/send", json=valid_payload(), headers=AUTH) for _ in range(3)
        ]

    assert [r.status_code for r in responses] == [202, 202, 429]
    assert [r.headers["X-RateLimit-Remaining"] for r in responses] == ["1", "0", "0"]
    assert responses[2].headers["X-RateLimit-Reset"] == responses[0].headers["X-RateLimit-Reset"]
    assert int(responses[2].headers["X-RateLimit-Reset"]) % 3600 == 0


def test_wrong_method_is_405(client: httpx.Client) -> None:
    assert client.get("/v3/mail/send").status_code == 405


def test_background_server_serves_real_http_and_stops() -> None:
    url, store, stop = run_sink_in_thread(SinkStore(api_key=KEY))
    try:
        with httpx.Client(base_url=url, headers=AUTH) as http:
            sent = http.post("/v3/mail/send", json=valid_payload())
            assert sent.status_code == 202
            assert http.get("/sink/messages").json()[0]["message_id"] == sent.headers["X-Message-Id"]
            assert http.delete("/sink/messages").json() == {"deleted": 1}
            assert store.messages == []
    finally:
        stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/sink/messages", timeout=1)


# --- fault injection ------------------------------------------------------------------------------


def test_random_429_carries_a_reset_retry_after_s_ahead(client: httpx.Client, store: SinkStore) -> None:
    store.set_faults(Faults(rate_429=1.0, retry_after_s=7, seed=1))
    before = time.time()
    response = post(client, valid_payload())

    assert response.status_code == 429
    assert response.headers["X-RateLimit-Remaining"] == "0"
    assert before + 7 <= int(response.headers["X-RateLimit-Reset"]) <= time.time() + 8
    assert response.json()["errors"][0]["message"] == "too many requests"
    assert store.messages == []


@pytest.mark.parametrize(("rates", "status"), [({"rate_500": 1.0}, 500), ({"rate_503": 1.0}, 503)])
def test_random_5xx_are_sendgrid_shaped_and_store_nothing(
    client: httpx.Client, store: SinkStore, rates: dict[str, float], status: int
) -> None:
    store.set_faults(Faults(**rates, seed=1))
    responses = [post(client, valid_payload()) for _ in range(3)]

    assert [r.status_code for r in responses] == [status] * 3
    assert set(responses[0].json()["errors"][0]) == {"message", "field", "help"}
    assert store.messages == [] and store.stats()["faults"][str(status)] == 3


def test_timeout_stalls_then_answers_503(client: httpx.Client, store: SinkStore) -> None:
    store.set_faults(Faults(rate_timeout=1.0, timeout_s=0.3, seed=1))
    with pytest.raises(httpx.ReadTimeout):
        client.post("/v3/mail/send", json=valid_payload(), headers=AUTH, timeout=0.1)
    started = time.monotonic()
    response = post(client, valid_payload())

    assert response.status_code == 503 and time.monotonic() - started >= 0.3
    assert store.messages == [] and store.stats()["faults"]["timeout"] == 2


def test_dropped_connection_gets_no_http_response(client: httpx.Client, store: SinkStore) -> None:
    store.set_faults(Faults(rate_drop=1.0, seed=1))
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        post(client, valid_payload())
    assert store.messages == [] and store.stats()["faults"]["drop"] == 1

    store.set_faults(Faults())
    assert post(client, valid_payload()).status_code == 202  # the client just reconnects


def test_seeded_faults_are_reproducible_and_faulted_requests_store_nothing(
    client: httpx.Client, store: SinkStore
) -> None:
    store.set_faults(Faults(rate_503=0.3, rate_500=0.2, seed=42))
    first = [post(client, valid_payload()).status_code for _ in range(20)]
    assert len(store.messages) == first.count(202)
    store.reset()  # restarts the draws from the seed
    second = [post(client, valid_payload()).status_code for _ in range(20)]

    assert first == second and {202, 500, 503} <= set(first)
    stats = store.stats()
    assert stats["faults"]["503"] == first.count(503) and stats["accepted_requests"] == first.count(202)


def test_zero_rates_never_fault(client: httpx.Client, store: SinkStore) -> None:
    store.set_faults(Faults(seed=3))
    assert {post(client, valid_payload()).status_code for _ in range(10)} == {202}
    assert sum(store.stats()["faults"].values()) == 0


def test_scripted_failures_take_precedence_over_random_faults(client: httpx.Client, store: SinkStore) -> None:
    store.set_faults(Faults(rate_500=1.0))
    store.script([429])
    assert [post(client, valid_payload()).status_code for _ in range(2)] == [429, 500]


def test_slow_ms_adds_latency(client: httpx.Client, store: SinkStore) -> None:
    store.set_faults(Faults(slow_ms=150))
    started = time.monotonic()
    assert post(client, valid_payload()).status_code == 202
    assert time.monotonic() - started >= 0.15


def test_faults_are_read_and_changed_over_http(client: httpx.Client, store: SinkStore) -> None:
    assert client.get("/sink/faults", headers=AUTH).json() == Faults().as_json()
    put = client.put("/sink/faults", json={"rate_503": 1.0, "seed": 3, "timeout_s": 2}, headers=AUTH)
    assert put.status_code == 200
    assert (
        put.json()
        == client.get("/sink/faults", headers=AUTH).json()
        == Faults(rate_503=1.0, seed=3, timeout_s=2).as_json()
    )
    assert post(client, valid_payload()).status_code == 503

    patched = client.patch("/sink/faults", json={"slow_ms": 5}, headers=AUTH).json()
    assert patched["rate_503"] == 1.0 and patched["slow_ms"] == 5
    assert client.put("/sink/faults", json={}, headers=AUTH).json() == Faults().as_json()  # PUT replaces
    assert post(client, valid_payload()).status_code == 202


@pytest.mark.parametrize(
    "body",
    [
        {"rate_429": 2},
        {"rate_429": 0.6, "rate_500": 0.6},
        {"rate_x": 0.1},
        {"slow_ms": "5"},
        {"seed": 1.5},
        [1],
    ],
)
def test_invalid_fault_settings_are_400(client: httpx.Client, body: Any) -> None:
    response = client.put("/sink/faults", json=body, headers=AUTH)
    assert response.status_code == 400 and response.json()["errors"][0]["message"]
    assert client.get("/sink/faults", headers=AUTH).json() == Faults().as_json()


def test_fault_flags_of_the_command_line() -> None:
    parser = argparse.ArgumentParser()
    add_fault_arguments(parser)
    args = parser.parse_args(["--rate-503", "0.2", "--rate-drop", "0.1", "--slow-ms", "5", "--seed", "9"])
    assert faults_from_args(args) == Faults(rate_503=0.2, rate_drop=0.1, slow_ms=5, seed=9)
    with pytest.raises(SystemExit):
        main(["--rate-429", "1.5"])  # refused before serving


def test_shutdown_interrupts_a_stalled_request() -> None:
    statuses: list[int] = []
    with running_sink(SinkStore(faults=Faults(rate_timeout=1.0, timeout_s=30))) as stalling:
        url = f"{stalling.url}/v3/mail/send"

        def call() -> None:
            statuses.append(httpx.post(url, json=valid_payload(), headers=AUTH, timeout=10).status_code)

        caller = threading.Thread(target=call)
        caller.start()
        while stalling.store.stats()["faults"]["timeout"] == 0:
            time.sleep(0.01)
        started = time.monotonic()
        stalling.stop()
        caller.join(timeout=5)
    assert time.monotonic() - started < 3 and statuses == [503]


# --- email activity lookup ------------------------------------------------------------------------


def keyed_payload(*keys: str) -> Payload:
    payload = valid_payload()
    payload["personalizations"] = [
        {"to": [{"email": f"{key}@example.com"}], "custom_args": {"shopmail_key": key}} for key in keys
    ]
    return payload


def activity(client: httpx.Client, query: str, limit: int = 10) -> httpx.Response:
    return client.get("/v3/messages", params={"query": query, "limit": limit}, headers=AUTH)


def test_activity_finds_a_key(client: httpx.Client) -> None:
    message_id = post(client, keyed_payload("a", "b", "c")).headers["X-Message-Id"]
    post(client, keyed_payload("d"))

    response = activity(client, "unique_args['shopmail_key']=\"b\"")
    assert response.status_code == 200
    [found] = response.json()["messages"]
    assert found["msg_id"] == f"{message_id}.1" and found["to_email"] == "b@example.com"
    assert found["subject"] == "Привет" and found["status"] == "delivered"
    # exactly SendGrid's documented fields: the query filters on unique_args, the answer never has them
    documented = {"from_email", "msg_id", "subject", "to_email", "status", "opens_count", "clicks_count"}
    assert set(found) == documented | {"last_event_time"}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", found["last_event_time"])
    assert activity(client, "unique_args['shopmail_key']=\"zz\"").json() == {"messages": []}


@pytest.mark.parametrize(
    ("query", "keys"),
    [
        ('unique_args[\'shopmail_key\'] IN ("a", "c", "zz")', ["a", "c"]),
        ("unique_args['shopmail_key']=\"a\" OR unique_args['shopmail_key'] in (\"d\")", ["a", "d"]),
        ('unique_args[\'shopmail_key\'] IN ("b") OR to_email="c@example.com"', ["b", "c"]),
        ('(unique_args["shopmail_key"] NOT IN ("a")) AND NOT msg_id="x"', ["b", "c", "d"]),
        ("", ["a", "b", "c", "d"]),
    ],
)
def test_activity_query_forms(client: httpx.Client, query: str, keys: list[str]) -> None:
    post(client, keyed_payload("a", "b", "c"))
    post(client, keyed_payload("d"))
    found = activity(client, query).json()["messages"]
    assert [m["to_email"] for m in found] == [f"{key}@example.com" for key in keys]


def test_activity_lists_every_personalization_up_to_the_limit(client: httpx.Client) -> None:
    message_id = post(client, keyed_payload(*(f"k{i}" for i in range(1000)))).headers["X-Message-Id"]
    found = activity(client, "unique_args['campaign']=\"wakeup14\"", limit=1000).json()["messages"]
    assert [m["msg_id"] for m in found] == [f"{message_id}.{i}" for i in range(1000)]
    assert len(activity(client, "", limit=3).json()["messages"]) == 3


@pytest.mark.parametrize(
    "query",
    [
        "garbage",
        "unique_args['shopmail_key']=",
        "unique_args['shopmail_key'] IN ()",
        "unique_args['shopmail_key']=\"a\" OR",
        "unique_args['shopmail_key']=\"a\")",
        'last_event_time BETWEEN TIMESTAMP "2026-01-01T00:00:00Z"',
        "unique_args['shopmail_key']='a'",
    ],
)
def test_activity_rejects_unknown_syntax(client: httpx.Client, query: str) -> None:
    response = activity(client, query)
    assert response.status_code == 400
    [error] = response.json()["errors"]
    assert error["field"] == "query" and error["message"].startswith("invalid query")


def test_activity_checks_limit_and_authorization(client: httpx.Client) -> None:
    for limit in ("0", "1001", "ten"):
        response = client.get("/v3/messages", params={"limit": limit}, headers=AUTH)
        assert response.status_code == 400 and response.json()["errors"][0]["field"] == "limit"
    assert client.get("/v3/messages").status_code == 401
    assert client.get("/v3/messages", headers={"Authorization": "Bearer SG.other"}).status_code == 401


def test_parse_query_directly() -> None:
    row = {"to_email": "a@b.ru", "unique_args": {"k": "1"}}
    assert parse_query('unique_args[\'k\']="1" AND (to_email="x" OR to_email="a@b.ru")')(row)
    assert not parse_query("unique_args['k'] != \"1\"")(row)
    assert parse_query('unique_args[\'k\']="say \\"hi\\""')({"unique_args": {"k": 'say "hi"'}})
    with pytest.raises(QueryError):
        parse_query("to_email ~ 'x'")


# --- per-key accounting ---------------------------------------------------------------------------


def test_key_counts_and_stats_show_duplicates(client: httpx.Client, store: SinkStore) -> None:
    post(client, keyed_payload("a", "b"))
    post(client, keyed_payload("b", "c"))
    post(client, mutate(lambda p: p.pop("subject")))  # refused: counts as a request only
    store.script([503])
    post(client, keyed_payload("x"))

    assert store.key_counts() == Counter({"a": 1, "b": 2, "c": 1})
    stats = client.get("/sink/stats", headers=AUTH).json()
    first, last = stats.pop("first_received_at"), stats.pop("last_received_at")
    assert first <= last
    assert stats == {
        "requests": 4,
        "accepted_requests": 2,
        "personalizations": 4,
        "faults": {
            "429": 0,
            "500": 0,
            "503": 1,
            "timeout": 0,
            "drop": 0,
            "accept_drop": 0,
            "accept_stall": 0,
        },
        "keys": 3,
        "duplicate_keys": 1,
        "doubt_keys": 0,
        "in_flight": 0,
        "webhook_events_posted": 0,
        "webhook_events_pending": 0,
    }


# --- HTML pages -----------------------------------------------------------------------------------

HOSTILE_HTML = '<p title="x" onclick="steal()">Hi & bye</p><script>alert(2)</script>'


def hostile_payload() -> Payload:
    payload = valid_payload()
    payload["subject"] = "<script>alert(1)</script>"
    payload["content"] = [
        {"type": "text/plain", "value": "<b>not bold</b>"},
        {"type": "text/html", "value": HOSTILE_HTML},
    ]
    return payload


def test_index_page_lists_mails(client: httpx.Client) -> None:
    assert "No mails yet" in client.get("/sink", headers=AUTH).text
    message_id = post(client, valid_payload()).headers["X-Message-Id"]
    page = client.get("/sink", headers=AUTH)

    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    for text in ("ivan@example.com", "Привет", "wakeup14", f'href="/sink/messages/{message_id}"'):
        assert text in page.text


def test_pages_escape_hostile_content(client: httpx.Client) -> None:
    message_id = post(client, hostile_payload()).headers["X-Message-Id"]
    index = client.get("/sink", headers=AUTH).text
    view = client.get(f"/sink/messages/{message_id}", headers=AUTH)

    assert view.status_code == 200 and "script-src 'none'" in view.headers["content-security-policy"]
    for page in (index, view.text):
        assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<pre>&lt;b&gt;not bold&lt;/b&gt;</pre>" in view.text
    [srcdoc] = re.findall(r'<iframe sandbox srcdoc="([^"]*)"', view.text)
    assert html.unescape(srcdoc) == HOSTILE_HTML and "onclick" not in view.text.replace(srcdoc, "")
    assert client.get(f"/sink/messages/{message_id}.0", headers=AUTH).status_code == 200  # an activity msg_id
    assert client.get("/sink/messages/nope", headers=AUTH).status_code == 404
