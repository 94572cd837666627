"""The whole feedback loop on one machine: the local SendGrid server (with recipients who open,
click, bounce, unsubscribe) posting its signed webhook to the real feedback app over HTTP.

`with local_loop(settings) as loop:` starts both in background threads, wires them (the sink's
verification key in the app's settings, the app's `/sendgrid/events` as the sink's webhook, the
app's `/unsubscribe` as the mails' one-click address) and gives `loop.env`: the `SHOPMAIL_*`
settings a run needs to send through the sink. `loop.drain()` waits until every event was posted.
Used by `shopmail demo` and the tests; nothing in it reaches beyond 127.0.0.1.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from pydantic import SecretStr
from sqlalchemy import Engine

from config.settings import Settings
from shopmail.devtools.sendgrid_sink import RunningSink, running_sink
from shopmail.devtools.sink_engagement import EngagementConfig
from shopmail.devtools.sink_webhook import WebhookConfig
from shopmail.web.feedback_app import RunningFeedbackApp, running_feedback_app

LOCAL_API_KEY = "SG.local-loop"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class LocalLoop:
    sink: RunningSink
    app: RunningFeedbackApp
    env: dict[str, str]

    def drain(self, timeout_s: float = 120.0, quiet_s: float = 0.5) -> None:
        """Wait until the sink has posted every scheduled event (and unsubscribe) and the queue stayed
        empty for `quiet_s`; TimeoutError after `timeout_s`."""
        webhook = self.sink.store.webhook
        deadline = time.monotonic() + timeout_s
        quiet_since = None
        while time.monotonic() < deadline:
            if webhook.pending() == 0:
                quiet_since = quiet_since or time.monotonic()
                if time.monotonic() - quiet_since >= quiet_s:
                    return
            else:
                quiet_since = None
            time.sleep(0.1)
        raise TimeoutError(f"{webhook.pending()} webhook events still pending after {timeout_s} s")

    def truth(self) -> dict[str, Any]:
        """What the sink's recipients did (`Truth.as_json`)."""
        return self.sink.store.webhook.truth.as_json()


@contextmanager
def local_loop(
    settings: Settings,
    engine: Engine | None = None,
    engagement: EngagementConfig | None = None,
    webhook: WebhookConfig | None = None,
) -> Iterator[LocalLoop]:
    """The sink and the feedback app (over `engine`, default: the settings' state DB), wired."""
    engagement = engagement or EngagementConfig(enabled=True)
    with running_sink() as sink:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        key = sink.store.webhook.public_key
        app_settings = settings.model_copy(
            update={
                "sendgrid_webhook_public_key": SecretStr(key),
                "unsubscribe_url": f"{base}/unsubscribe",
                "feedback_base_url": base,
                "allow_http_links": True,  # the loop's feedback app is on loopback http
            }
        )
        with running_feedback_app(app_settings, engine, port=port) as app:
            config = webhook or WebhookConfig(delay_s=0.2, jitter_s=1.0, duplicate_rate=0.1, seed=1)
            sink.store.webhook.configure(WebhookConfig(f"{app.url}/sendgrid/events", *_tail(config)))
            sink.store.webhook.configure_engagement(engagement)
            env = {
                "SHOPMAIL_MAIL_PROVIDER": "sendgrid",
                "SHOPMAIL_SENDGRID_HOST": sink.url,
                "SHOPMAIL_SENDGRID_API_KEY": LOCAL_API_KEY,
                "SHOPMAIL_UNSUBSCRIBE_URL": f"{base}/unsubscribe",
                "SHOPMAIL_FEEDBACK_BASE_URL": base,
                "SHOPMAIL_ALLOW_HTTP_LINKS": "true",  # the loop's feedback app is on loopback http
                "SHOPMAIL_SENDGRID_WEBHOOK_PUBLIC_KEY": key,
            }
            yield LocalLoop(sink, app, env)


def _tail(config: WebhookConfig) -> tuple[float, float, float, int | None]:
    return config.delay_s, config.jitter_s, config.duplicate_rate, config.seed
