"""Saved mail previews (sanitized HTML in `<data_dir>/previews/`) and the signed, expiring links the
feedback app serves them under (`GET /preview/<name>?exp=...&sig=...`)."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from pathlib import Path

from config.settings import Settings
from shopmail.mail.links import preview_link, verify_preview_signature

PREVIEW_DIR = "previews"  # under the data dir, owner only: sample mails as HTML files
PREVIEW_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,200}\.html$")  # what save_mail_html writes


def preview_folder(settings: Settings) -> Path:
    return settings.data_dir / PREVIEW_DIR


def preview_url(settings: Settings, path: Path, now: float | None = None) -> tuple[str, datetime]:
    """The signed link to the saved preview `path` and when it expires (`preview_link_days`)."""
    expires = int((time.time() if now is None else now) + settings.preview_link_days * 86400)
    secret = settings.unsubscribe_secret.get_secret_value()
    link = preview_link(settings.feedback_base_url_resolved, secret, path.name, expires)
    return link, datetime.fromtimestamp(expires, UTC)


def find_preview(settings: Settings, name: str, expires: str, signature: str, now: float) -> Path | None:
    """The preview file a link names, if the link is authentic and unexpired and the file is a
    regular file directly inside the previews folder; else None."""
    if not PREVIEW_NAME.fullmatch(name) or ".." in name:
        return None
    secret = settings.unsubscribe_secret.get_secret_value()
    if not verify_preview_signature(secret, name, expires, signature, now):
        return None
    folder = preview_folder(settings).resolve()
    path = (folder / name).resolve()
    if path.parent != folder or not path.is_file():
        return None
    return path
