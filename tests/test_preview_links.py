"""Signed, expiring links to saved mail previews, served by the feedback app (`GET /preview/<name>`):
an authentic unexpired link shows the sanitized HTML with a locked-down CSP; a forged, altered,
expired, foreign-key or path-traversing link is a 404; the artifacts carry the link."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from config.settings import Settings
from shopmail.mail.links import preview_link, preview_signature, unsubscribe_token
from shopmail.mail.previews import preview_folder, preview_url
from shopmail.web.feedback_app import PREVIEW_HEADERS, running_feedback_app
from tests.conftest import FEEDBACK_ORIGIN

CSP = "default-src 'none'; img-src https: data:; style-src 'unsafe-inline'"


@pytest.fixture
def client(settings: Settings) -> Iterator[httpx.Client]:
    """The feedback app (non-demo secrets from the `settings` fixture) on a local port."""
    with running_feedback_app(settings) as app, httpx.Client(base_url=app.url, timeout=10) as http:
        yield http


def _saved(settings: Settings, name: str = "wakeup-run1.html", html: str = "<p>Hello</p>") -> Path:
    folder = preview_folder(settings)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(html, encoding="utf-8")
    return path


def _path(link: str) -> str:
    parts = urlsplit(link)
    return f"{parts.path}?{parts.query}"


def _assert_locked_down(response) -> None:
    assert response.headers["content-security-policy"] == CSP
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["cache-control"] == "private, no-store"


def test_a_signed_link_shows_the_preview_with_locked_down_headers(settings: Settings, client) -> None:
    path = _saved(settings)
    link, expires = preview_url(settings, path)
    assert link.startswith(f"{FEEDBACK_ORIGIN}/preview/wakeup-run1.html?exp=")  # unsubscribe_url's origin
    assert 6.9 * 86400 < expires.timestamp() - time.time() <= 7 * 86400
    response = client.get(_path(link))
    assert response.status_code == 200 and response.text == "<p>Hello</p>"
    assert response.headers["content-type"].startswith("text/html")
    _assert_locked_down(response)
    assert PREVIEW_HEADERS["Content-Security-Policy"] == CSP


def test_the_base_url_and_lifetime_are_settings(settings: Settings) -> None:
    configured = settings.model_copy(
        update={"feedback_base_url": "https://mail.shop.example/fb/", "preview_link_days": 1}
    )
    link, expires = preview_url(configured, Path("x.html"), now=1_000_000)
    assert link.startswith("https://mail.shop.example/fb/preview/x.html?exp=1086400&sig=")
    assert expires.timestamp() == 1_086_400


def test_forged_altered_expired_and_foreign_links_are_404(settings: Settings, client) -> None:
    path = _saved(settings)
    _saved(settings, "other.html", "<p>other</p>")
    secret = settings.unsubscribe_secret.get_secret_value()
    good = _path(preview_url(settings, path)[0])
    query = parse_qs(urlsplit(good).query)
    exp, sig = query["exp"][0], query["sig"][0]
    past = int(time.time()) - 1
    bad = [
        f"/preview/wakeup-run1.html?exp={exp}&sig={'A' * len(sig)}",  # forged
        f"/preview/wakeup-run1.html?exp={int(exp) + 86400}&sig={sig}",  # expiry moved
        f"/preview/other.html?exp={exp}&sig={sig}",  # another file's link
        "/preview/wakeup-run1.html",  # no signature
        f"/preview/wakeup-run1.html?exp={exp}",
        _path(preview_link("https://x", secret, "wakeup-run1.html", past)),  # expired
        _path(preview_link("https://x", "another-secret", "wakeup-run1.html", int(exp))),  # other key
        f"/preview/wakeup-run1.html?exp={exp}&sig={unsubscribe_token(secret, 1, 'wakeup')}",
        _path(preview_link("https://x", secret, "missing.html", int(exp))),  # signed, no such file
    ]
    for url in bad:
        response = client.get(url)
        assert response.status_code == 404, url
        assert "Hello" not in response.text
        _assert_locked_down(response)
    assert client.get(good).status_code == 200


def test_no_file_outside_the_previews_folder(settings: Settings, client) -> None:
    _saved(settings)
    secret = settings.unsubscribe_secret.get_secret_value()
    exp = int(time.time()) + 3600
    outside = settings.data_dir / "secret.html"
    outside.write_text("<p>state</p>", encoding="utf-8")
    (preview_folder(settings) / "link.html").symlink_to(outside)  # a symlink pointing out
    (preview_folder(settings) / "notes.txt").write_text("x", encoding="utf-8")
    for name in [
        "../secret.html",
        "..%2Fsecret.html",
        "%2E%2E%2Fsecret.html",
        "link.html",
        "notes.txt",
        "..",
    ]:
        signed = f"/preview/{name}?exp={exp}&sig={preview_signature(secret, name, exp)}"
        response = client.get(signed)
        assert response.status_code == 404, name
        assert "state" not in response.text
    unquoted = "../secret.html"  # signed for the decoded name too
    response = client.get(
        f"/preview/..%2Fsecret.html?exp={exp}&sig={preview_signature(secret, unquoted, exp)}"
    )
    assert response.status_code == 404 and "state" not in response.text
