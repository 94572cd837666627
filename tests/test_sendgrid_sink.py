"""The local SendGrid-compatible sink: validation rules, storage, faults, background server."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from shopmail.sendgrid_sink import (
    MAX_BODY_BYTES,
    RunningSink,
    SinkStore,
    run_sink_in_thread,
    running_sink,
    validate_mail_send,
)

KEY = "SG.sink-test"
AUTH = {"Authorization": f"Bearer {KEY}"}
Payload = dict[str, Any]


def valid_payload() -> Payload:
    return {
        "personalizations": [
            {
                "to": [{"email": "ivan@example.ru", "name": "Иван"}],
                "custom_args": {"shopmail_key": "k1"},
                "headers": {"List-Unsubscribe": "<https://shop.example.ru/u>"},
            }
        ],
        "from": {"email": "shop@example.ru", "name": "Магазин"},
        "reply_to": {"email": "support@example.ru"},
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

    listed = client.get("/sink/messages").json()
    assert [m["message_id"] for m in listed] == [message_id]
    assert listed[0]["payload"]["subject"] == "Привет"
    assert client.delete("/sink/messages").json() == {"deleted": 1}
    assert client.get("/sink/messages").json() == []


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
            lambda p: p["personalizations"][0].update(cc=[{"email": "IVAN@example.ru"}]),
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
        (lambda p: p.update(categories=["ok", 3]), "categories", "categories"),
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
