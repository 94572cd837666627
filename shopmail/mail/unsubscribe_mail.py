"""Unsubscribing by mail (RFC 2369 `mailto:`), beside the https link and RFC 8058's one-click POST.

Marketing mail carries `List-Unsubscribe: <https://...?token=T>, <mailto:MAILBOX?subject=unsubscribe%20T>`:
a mail client that unsubscribes by mail sends a mail to the unsubscribe mailbox whose subject holds the
same signed token as the link. The mailbox's domain has its MX record at SendGrid, whose Inbound Parse
posts each mail it receives (multipart/form-data, the subject in the `subject` field, or the whole
message in `email` when "POST the raw, full MIME message" is on) to the feedback app's
`/sendgrid/inbound`, which records the unsubscribe the token authorises (shopmail/web/feedback_app.py).
"""

from __future__ import annotations

import re
from email import policy
from email.parser import BytesParser

SUBJECT_WORD = "unsubscribe"
_TOKEN_IN_SUBJECT = re.compile(SUBJECT_WORD + r"\s+([A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]{2,})", re.IGNORECASE)


def unsubscribe_mailto(mailbox: str, token: str) -> str:
    """The `mailto:` URI whose mail unsubscribes the token's customer (token: base64url and '.')."""
    return f"mailto:{mailbox}?subject={SUBJECT_WORD}%20{token}"


def list_unsubscribe(link: str, mailbox: str | None, token: str | None) -> str:
    """The `List-Unsubscribe` header: the https link (RFC 8058's one-click target) first, then the
    `mailto:` form when there is an unsubscribe mailbox."""
    if mailbox and token:
        return f"<{link}>, <{unsubscribe_mailto(mailbox, token)}>"
    return f"<{link}>"


def token_in_subject(subject: str | None) -> str | None:
    """The unsubscribe token in a mail's subject ("unsubscribe T", also after "Re:"), else None."""
    found = _TOKEN_IN_SUBJECT.search(subject or "")
    return found.group(1) if found else None


def inbound_subject(body: bytes, content_type: str) -> str | None:
    """The subject of the mail an Inbound Parse post carries (its `subject` field, else the Subject
    header of its raw `email` field); None if the body is not such a post."""
    if not content_type.lower().startswith("multipart/form-data"):
        return None
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    form = BytesParser(policy=policy.default).parsebytes(head + body)
    if not form.is_multipart():
        return None
    fields = {}
    for part in form.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if name in ("subject", "email") and name not in fields:
            fields[name] = part.get_payload(decode=True) or b""
    if "subject" in fields:
        return fields["subject"].decode("utf-8", "replace")
    if "email" in fields:
        return str(BytesParser(policy=policy.default).parsebytes(fields["email"]).get("Subject", ""))
    return None
