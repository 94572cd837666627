"""One-click unsubscribe and the signed SendGrid event webhook, over real HTTP and a real state DB."""

from __future__ import annotations

import base64
import json
import re
import shutil
import time
from collections.abc import Iterator
from datetime import datetime
from html import unescape
from pathlib import Path
from typing import Any

import httpx
import pytest
from alembic import command
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import SecretStr
from sqlalchemy import Engine, func, inspect, select

from config.settings import Settings
from shopmail.db import get_engine
from shopmail.mail.links import unsubscribe_link, unsubscribe_token
from shopmail.state import feedback, state_db
from shopmail.state.feedback import record_events, unsubscribe, unsubscribed_customers
from shopmail.state.schema import customer_unsubscribes, provider_events, suppressions
from shopmail.web.feedback_app import SIGNATURE_HEADER, TIMESTAMP_HEADER, running_feedback_app
from tests.test_shop_databases import SERVERS, _scratch_database

SECRET = "test-secret"  # conftest's SHOPMAIL_UNSUBSCRIBE_SECRET
SENT_AT = 1_795_000_000  # the events' own unix time


def _public_key_b64(key: ec.EllipticCurvePrivateKey) -> str:
    """The public key as SendGrid shows it: base64 DER SubjectPublicKeyInfo."""
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(der).decode()


def _sign(key: ec.EllipticCurvePrivateKey, body: bytes, timestamp: str) -> str:
    """SendGrid's signature: base64(DER ECDSA-SHA256 over timestamp + payload)."""
    return base64.b64encode(key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))).decode()


@pytest.fixture(scope="module")
def signing_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="module")
def migrated_state_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "state.sqlite"
    state_db.upgrade(f"sqlite:///{path}").dispose()
    return path


@pytest.fixture
def state(tmp_path: Path, migrated_state_file: Path) -> Engine:
    """A fresh state DB per test: a copy of one migrated by `state_db.upgrade` (saves a migration)."""
    path = tmp_path / "state.sqlite"
    shutil.copyfile(migrated_state_file, path)
    return get_engine(f"sqlite:///{path}")


@pytest.fixture
def client(settings: Settings, state: Engine, signing_key) -> Iterator[httpx.Client]:
    configured = settings.model_copy(
        update={"sendgrid_webhook_public_key": SecretStr(_public_key_b64(signing_key))}
    )
    with running_feedback_app(configured, state) as app, httpx.Client(base_url=app.url, timeout=10) as http:
        yield http


def _post_events(
    client: httpx.Client,
    key: ec.EllipticCurvePrivateKey,
    body: bytes | list[dict[str, Any]],
    *,
    timestamp: int | None = None,
    sent_body: bytes | None = None,
) -> httpx.Response:
    """POST a webhook batch signed like SendGrid (`sent_body`: what actually goes on the wire)."""
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    headers = {SIGNATURE_HEADER: _sign(key, raw, stamp), TIMESTAMP_HEADER: stamp}
    headers["Content-Type"] = "application/json"
    return client.post("/sendgrid/events", content=sent_body or raw, headers=headers)


def _event(name: str, email: str, n: int, **extra: Any) -> dict[str, Any]:
    return {
        "email": email,
        "timestamp": SENT_AT + n,
        "event": name,
        "sg_event_id": f"evt-{name}-{n}",
        "sg_message_id": f"msg-{n}.filter0001",
        "shopmail_key": f"key{n:038d}",
        "campaign": "wakeup",
        "customer_id": str(100 + n),
        **extra,
    }


BATCH = [
    _event("unsubscribe", "Anna@Example.COM", 1),
    _event("group_unsubscribe", "boris@example.com", 2, asm_group_id=1),
    _event("spamreport", "vera@example.com", 3),
    _event("bounce", "gleb@example.com", 4, type="bounce", reason="550 5.1.1 user unknown"),
    _event("dropped", "dina@example.com", 5, reason="Bounced Address"),
    _event("delivered", "egor@example.com", 6),
    _event("open", "egor@example.com", 7),
    _event("click", "egor@example.com", 8, url="https://shop.example/"),
    _event("bounce", "zoya@example.com", 9, type="blocked", reason="421 try later"),
    {"email": "x@example.com", "timestamp": SENT_AT, "event": "open"},  # no sg_event_id
    {"timestamp": SENT_AT, "event": "open", "sg_event_id": "evt-no-email"},
]
SUPPRESSED = {
    "anna@example.com": "unsubscribe",
    "boris@example.com": "unsubscribe",
    "vera@example.com": "spam_report",
    "gleb@example.com": "bounce",
    "dina@example.com": "dropped",
}


def _count(engine: Engine, table) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table)).scalar_one()


def _rows(engine: Engine, table) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(select(table))]


# --- event webhook ---------------------------------------------------------------------------


def test_signed_batch_is_stored_and_feeds_suppressions(client, signing_key, state) -> None:
    response = _post_events(client, signing_key, BATCH)

    assert response.status_code == 200
    assert response.json() == {
        "received": 11,
        "stored": 9,
        "duplicates": 0,
        "invalid": 2,
        "suppressed": 5,
        "confirmed": 0,
    }
    assert {r["email"]: (r["reason"], r["source"]) for r in _rows(state, suppressions)} == {
        email: (reason, "sendgrid-webhook") for email, reason in SUPPRESSED.items()
    }
    stored = {r["sg_event_id"]: r for r in _rows(state, provider_events)}
    assert len(stored) == 9
    unsubscribed = stored["evt-unsubscribe-1"]
    assert unsubscribed["email"] == "anna@example.com"
    assert unsubscribed["message_key"] == f"key{1:038d}"
    assert (unsubscribed["campaign"], unsubscribed["customer_id"]) == ("wakeup", 101)
    assert unsubscribed["occurred_at"] == datetime(2026, 11, 18, 11, 6, 41)  # SENT_AT + 1, UTC
    assert stored["evt-bounce-4"]["reason"] == "550 5.1.1 user unknown"


def test_replayed_batch_is_counted_as_duplicates_and_changes_nothing(client, signing_key, state) -> None:
    _post_events(client, signing_key, BATCH)
    before = (_rows(state, provider_events), _rows(state, suppressions))

    replay = _post_events(client, signing_key, BATCH + [BATCH[0]])

    assert replay.status_code == 200
    assert replay.json() == {
        "received": 12,
        "stored": 0,
        "duplicates": 10,
        "invalid": 2,
        "suppressed": 0,
        "confirmed": 0,
    }
    assert (_rows(state, provider_events), _rows(state, suppressions)) == before


def test_a_concurrent_delivery_of_the_same_events_is_caught_by_the_unique_constraint(
    state, monkeypatch: pytest.MonkeyPatch
) -> None:
    record_events(state, BATCH)
    real_check = feedback.present_values
    checks: list[int] = []

    def check_racing_another_delivery(engine, column, values, *where) -> set:
        checks.append(1)  # the first check runs before the other delivery commits: it sees nothing
        return set() if len(checks) == 1 else real_check(engine, column, values, *where)

    monkeypatch.setattr(feedback, "present_values", check_racing_another_delivery)
    summary = record_events(state, BATCH + [_event("open", "egor@example.com", 10)])

    assert checks  # the race was played
    assert (summary.stored, summary.duplicates, summary.suppressed) == (1, 9, 0)
    assert _count(state, provider_events) == 10


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {TIMESTAMP_HEADER: "TS"},
        {SIGNATURE_HEADER: "not base64!", TIMESTAMP_HEADER: "TS"},
        {SIGNATURE_HEADER: base64.b64encode(b"\x30\x06garbage").decode(), TIMESTAMP_HEADER: "TS"},
    ],
    ids=["no-headers", "no-signature", "not-base64", "not-der"],
)
def test_unsigned_or_malformed_signatures_are_rejected(client, state, headers: dict[str, str]) -> None:
    headers = {k: v.replace("TS", str(int(time.time()))) for k, v in headers.items()}
    response = client.post("/sendgrid/events", content=json.dumps(BATCH).encode(), headers=headers)

    assert response.status_code == 403
    assert _count(state, provider_events) == _count(state, suppressions) == 0


def test_a_signature_by_another_key_is_rejected(client, state) -> None:
    response = _post_events(client, ec.generate_private_key(ec.SECP256R1()), BATCH)

    assert response.status_code == 403
    assert _count(state, provider_events) == 0


def test_a_tampered_body_is_rejected(client, signing_key, state) -> None:
    signed = json.dumps([_event("delivered", "egor@example.com", 1)]).encode()
    tampered = signed.replace(b"delivered", b"spamreport")

    assert _post_events(client, signing_key, signed, sent_body=tampered).status_code == 403
    assert _count(state, provider_events) == _count(state, suppressions) == 0


@pytest.mark.parametrize("age_s", [3600, 601, -3600])
def test_stale_or_future_signatures_are_rejected_as_replays(client, signing_key, state, age_s: int) -> None:
    response = _post_events(client, signing_key, BATCH, timestamp=int(time.time()) - age_s)

    assert response.status_code == 403
    assert _count(state, provider_events) == 0


def test_the_replay_window_is_a_parameter(settings, state, signing_key) -> None:
    configured = settings.model_copy(
        update={"sendgrid_webhook_public_key": SecretStr(_public_key_b64(signing_key))}
    )
    with (
        running_feedback_app(configured, state, max_webhook_age_s=7200) as app,
        httpx.Client(base_url=app.url) as http,
    ):
        response = _post_events(http, signing_key, BATCH[:1], timestamp=int(time.time()) - 3600)

    assert response.status_code == 200


@pytest.mark.parametrize("body", [b"[{not json", b'{"event": "open"}', b'"[]"'])
def test_a_signed_body_that_is_not_a_json_list_is_a_bad_request(client, signing_key, body: bytes) -> None:
    assert _post_events(client, signing_key, body).status_code == 400


def test_without_a_configured_key_the_webhook_rejects_everything(settings, state, signing_key) -> None:
    with running_feedback_app(settings, state) as app, httpx.Client(base_url=app.url) as http:
        assert _post_events(http, signing_key, BATCH).status_code == 403
        assert http.get("/healthz").text == "ok"
    assert _count(state, provider_events) == 0


# --- one-click unsubscribe -------------------------------------------------------------------


def test_one_click_post_unsubscribes_once_and_is_idempotent(client, state) -> None:
    link = unsubscribe_link("/unsubscribe", SECRET, 42, "wakeup")
    one_click = {"List-Unsubscribe": "One-Click"}

    first = client.post(link, data=one_click)
    row = _rows(state, customer_unsubscribes)
    again = client.post(link, data=one_click)

    assert first.status_code == again.status_code == 200
    assert "Вы отписались" in first.text and "You are unsubscribed" in first.text
    assert row == _rows(state, customer_unsubscribes)
    assert [(r["customer_id"], r["campaign"], r["source"]) for r in row] == [(42, "wakeup", "one-click")]
    assert unsubscribed_customers(state, [41, 42, 43]) == {42}
    assert unsubscribe(state, SECRET, unsubscribe_token(SECRET, 42, "wakeup")) is True


def test_get_shows_a_confirmation_form_and_does_not_unsubscribe(client, state) -> None:
    page = client.get(unsubscribe_link("/unsubscribe", SECRET, 7, "birthday"))

    assert page.status_code == 200
    assert "Отписаться" in page.text and "Unsubscribe" in page.text
    assert page.headers["cache-control"] == "no-store"
    assert unsubscribed_customers(state, [7]) == set()
    action = unescape(re.search(r'<form method="post" action="([^"]+)"', page.text).group(1))
    confirmed = client.post(f"/unsubscribe{action}", data={"List-Unsubscribe": "One-Click"})
    assert confirmed.status_code == 200
    assert unsubscribed_customers(state, [7]) == {7}


def test_the_token_may_come_in_a_form_body(client, state) -> None:
    token = unsubscribe_token(SECRET, 8, "wakeup")

    assert client.post("/unsubscribe", data={"token": token}).status_code == 200
    assert unsubscribed_customers(state, [8]) == {8}


def test_forged_or_missing_tokens_get_the_same_bare_400(client, state) -> None:
    genuine = unsubscribe_token(SECRET, 9, "wakeup")
    payload, signature = genuine.split(".")
    forged = [
        unsubscribe_token("another-secret", 9, "wakeup"),
        f"{unsubscribe_token(SECRET, 10, 'wakeup').split('.')[0]}.{signature}",
        f"{payload}.{signature[:-2]}",
        "no-dot-at-all",
        "x" * 5000,
    ]
    answers = [client.post("/unsubscribe", params={"token": t}) for t in forged]
    answers += [client.get("/unsubscribe", params={"token": t}) for t in forged]
    answers += [
        client.post("/unsubscribe", data={"List-Unsubscribe": "One-Click"}),
        client.get("/unsubscribe"),
    ]

    assert {a.status_code for a in answers} == {400}
    assert len({a.text for a in answers}) == 1
    assert _count(state, customer_unsubscribes) == 0


# --- the migration on the production databases -----------------------------------------------


@pytest.mark.integration
@pytest.mark.parametrize("server", list(SERVERS))
def test_migration_0002_and_feedback_work_on_real_servers(server: str) -> None:
    scratch = _scratch_database(SERVERS[server])
    url = next(scratch)
    try:
        engine = state_db.upgrade(url)
        tables = set(inspect(engine).get_table_names())
        assert {"provider_events", "customer_unsubscribes", "send_ledger"} <= tables
        indexes = {i["name"] for i in inspect(engine).get_indexes("provider_events")}
        assert {"ix_provider_events_message_key", "ix_provider_events_event_occurred"} <= indexes

        assert record_events(engine, BATCH).as_dict() == {
            "received": 11,
            "stored": 9,
            "duplicates": 0,
            "invalid": 2,
            "suppressed": 5,
            "confirmed": 0,
        }
        assert record_events(engine, BATCH).stored == 0
        assert unsubscribe(engine, SECRET, unsubscribe_token(SECRET, 5, "wakeup")) is True
        assert unsubscribe(engine, SECRET, unsubscribe_token(SECRET, 5, "wakeup")) is True
        assert unsubscribed_customers(engine, [5, 6]) == {5}

        engine.dispose()
        command.downgrade(state_db.alembic_config(url), "0001")
        assert "provider_events" not in set(inspect(engine).get_table_names())
        command.upgrade(state_db.alembic_config(url), "head")
    finally:
        next(scratch, None)


def test_dropped_for_the_message_not_the_address_suppresses_nothing(client, signing_key, state) -> None:
    events = [
        _event("dropped", "yan@example.com", 20, reason="Spam Content"),
        _event("dropped", "ira@example.com", 21, reason="Unsubscribed Address"),
    ]
    response = _post_events(client, signing_key, events)
    assert response.status_code == 200 and response.json()["suppressed"] == 1
    assert {r["email"] for r in _rows(state, suppressions)} == {"ira@example.com"}
