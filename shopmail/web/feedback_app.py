"""Public HTTP endpoints for feedback: one-click unsubscribe and the SendGrid event webhook.

- `GET /unsubscribe?token=...`: a confirmation page (ru + en) whose button POSTs back (400 for a
  forged token); a GET never unsubscribes, because link scanners prefetch links;
- `POST /unsubscribe?token=...`: RFC 8058 one-click (`List-Unsubscribe=One-Click` body) and the
  page's form; 200 when recorded (idempotent), 400 for a missing or forged token;
- `POST /sendgrid/events`: the event webhook, ECDSA-verified (403 on a missing, invalid or stale
  signature, 400 unless the body is a JSON list), stored by `feedback.record_events`; a request
  without both signature headers (403) or declaring a body over the limit (413) is answered before
  a byte of its body is read;
- `POST /sendgrid/inbound`: SendGrid Inbound Parse posts of mails to the unsubscribe mailbox (RFC 2369
  `mailto:` in List-Unsubscribe, shopmail/mail/unsubscribe_mail.py): the signed token in the subject
  unsubscribes its customer, as the link would; always 200 (`{"unsubscribed": true|false}`), since
  SendGrid retries anything else for three days;
- `GET /preview/{name}?exp=...&sig=...`: a saved sample mail (sanitized HTML from
  `<data_dir>/previews/`) for the links in the Prefect artifacts; HMAC-signed with a key derived
  from the unsubscribe secret, expiring (`preview_link_days`); 404 for anything else; served with a
  CSP that allows no script, no frame and no request but https/data images;
- `GET /healthz`.

Run it: `python -m shopmail.web.feedback_app --port 8030` or `serve(settings, ...)` (both refuse the
shipped demo secrets); in tests:
`with running_feedback_app(settings, engine) as app:`. Access logs are off: URLs carry tokens.
"""

from __future__ import annotations

import argparse
import html
import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import parse_qsl, quote

import uvicorn
from sendgrid.helpers.eventwebhook import EventWebhook
from sendgrid.helpers.eventwebhook.eventwebhook_header import EventWebhookHeader
from sqlalchemy import Engine
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from config.settings import (
    DemoSettingsError,
    Settings,
    demo_values_in_use,
    get_settings,
    require_production_settings,
)
from shopmail.mail.links import unsubscribe_prefix, verify_unsubscribe_token
from shopmail.mail.previews import find_preview
from shopmail.mail.unsubscribe_mail import inbound_subject, token_in_subject
from shopmail.redaction import install_log_redaction
from shopmail.state import state_db
from shopmail.state.feedback import (
    DEFAULT_MAX_WEBHOOK_AGE_S,
    MAX_TOKEN_CHARS,
    record_events,
    unsubscribe,
    webhook_authentic,
    webhook_verifier,
)

log = logging.getLogger(__name__)

SIGNATURE_HEADER = EventWebhookHeader.SIGNATURE  # X-Twilio-Email-Event-Webhook-Signature
TIMESTAMP_HEADER = EventWebhookHeader.TIMESTAMP  # X-Twilio-Email-Event-Webhook-Timestamp
DEFAULT_MAX_WEBHOOK_BYTES = 16 * 1024 * 1024
MAX_FORM_BYTES = 4096
MAX_INBOUND_BYTES = 1024 * 1024  # an unsubscribe mail is small; a bigger post is answered, not read
MAILTO_SOURCE = "mailto"
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",  # the token is in the URL
    "X-Robots-Tag": "noindex",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'",
}

PREVIEW_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; img-src https: data:; style-src 'unsafe-inline'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",  # the signature is in the URL
    "Cache-Control": "private, no-store",
    "X-Robots-Tag": "noindex",
}
PREVIEW_NOT_FOUND = "not found (an unknown, altered or expired preview link)\n"

_PAGE = """<!doctype html>
<html lang="ru"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><meta name="robots" content="noindex">
<title>{title}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem;color:#222}}
p[lang=en]{{color:#666}} button{{font-size:1rem;padding:.6rem 1.2rem;cursor:pointer}}</style>
</head><body><main>{body}</main></body></html>
"""
_CONFIRM = """<h1>Отписаться от рассылки?</h1>
<p>Вы перестанете получать рекламные письма магазина «{shop}».
Письма о заказах будут приходить как прежде.</p>
<p lang="en">Unsubscribe from {shop} marketing emails? Order and service emails will still arrive.</p>
<form method="post" action="{action}"><input type="hidden" name="List-Unsubscribe" value="One-Click">
<button type="submit">Отписаться · Unsubscribe</button></form>"""
_DONE = """<h1>Вы отписались от рассылки</h1>
<p>Рекламные письма магазина «{shop}» больше не будут приходить.</p>
<p lang="en">You are unsubscribed from {shop} marketing emails.</p>"""
_INVALID = """<h1>Ссылка недействительна</h1>
<p>Откройте ссылку для отписки из последнего письма ещё раз.</p>
<p lang="en">This unsubscribe link is not valid. Please use the link from a recent email.</p>"""


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(_PAGE.format(title=title, body=body), status_code=status, headers=PAGE_HEADERS)


def _declared_length(request: Request) -> int:
    """The Content-Length header as a number (0 when absent or not a number; the body read is
    capped anyway)."""
    declared = request.headers.get("content-length", "").strip()
    return int(declared) if declared.isdigit() else 0


async def _read_body(request: Request, limit: int) -> bytes | None:
    """The raw body, or None if it is (or says it is) longer than `limit` bytes."""
    if _declared_length(request) > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


async def _unsubscribe_token(request: Request) -> str | None:
    """The token from the query string, else from a form-encoded body (`token=`)."""
    token = request.query_params.get("token")
    if token:
        return token
    body = await _read_body(request, MAX_FORM_BYTES)
    if not body or "form-urlencoded" not in request.headers.get("content-type", ""):
        return None
    return dict(parse_qsl(body.decode("utf-8", "replace"))).get("token")


def _webhook_verifier(settings: Settings) -> EventWebhook | None:
    key = settings.sendgrid_webhook_public_key
    if key is None or not key.get_secret_value().strip():
        log.warning("no sendgrid_webhook_public_key: the event webhook rejects every request")
        return None
    return webhook_verifier(key.get_secret_value())


def create_app(
    settings: Settings,
    engine: Engine | None = None,
    *,
    max_webhook_age_s: float = DEFAULT_MAX_WEBHOOK_AGE_S,
    max_webhook_bytes: int = DEFAULT_MAX_WEBHOOK_BYTES,
) -> Starlette:
    """The ASGI app over the state DB `engine` (default: the migrated DB of `settings`).

    `max_webhook_age_s`: webhook requests signed longer ago (or further ahead) are replays: 403.
    """
    engine = engine if engine is not None else state_db.upgrade(settings.state_url_resolved)
    secret = settings.unsubscribe_secret.get_secret_value()
    if "unsubscribe_secret" in demo_values_in_use(settings):  # `serve` refuses it; tests may not
        log.warning("unsubscribe_secret is the development default: set SHOPMAIL_UNSUBSCRIBE_SECRET")
    verifier = _webhook_verifier(settings)
    unsubscribe_links = unsubscribe_prefix(settings.unsubscribe_url)
    shop = html.escape(settings.shop_name)

    async def confirm_page(request: Request) -> Response:
        token = request.query_params.get("token", "")
        if len(token) > MAX_TOKEN_CHARS or verify_unsubscribe_token(secret, token) is None:
            return _page("Ссылка недействительна · Invalid link", _INVALID, 400)
        action = html.escape(f"?token={quote(token, safe='')}")
        return _page("Отписка · Unsubscribe", _CONFIRM.format(shop=shop, action=action))

    async def unsubscribe_post(request: Request) -> Response:
        token = await _unsubscribe_token(request)
        if not await run_in_threadpool(unsubscribe, engine, secret, token):
            return _page("Ссылка недействительна · Invalid link", _INVALID, 400)
        return _page("Вы отписались · Unsubscribed", _DONE.format(shop=shop))

    async def sendgrid_events(request: Request) -> Response:
        signature = request.headers.get(SIGNATURE_HEADER)
        timestamp = request.headers.get(TIMESTAMP_HEADER)
        if verifier is None or not signature or not timestamp:  # decided before reading a byte
            return JSONResponse({"error": "forbidden"}, status_code=403)
        if _declared_length(request) > max_webhook_bytes:
            return JSONResponse({"error": "payload too large"}, status_code=413)
        body = await _read_body(request, max_webhook_bytes)
        if body is None:
            return JSONResponse({"error": "payload too large"}, status_code=413)
        if not webhook_authentic(verifier, body, signature, timestamp, max_age_s=max_webhook_age_s):
            return JSONResponse({"error": "forbidden"}, status_code=403)
        try:
            events = json.loads(body)
        except ValueError:
            events = None
        if not isinstance(events, list):
            return JSONResponse({"error": "expected a JSON array of events"}, status_code=400)
        summary = await run_in_threadpool(record_events, engine, events, unsubscribe_links)
        return JSONResponse(summary.as_dict())

    async def sendgrid_inbound(request: Request) -> Response:
        # SendGrid Inbound Parse: a mail to the unsubscribe mailbox. Always 2xx (anything else is retried
        # for 3 days); the signed token in its subject is the whole authorisation, as for the link.
        body = await _read_body(request, MAX_INBOUND_BYTES)
        subject = inbound_subject(body, request.headers.get("content-type", "")) if body else None
        token = token_in_subject(subject)
        done = bool(token) and await run_in_threadpool(unsubscribe, engine, secret, token, MAILTO_SOURCE)
        return JSONResponse({"unsubscribed": done})

    async def mail_preview(request: Request) -> Response:
        name = request.path_params["name"]
        expires = request.query_params.get("exp", "")
        signature = request.query_params.get("sig", "")
        path = find_preview(settings, name, expires, signature, time.time())
        if path is None:
            return PlainTextResponse(PREVIEW_NOT_FOUND, status_code=404, headers=PREVIEW_HEADERS)
        body = await run_in_threadpool(path.read_bytes)
        return Response(body, media_type="text/html; charset=utf-8", headers=PREVIEW_HEADERS)

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok")

    app = Starlette(
        routes=[
            Route("/unsubscribe", confirm_page, methods=["GET"]),
            Route("/unsubscribe", unsubscribe_post, methods=["POST"]),
            Route("/sendgrid/events", sendgrid_events, methods=["POST"]),
            Route("/sendgrid/inbound", sendgrid_inbound, methods=["POST"]),
            Route("/preview/{name}", mail_preview, methods=["GET"]),
            Route("/healthz", healthz, methods=["GET"]),
        ]
    )
    app.state.engine = engine
    return app


def serve(settings: Settings, host: str = "127.0.0.1", port: int = 8030) -> None:
    """Migrate the state DB and serve the app in the foreground (blocks). Refuses to start
    (`DemoSettingsError`) with a shipped demo secret: the app is public."""
    require_production_settings(settings, "the feedback app")
    install_log_redaction(settings)
    engine = state_db.upgrade(settings.state_url_resolved)
    uvicorn.run(create_app(settings, engine), host=host, port=port, access_log=False)


@contextmanager
def running_app(
    app: ASGIApp, host: str = "127.0.0.1", name: str = "asgi-app", port: int = 0
) -> Iterator[str]:
    """Serve any ASGI app on `port` (default: a free one) in a background thread; yields its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    config = uvicorn.Config(
        app, log_level="warning", access_log=False, lifespan="off", timeout_graceful_shutdown=2
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name=name, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not start")
            time.sleep(0.005)
        yield f"http://{host}:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=5)
        sock.close()


@dataclass(frozen=True, slots=True)
class RunningFeedbackApp:
    """The feedback app serving in a background thread."""

    url: str
    engine: Engine


@contextmanager
def running_feedback_app(
    settings: Settings,
    engine: Engine | None = None,
    *,
    max_webhook_age_s: float = DEFAULT_MAX_WEBHOOK_AGE_S,
    max_webhook_bytes: int = DEFAULT_MAX_WEBHOOK_BYTES,
    port: int = 0,
) -> Iterator[RunningFeedbackApp]:
    """`with running_feedback_app(settings) as app:` -> `app.url`, `app.engine`; stopped on exit."""
    app = create_app(
        settings, engine, max_webhook_age_s=max_webhook_age_s, max_webhook_bytes=max_webhook_bytes
    )
    with running_app(app, name="feedback-app", port=port) as url:
        yield RunningFeedbackApp(url, app.state.engine)


def main(argv: list[str] | None = None) -> None:
    """Serve the feedback endpoints in the foreground."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8030)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    try:
        serve(get_settings(), args.host, args.port)
    except DemoSettingsError as exc:
        parser.exit(2, f"{exc}\n")


if __name__ == "__main__":
    main()
