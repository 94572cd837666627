"""A sample mail as a marketer glances at it: subject, preheader (the inbox preview line) and the first
lines of its text, with a pointer to the full preview."""

from __future__ import annotations

import html as html_lib
import re

from shopmail.mailer.base import OutgoingMail
from shopmail.redaction import redact_tokens
from shopmail.run.vocabulary import Language, words

# the layouts' hidden preheader block (email_templates/_layouts/base.html.j2): text, then filler
_PREHEADER = re.compile(r"<div[^>]*display:\s*none[^>]*>(.*?)</div>", re.I | re.S)
_FILLER = re.compile(r"(&#8199;|&#65279;|&#847;|\u2007|\ufeff|\u034f)")
FIRST_LINES = 8


def preheader_of(html: str) -> str:
    """The preheader a mail's HTML carries (hidden, before the body); '' when it has none."""
    found = _PREHEADER.search(html or "")
    if not found:
        return ""
    text = _FILLER.split(re.sub(r"<[^>]+>", "", found.group(1)), maxsplit=1)[0]
    return " ".join(html_lib.unescape(text).split())


def first_lines(text: str, count: int = FIRST_LINES) -> list[str]:
    """The first `count` non-empty lines of a mail's text version (tokens redacted)."""
    lines = [line.rstrip() for line in redact_tokens(text or "").splitlines() if line.strip()]
    return lines[:count] + (["…"] if len(lines) > count else [])


def sample_markdown(mail: OutgoingMail, pointer: str, lang: Language | None = None) -> list[str]:
    """Markdown lines: subject, preheader, the first lines of the text, and where the full mail is."""
    out = [f"### {words('sample_mail', 'label', lang)}", ""]
    out += [f"**{words('subject', 'label', lang)}:** {mail.subject}", ""]
    preheader = preheader_of(mail.html)
    if preheader:
        out += [f"**{words('preheader', 'label', lang)}:** {preheader}", ""]
    out += ["```text", *first_lines(mail.text), "```", ""]
    if pointer:
        out += [f"**{words('full_mail', 'label', lang)}:** {pointer}"]
    return out
