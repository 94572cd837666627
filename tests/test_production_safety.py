"""Production safety: demo secrets and the placeholder sender are refused where mail reaches people,
defaults use reserved names, errors and logs are redacted, private files, the webhook answers
before reading, `demo-data` never overwrites a database it did not create."""

from __future__ import annotations

import logging
import socket
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import prefect.main  # noqa: F401  - Prefect's console log handler binds sys.stderr now, not a CliRunner's
import pytest
from pydantic import SecretStr
from sqlalchemy import create_engine, inspect, text
from typer.testing import CliRunner

from config.settings import (
    DEFAULT_SENDER_EMAIL,
    DEMO_COUPON_SECRET,
    DEMO_UNSUBSCRIBE_SECRET,
    NEW_SECRET_COMMAND,
    DemoSettingsError,
    Settings,
    demo_values_in_use,
    require_production_settings,
)
from shopmail import redaction
from shopmail.cli import app
from shopmail.db import get_engine, safe_url
from shopmail.mailer.errors import MailerConfigurationError
from shopmail.mailer.factory import make_sender
from shopmail.mailer.memory import InMemorySender
from shopmail.mailer.outbox import FileOutboxSender
from shopmail.redaction import redact, redact_log_record, secret_values
from shopmail.state.coupons import coupon_code
from shopmail.web import feedback_app
from shopmail.web.feedback_app import SIGNATURE_HEADER, TIMESTAMP_HEADER, running_feedback_app
from tests.conftest import production_values
from tests.test_shop_databases import SERVERS, _scratch_database

RESERVED = (".example", "example.com", "example.org", "example.net")


def _bare(**values) -> Settings:
    """Settings from the shipped defaults only (no env file, no SHOPMAIL_* variables)."""
    return Settings(_env_file=None, **values)


@pytest.fixture
def no_shopmail_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No SHOPMAIL_* variable, no .env file, a private PREFECT_HOME for CLI calls."""
    import os

    from config.settings import get_settings

    for key in [k for k in os.environ if k.startswith("SHOPMAIL_")]:
        monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SHOPMAIL_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect"))
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


# --- 1. no demo secret in production -------------------------------------------------------------


def test_the_demo_values_are_named_and_the_real_ones_pass(no_shopmail_env) -> None:
    demo = _bare()
    assert demo.unsubscribe_secret.get_secret_value() == DEMO_UNSUBSCRIBE_SECRET
    assert demo.coupon_secret.get_secret_value() == DEMO_COUPON_SECRET
    assert demo_values_in_use(demo) == ["unsubscribe_secret", "coupon_secret"]
    assert demo_values_in_use(demo, sender=True) == ["unsubscribe_secret", "coupon_secret", "sender_email"]
    assert demo_values_in_use(_bare(**production_values()), sender=True) == []
    blank = _bare(**{**production_values(), "coupon_secret": "  "})
    assert demo_values_in_use(blank) == ["coupon_secret"]  # a blank HMAC key is no better


def test_the_refusal_says_how_to_set_each_value(no_shopmail_env) -> None:
    with pytest.raises(DemoSettingsError) as caught:
        require_production_settings(_bare(), "the SendGrid sender", sender=True)
    message = str(caught.value)
    assert message.startswith("Refusing to start the SendGrid sender")
    for name in ("SHOPMAIL_UNSUBSCRIBE_SECRET", "SHOPMAIL_COUPON_SECRET"):
        assert f"export {name}=$({NEW_SECRET_COMMAND})" in message
    assert "python -c 'import secrets; print(secrets.token_urlsafe(32))'" in message
    assert "'shopmail-unsubscribe-secret'" in message and "SHOPMAIL_SECRET_BLOCKS=true" in message
    assert "SHOPMAIL_SENDER_EMAIL" in message and DEFAULT_SENDER_EMAIL in message
    only_sender = _bare(**{**production_values(), "sender_email": DEFAULT_SENDER_EMAIL})
    with pytest.raises(DemoSettingsError, match="SHOPMAIL_SENDER_EMAIL") as caught:
        require_production_settings(only_sender, "x", sender=True)
    assert "SECRET" not in str(caught.value)


def test_sendgrid_sender_refuses_demo_values_and_local_providers_need_none(
    no_shopmail_env, tmp_path: Path
) -> None:
    # SendGrid itself (not this machine's local server, which with the demo shop reaches no one)
    key = {"mail_provider": "sendgrid", "sendgrid_api_key": "SG.k", "sendgrid_host": "https://sendgrid.example"}
    with pytest.raises(MailerConfigurationError, match="SHOPMAIL_COUPON_SECRET"):
        make_sender(_bare(**key))
    with pytest.raises(MailerConfigurationError, match="SHOPMAIL_SENDER_EMAIL"):
        make_sender(_bare(**key, **{**production_values(), "sender_email": DEFAULT_SENDER_EMAIL}))
    make_sender(_bare(**key, **production_values())).close()
    # the demo's providers work with the shipped defaults, no setup
    assert isinstance(make_sender(_bare(outbox_dir=tmp_path / "out")), FileOutboxSender)
    assert isinstance(make_sender(_bare(mail_provider="memory")), InMemorySender)


def test_the_feedback_app_refuses_to_serve_with_a_demo_secret(no_shopmail_env, monkeypatch) -> None:
    served: list[object] = []
    monkeypatch.setattr(feedback_app.uvicorn, "run", lambda *a, **k: served.append(a))
    with pytest.raises(DemoSettingsError, match="feedback app: .* SHOPMAIL_COUPON_SECRET") as caught:
        feedback_app.serve(_bare(unsubscribe_secret="a-real-secret-0123"))  # coupon secret still demo
    assert "SHOPMAIL_UNSUBSCRIBE_SECRET" not in str(caught.value)
    with pytest.raises(SystemExit) as caught:
        feedback_app.main(["--port", "1"])
    assert caught.value.code == 2
    assert served == []


def test_cli_refuses_demo_values_before_any_work(settings: Settings, monkeypatch, tmp_path: Path) -> None:
    from shopmail.cli import get_settings

    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect"))
    monkeypatch.delenv("SHOPMAIL_COUPON_SECRET")
    monkeypatch.setenv("SHOPMAIL_MAIL_PROVIDER", "sendgrid")
    monkeypatch.setenv("SHOPMAIL_SENDGRID_API_KEY", "SG.k")
    get_settings.cache_clear()
    runner = CliRunner()
    for args in (["feedback-app", "--port", "1"], ["run", "birthday"], ["poll"], ["demo"], ["serve"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 2, (args, result.output)
        assert "export SHOPMAIL_COUPON_SECRET=$(python -c" in result.output
        assert "SHOPMAIL_UNSUBSCRIBE_SECRET=" not in result.output  # set by the fixture: fine
    assert not (settings.data_dir / "state.sqlite").exists()  # refused before touching anything


# --- 2. defaults that cannot reach a stranger -----------------------------------------------------


def test_default_addresses_and_links_use_reserved_names(no_shopmail_env) -> None:
    from shopmail.devtools.demo_shop import EMAIL_DOMAINS, SHOP_URL

    demo = _bare()
    for value in (
        demo.sender_email,
        demo.support_email,
        demo.shop_url,
        demo.unsubscribe_url,
        SHOP_URL,
        *demo.social_links.values(),
    ):
        host = value.split("@")[-1].split("://")[-1].split("/")[0]
        assert host.endswith(RESERVED), value
    assert all(domain.endswith(".example") for domain, _ in EMAIL_DOMAINS)


def test_no_shipped_file_names_a_real_example_domain() -> None:
    root = Path(__file__).resolve().parent.parent
    found = [
        str(path.relative_to(root))
        for folder in ("config", "shopmail", "flows", "tasks", "segments", "email_templates", "tests", "docs")
        for path in (root / folder).rglob("*")
        if path.is_file()
        and path.suffix in {".py", ".toml", ".j2", ".yaml", ".md"}
        and path.name != Path(__file__).name
        and "example.ru" in path.read_text(encoding="utf-8", errors="replace").lower()
    ]
    assert found == []


# --- 3. redaction ----------------------------------------------------------------------------------


def test_redact_hides_codes_tokens_url_passwords_and_registered_secrets() -> None:
    code = coupon_code("secret", "k", "BDAY")
    url = "postgresql+psycopg://shop:p%40ss@w0rd@127.0.0.1:5432/shop"
    text = f"failed for {code} at {url} via https://x.example/u?token=abc.def; key SG.very-secret-key"
    clean = redact(text, secrets={"SG.very-secret-key"})
    assert code not in clean and "BDAY-…" in clean
    assert "p%40ss" not in clean and "w0rd" not in clean and "shop:***@127.0.0.1:5432/shop" in clean
    assert "abc.def" not in clean and "token=…" in clean
    assert "SG.very-secret-key" not in clean
    plain = "https://shop.example:8443/p/1 and mail a@b.example; order 123-4567"
    assert redact(plain, secrets=()) == plain


def test_secret_values_cover_db_passwords_in_every_spelling(no_shopmail_env) -> None:
    configured = _bare(
        **production_values(),
        shop_db_url="postgresql+psycopg://shop:p%40ss%2Fword@db/shop",
        sendgrid_api_key="SG.abcdef",
    )
    values = secret_values(configured)
    assert {"p@ss/word", "p%40ss%2Fword", "SG.abcdef", "test-coupon-secret"} <= values
    assert safe_url(configured.shop_url_resolved) == "postgresql+psycopg://shop:***@db/shop"
    for written in ("p@ss@w/rd", "p%40ss", "p:ss"):  # raw '@' and '/' too: they must not leak
        assert (
            safe_url(f"postgresql://shop:{written}@db:5432/shop?x=1")
            == "postgresql://shop:***@db:5432/shop?x=1"
        )
    assert safe_url("sqlite:////var/lib/shopmail/state.sqlite") == "sqlite:////var/lib/shopmail/state.sqlite"
    assert safe_url("postgresql://shop@db/shop") == "postgresql://shop@db/shop"


def test_a_log_record_with_a_secret_is_rewritten_with_its_traceback(monkeypatch) -> None:
    code = coupon_code("secret", "k", "BDAY")
    monkeypatch.setattr(redaction, "_registered", frozenset({"hunter2-password"}))
    try:
        raise RuntimeError(f"insert of {code} failed with hunter2-password")
    except RuntimeError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "batch %s", ("b1",), None)
        import sys

        record.exc_info = sys.exc_info()
    redact_log_record(record)
    message = record.getMessage()
    assert message.startswith("batch b1") and "RuntimeError" in message and "BDAY-…" in message
    assert code not in message and "hunter2-password" not in message and record.exc_info is None
    harmless = logging.LogRecord("x", logging.INFO, __file__, 1, "sent %d", (3,), None)
    assert redact_log_record(harmless).args == (3,)  # nothing to hide: left as it was


def test_engines_hide_statement_parameters(tmp_path: Path) -> None:
    engine = get_engine(f"sqlite:///{tmp_path / 'p.sqlite'}")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (code TEXT PRIMARY KEY)"))
        conn.execute(text("INSERT INTO t VALUES (:c)"), {"c": "BDAY-SECR-ETCO-DE22"})
        with pytest.raises(Exception) as caught:
            conn.execute(text("INSERT INTO t VALUES (:c)"), {"c": "BDAY-SECR-ETCO-DE22"})
    assert "BDAY-SECR-ETCO-DE22" not in str(caught.value)
    assert "hidden due to hide_parameters" in str(caught.value)


# --- 5b. private files --------------------------------------------------------------------------


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_sqlite_files_and_their_folders_are_private(tmp_path: Path) -> None:
    from shopmail.devtools.demo_shop import generate_demo_shop
    from shopmail.state import state_db

    state_file = tmp_path / "fresh" / "state" / "state.sqlite"
    state = state_db.upgrade(f"sqlite:///{state_file}")
    with state.begin() as conn:  # a write: the WAL and shared-memory files exist now
        conn.execute(text("CREATE TABLE probe (x INTEGER)"))
        wal, shm = (state_file.with_name(state_file.name + suffix) for suffix in ("-wal", "-shm"))
        assert wal.exists() and shm.exists()
        assert {_mode(state_file), _mode(wal), _mode(shm)} == {0o600}
    assert _mode(state_file) == 0o600
    assert _mode(state_file.parent) == _mode(tmp_path / "fresh") == 0o700
    shop_file = tmp_path / "shop" / "demo_shop.sqlite"
    generate_demo_shop(f"sqlite:///{shop_file}", customers=20, seed=1)
    assert _mode(shop_file) == 0o600 and _mode(shop_file.parent) == 0o700
    outbox = FileOutboxSender(tmp_path / "outbox")
    assert _mode(outbox.folder) == 0o700


def test_the_cli_data_folder_is_private(no_shopmail_env, tmp_path: Path) -> None:
    assert CliRunner().invoke(app, ["campaigns"]).exit_code == 0
    assert _mode(tmp_path / "data") == 0o700


# --- 5a. the webhook answers before reading the body -------------------------------------------


@pytest.fixture
def webhook_url(settings: Settings, tmp_path: Path) -> Iterator[str]:
    from cryptography.hazmat.primitives.asymmetric import ec

    from shopmail.state import state_db
    from tests.test_feedback import _public_key_b64

    key = _public_key_b64(ec.generate_private_key(ec.SECP256R1()))
    configured = settings.model_copy(update={"sendgrid_webhook_public_key": SecretStr(key)})
    state = state_db.upgrade(f"sqlite:///{tmp_path / 'state.sqlite'}")
    with running_feedback_app(configured, state, max_webhook_bytes=1024 * 1024) as running:
        yield running.url


def _raw_post(url: str, headers: dict[str, str], declared: int, sent: bytes) -> tuple[int, float]:
    """POST declaring `declared` body bytes but sending only `sent`; (status, seconds to answer).
    A server that waited for the whole body would never answer (the socket times out)."""
    host, port = url.removeprefix("http://").split(":")
    lines = ["POST /sendgrid/events HTTP/1.1", f"Host: {host}", f"Content-Length: {declared}"]
    lines += [f"{k}: {v}" for k, v in headers.items()] + ["Content-Type: application/json", "", ""]
    started = time.monotonic()
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall("\r\n".join(lines).encode() + sent)
        answer = sock.recv(4096)
    return int(answer.split(b" ", 2)[1]), time.monotonic() - started


def test_a_webhook_request_without_signature_headers_is_refused_before_its_body_is_read(
    webhook_url: str,
) -> None:
    status, seconds = _raw_post(webhook_url, {}, declared=512 * 1024 * 1024, sent=b"[" + b" " * 65536)
    assert status == 403 and seconds < 4
    only_one = {SIGNATURE_HEADER: "c2ln"}
    assert _raw_post(webhook_url, only_one, declared=512 * 1024 * 1024, sent=b"[")[0] == 403


def test_a_signed_webhook_request_declaring_too_large_a_body_is_refused_unread(webhook_url: str) -> None:
    headers = {SIGNATURE_HEADER: "c2ln", TIMESTAMP_HEADER: str(int(time.time()))}
    status, seconds = _raw_post(webhook_url, headers, declared=2 * 1024 * 1024, sent=b"[")
    assert status == 413 and seconds < 4


def test_a_large_unsigned_body_sent_in_full_gets_403(webhook_url: str) -> None:
    import httpx

    body = b"[" + b"{}," * 1_000_000 + b"{}]"  # 3 MB, over the 1 MB limit
    try:
        response = httpx.post(f"{webhook_url}/sendgrid/events", content=body, timeout=10)
    except httpx.TransportError:  # the server answered and closed while the client still wrote
        return
    assert response.status_code == 403


# --- 5c. demo-data never drops tables it did not create ------------------------------------------


def test_demo_data_refuses_a_foreign_database_unless_forced(
    settings: Settings, monkeypatch, tmp_path: Path
) -> None:
    from shopmail.cli import get_settings, is_demo_shop_url

    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect"))
    assert is_demo_shop_url(settings.shop_url_resolved, settings.data_dir)
    gen = _scratch_database(SERVERS["postgresql"])
    url = next(gen)
    try:
        with create_engine(url).begin() as conn:
            conn.execute(text("CREATE TABLE customers (id INTEGER PRIMARY KEY, email TEXT)"))
            conn.execute(text("INSERT INTO customers VALUES (1, 'owner@shop.example')"))
        monkeypatch.setenv("SHOPMAIL_SHOP_DB_URL", url)
        get_settings.cache_clear()
        assert not is_demo_shop_url(url, settings.data_dir)
        result = CliRunner().invoke(app, ["demo-data", "--customers", "10"])
        assert result.exit_code == 2
        assert "Refusing to overwrite" in result.output and "--force" in result.output
        check = create_engine(url)
        with check.connect() as conn:
            assert conn.execute(text("SELECT email FROM customers")).all() == [("owner@shop.example",)]
            assert inspect(conn).get_table_names() == ["customers"]
        check.dispose()

        forced = CliRunner().invoke(app, ["demo-data", "--customers", "10", "--force"])
        assert forced.exit_code == 0, forced.output
        check = create_engine(url)
        with check.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM customers")).scalar_one() == 10
        check.dispose()
    finally:
        get_settings.cache_clear()
        next(gen, None)
