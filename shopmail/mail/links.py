"""UTM tagging, signed unsubscribe links and signed links to saved mail previews."""

from __future__ import annotations

import base64
import hashlib
import hmac
from functools import lru_cache
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit


@lru_cache(maxsize=65536)  # the same shop and product links recur in every mail of a run
def add_utm(url: str, *, source: str, medium: str, campaign: str, content: str | None = None) -> str:
    """`url` with utm_* parameters set (existing utm_* replaced, other parameters kept)."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if not k.startswith("utm_")]
    query += [("utm_source", source), ("utm_medium", medium), ("utm_campaign", campaign)]
    if content:
        query.append(("utm_content", content))
    return urlunsplit(parts._replace(query=urlencode(query)))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def unsubscribe_token(secret: str, customer_id: int, campaign: str) -> str:
    """HMAC-SHA256 signed token `<payload>.<signature>` naming customer and campaign (no email)."""
    payload = _b64(f"{int(customer_id)}:{campaign}".encode())
    signature = hmac.new(secret.encode(), payload.encode(), hashlib.sha256).digest()
    return f"{payload}.{_b64(signature[:16])}"


def verify_unsubscribe_token(secret: str, token: str) -> tuple[int, str] | None:
    """(customer_id, campaign) if the token is authentic, else None."""
    try:
        payload, signature = token.split(".", 1)
        expected = hmac.new(secret.encode(), payload.encode(), hashlib.sha256).digest()[:16]
        if not hmac.compare_digest(expected, _unb64(signature)):
            return None
        customer, campaign = _unb64(payload).decode().split(":", 1)
        return int(customer), campaign
    except (ValueError, UnicodeDecodeError):
        return None


def unsubscribe_prefix(base_url: str) -> str:
    """What every unsubscribe link of `base_url` starts with; the token follows."""
    return f"{base_url}{'&' if '?' in base_url else '?'}token="


def unsubscribe_link(base_url: str, secret: str, customer_id: int, campaign: str) -> str:
    return unsubscribe_prefix(base_url) + unsubscribe_token(secret, customer_id, campaign)


PREVIEW_KEY_PURPOSE = b"shopmail/preview-link/v1"  # a key of its own, derived from the unsubscribe secret


def _preview_key(secret: str) -> bytes:
    return hmac.new(secret.encode(), PREVIEW_KEY_PURPOSE, hashlib.sha256).digest()


def preview_signature(secret: str, name: str, expires: int) -> str:
    """HMAC-SHA256 over the preview file name and its expiry (Unix seconds), with a key derived from
    `secret` for this purpose only (an unsubscribe token never verifies as a preview link)."""
    message = f"preview:{name}:{int(expires)}".encode()
    return _b64(hmac.new(_preview_key(secret), message, hashlib.sha256).digest()[:20])


def verify_preview_signature(secret: str, name: str, expires: str, signature: str, now: float) -> bool:
    """True if `signature` signs `name` and `expires` and that moment is still ahead of `now`."""
    if not expires.isdigit() or len(expires) > 12 or len(signature) > 64:
        return False
    if int(expires) <= now:
        return False
    return hmac.compare_digest(preview_signature(secret, name, int(expires)), signature)


def preview_link(base_url: str, secret: str, name: str, expires: int) -> str:
    """`<base_url>/preview/<name>?exp=...&sig=...`: a signed link to a saved preview that expires."""
    query = urlencode({"exp": int(expires), "sig": preview_signature(secret, name, expires)})
    return f"{base_url.rstrip('/')}/preview/{quote(name, safe='')}?{query}"
