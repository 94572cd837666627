"""Read-side views of the local SendGrid sink: the mails recipients get, the Email Activity query
and the HTML mail pages.

Every accepted personalization is one "message" here, as in SendGrid's Email Activity API:
`msg_id` `<X-Message-Id>.<index>`, the first `to` address, its subject and its `unique_args`
(the request's `custom_args` merged with the personalization's).

A request is stored once, as sent (one shared body for up to 1,000 personalizations); the mail a
recipient gets (`delivered_mail`) is made when it is read, by applying the personalization's legacy
`substitutions` as SendGrid does (`substitute`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from jinja2 import DictLoader, Environment

if TYPE_CHECKING:
    from shopmail.devtools.sendgrid_sink import ReceivedMail

Row = dict[str, Any]
Predicate = Callable[[Row], bool]


def utc_iso(timestamp: float) -> str:
    """SendGrid's time format, e.g. `2026-11-23T09:00:00Z`."""
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def unique_args(payload: dict[str, Any], personalization: dict[str, Any]) -> dict[str, str]:
    """The custom args SendGrid attaches to a personalization's events (its own win)."""
    merged = dict(payload.get("custom_args") or {})
    merged.update(personalization.get("custom_args") or {})
    return merged


# --- substitutions: the mail each recipient gets ---------------------------------------------------


@lru_cache(maxsize=1024)
def _tag_pattern(keys: tuple[str, ...]) -> re.Pattern[str] | None:
    """One captured alternation of the keys, longest first (so a key that starts another never
    wins over it); None when there is no non-empty key."""
    ordered = sorted((k for k in keys if k), key=len, reverse=True)
    return re.compile("(" + "|".join(map(re.escape, ordered)) + ")") if ordered else None


@lru_cache(maxsize=256)
def _segments(text: str, keys: tuple[str, ...]) -> tuple[str, ...]:
    """`text` cut at its tags: literal, tag, literal, ..., tag, literal. A shared body is cut once
    and every recipient's mail is a join of these (the cache key is the very string, hashed once)."""
    pattern = _tag_pattern(keys)
    return tuple(pattern.split(text)) if pattern is not None else (text,)


def substitute(text: str, substitutions: Mapping[str, str] | None) -> str:
    """`text` with every substitution key replaced by its value, in one pass: a value is never
    scanned again, so a key inside another key's value stays as it is (SendGrid's legacy tags)."""
    if not substitutions or not text:
        return text
    parts = list(_segments(text, tuple(substitutions)))
    if len(parts) == 1:
        return text
    parts[1::2] = [substitutions[tag] for tag in parts[1::2]]
    return "".join(parts)


def _substituted_address(entry: Any, substitutions: Mapping[str, str] | None) -> Any:
    if not substitutions or not isinstance(entry, dict):
        return entry
    return {k: substitute(v, substitutions) if isinstance(v, str) else v for k, v in entry.items()}


def personalized_subject(payload: dict[str, Any], index: int) -> str | None:
    """The subject recipient `index` sees: the personalization's (else the request's), substituted."""
    p = payload["personalizations"][index]
    subject = p.get("subject") or payload.get("subject")
    return substitute(subject, p.get("substitutions")) if isinstance(subject, str) else subject


def delivered_mail(mail: ReceivedMail, index: int) -> dict[str, Any]:
    """The mail personalization `index` of an accepted request becomes, as its recipients get it.

    The personalization's `substitutions` are applied where SendGrid documents them: the subject,
    every content block (text/plain, text/html, ...) and `reply_to` / `reply_to_list`. Not in
    headers, custom args or categories (SendGrid documents no substitution there)."""
    payload = mail.payload
    p = payload["personalizations"][index]
    subs = p.get("substitutions") or None
    content = [
        {**block, "value": substitute(block["value"], subs)} if subs else block
        for block in payload.get("content") or []
    ]
    reply_to_list = payload.get("reply_to_list")
    return {
        "msg_id": f"{mail.message_id}.{index}",
        "message_id": mail.message_id,
        "received_at": mail.received_at,
        "to": p["to"],
        "cc": p.get("cc") or [],
        "bcc": p.get("bcc") or [],
        "from": p.get("from") or payload.get("from"),
        "reply_to": _substituted_address(payload.get("reply_to"), subs),
        "reply_to_list": [_substituted_address(e, subs) for e in reply_to_list] if reply_to_list else None,
        "subject": personalized_subject(payload, index),
        "content": content,
        "headers": {**(payload.get("headers") or {}), **(p.get("headers") or {})},
        "custom_args": unique_args(payload, p),
        "categories": payload.get("categories") or [],
        "send_at": p.get("send_at", payload.get("send_at")),
        "template_id": payload.get("template_id"),
    }


# --- the Email Activity API ----------------------------------------------------------------------


def activity_rows(mail: ReceivedMail, subjects: bool = True) -> Iterator[Row]:
    """One Email Activity entry per personalization of an accepted request (`subjects=False`: the
    substituted subject is left for the caller to fill in, see `find_messages`)."""
    payload = mail.payload
    sender = (payload.get("from") or {}).get("email")
    for i, p in enumerate(payload["personalizations"]):
        yield {
            "from_email": sender,
            "msg_id": f"{mail.message_id}.{i}",
            "subject": personalized_subject(payload, i) if subjects else None,
            "to_email": p["to"][0]["email"],
            "status": "delivered",
            "opens_count": 0,
            "clicks_count": 0,
            "last_event_time": utc_iso(mail.received_at),
            "unique_args": unique_args(payload, p),
        }


ACTIVITY_FIELDS = (  # what SendGrid's "Filter all messages" answer lists per message
    "from_email", "msg_id", "subject", "to_email", "status", "opens_count", "clicks_count", "last_event_time",
)  # fmt: skip


def public_activity_row(row: Row) -> Row:
    """An activity entry as SendGrid's message list shows it: its documented fields only (no
    unique_args, which its query language can filter on but its answer never names)."""
    return {name: row.get(name) for name in ACTIVITY_FIELDS}


# --- the activity query language (a practical subset of SendGrid's) -----------------------------


class QueryError(ValueError):
    """A query the sink does not understand."""


_FIELDS = frozenset({"msg_id", "to_email", "from_email", "subject", "status"})
_TOKEN_RE = re.compile(
    r"""\s*(?:
        (?P<punct>[(),]|!=|=)
      | unique_args\s*\[\s*(?:'(?P<sq>[^']*)'|"(?P<dq>[^"]*)")\s*\]
      | (?P<string>"(?:[^"\\]|\\.)*")
      | (?P<word>[A-Za-z_]\w*)
    )""",
    re.VERBOSE,
)


def _tokenize(query: str) -> list[tuple[str, str]]:
    """(kind, value) pairs; kind is punct, arg, string, keyword or field."""
    tokens: list[tuple[str, str]] = []
    pos, end = 0, len(query.rstrip())
    while pos < end:
        match = _TOKEN_RE.match(query, pos)
        if not match or match.end() == pos:
            raise QueryError(f"unexpected input at position {pos}: {query[pos : pos + 20]!r}")
        pos = match.end()
        if match["punct"]:
            tokens.append(("punct", match["punct"]))
        elif match["string"]:
            tokens.append(("string", re.sub(r"\\(.)", r"\1", match["string"][1:-1])))
        elif match["word"]:
            word = match["word"]
            if word.upper() in ("AND", "OR", "NOT", "IN"):
                tokens.append(("keyword", word.upper()))
            elif word in _FIELDS:
                tokens.append(("field", word))
            else:
                raise QueryError(f"unknown field {word!r}")
        else:
            tokens.append(("arg", match["sq"] if match["sq"] is not None else match["dq"]))
    return tokens


def _arg_getter(name: str) -> Callable[[Row], Any]:
    return lambda row: row["unique_args"].get(name)


def _field_getter(name: str) -> Callable[[Row], Any]:
    return lambda row: row.get(name)


class _Parser:
    """expr := and (OR and)*; and := unary (AND unary)*; unary := NOT unary | (expr) | compare;
    compare := field (= | !=) "v" | field [NOT] IN ("v", ...)."""

    def __init__(self, tokens: list[tuple[str, str]]) -> None:
        self.tokens, self.pos = tokens, 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def accept(self, kind: str, value: str | None = None) -> str | None:
        token = self.peek()
        if token and token[0] == kind and (value is None or token[1] == value):
            self.pos += 1
            return token[1]
        return None

    def expect(self, kind: str, value: str | None = None) -> str:
        found = self.accept(kind, value)
        if found is None:
            raise QueryError(f"expected {value or kind} at token {self.pos + 1}, got {self.peek()}")
        return found

    def parse(self) -> Predicate:
        predicate = self.expr()
        if self.peek() is not None:
            raise QueryError(f"unexpected {self.peek()} at token {self.pos + 1}")
        return predicate

    def expr(self) -> Predicate:
        terms = [self.conjunction()]
        while self.accept("keyword", "OR"):
            terms.append(self.conjunction())
        return terms[0] if len(terms) == 1 else (lambda row: any(t(row) for t in terms))

    def conjunction(self) -> Predicate:
        terms = [self.unary()]
        while self.accept("keyword", "AND"):
            terms.append(self.unary())
        return terms[0] if len(terms) == 1 else (lambda row: all(t(row) for t in terms))

    def unary(self) -> Predicate:
        if self.accept("keyword", "NOT"):
            inner = self.unary()
            return lambda row: not inner(row)
        if self.accept("punct", "("):
            inner = self.expr()
            self.expect("punct", ")")
            return inner
        return self.comparison()

    def comparison(self) -> Predicate:
        arg = self.accept("arg")
        get = _arg_getter(arg) if arg is not None else _field_getter(self.expect("field"))
        if self.accept("punct", "="):
            value = self.expect("string")
            return lambda row: get(row) == value
        if self.accept("punct", "!="):
            value = self.expect("string")
            return lambda row: get(row) != value
        negate = self.accept("keyword", "NOT") is not None
        self.expect("keyword", "IN")
        self.expect("punct", "(")
        values = {self.expect("string")}
        while self.accept("punct", ","):
            values.add(self.expect("string"))
        self.expect("punct", ")")
        return lambda row: (get(row) in values) != negate


def parse_query(query: str) -> Predicate:
    """Compile an Email Activity query, e.g. `unique_args['shopmail_key']="k1"`,
    `unique_args['shopmail_key'] IN ("k1","k2") OR to_email="a@b.ru"`; AND, NOT and
    parentheses work too. An empty query matches everything. Raises `QueryError`."""
    tokens = _tokenize(query)
    return _Parser(tokens).parse() if tokens else (lambda row: True)


def find_messages(mails: Iterable[ReceivedMail], query: str, limit: int) -> list[Row]:
    """The first `limit` activity entries matching `query`, oldest first. Subjects are substituted
    for every row only when the query reads them, else only for the rows returned."""
    predicate = parse_query(query)
    eager = ("field", "subject") in _tokenize(query)
    found: list[Row] = []
    for mail in mails:
        for i, row in enumerate(activity_rows(mail, subjects=eager)):
            if predicate(row):
                if not eager:
                    row["subject"] = personalized_subject(mail.payload, i)
                found.append(row)
                if len(found) >= limit:
                    return found
    return found


# --- HTML pages ---------------------------------------------------------------------------------

_TEMPLATES = {
    "base.html": """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{% block title %}{% endblock %} · SendGrid sink</title>
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; } td, th { text-align: left; padding: .25em .6em; vertical-align: top; }
tr:nth-child(even) td { background: #f4f4f4; } th { border-bottom: 1px solid #999; }
pre { background: #f6f6f6; padding: .8em; white-space: pre-wrap; }
iframe { width: 100%; height: 40em; border: 1px solid #ccc; } .muted { color: #777; }
</style></head>
<body>{% block body %}{% endblock %}</body></html>""",
    "index.html": """{% extends "base.html" %}{% block title %}Mails{% endblock %}{% block body %}
<h1>Received mails</h1>
<p class="muted">{{ total }} request(s) stored{% if total > mails|length %}, newest {{ mails|length }}
shown{% endif %}. JSON: <a href="/sink/messages">/sink/messages</a>,
<a href="/sink/stats">/sink/stats</a>.</p>
<table><tr><th>Time (UTC)</th><th>To</th><th>Subject</th><th>Campaign</th><th></th></tr>
{% for m in mails %}<tr><td>{{ m.time }}</td>
<td>{{ m.to }}{% if m.more %} <span class="muted">+{{ m.more }} more</span>{% endif %}</td>
<td>{{ m.subject }}</td><td>{{ m.campaign }}</td>
<td><a href="/sink/messages/{{ m.message_id | urlencode }}">view</a></td></tr>
{% else %}<tr><td colspan="5" class="muted">No mails yet.</td></tr>{% endfor %}
</table>{% endblock %}""",
    "message.html": """{% extends "base.html" %}{% block title %}{{ subject }}{% endblock %}{% block body %}
<p><a href="/sink">&larr; all mails</a></p>
<h1>{{ subject }}</h1>
<table>{% for name, value in headers %}<tr><th>{{ name }}</th><td>{{ value }}</td></tr>{% endfor %}</table>
<h2>Recipients ({{ personalizations|length }}{% if hidden %} of {{ personalizations|length + hidden }}
{%- endif %})</h2>
<table><tr><th>#</th><th>To</th><th>Subject</th><th>Custom args</th><th>Headers</th></tr>
{% for p in personalizations %}<tr>
<td><a href="/sink/messages/{{ p.msg_id | urlencode }}">{{ loop.index0 }}</a></td>
<td>{{ p.to }}</td><td>{{ p.subject }}</td>
<td>{{ p.custom_args }}</td><td>{{ p.headers }}</td></tr>{% endfor %}</table>
{% for block in content %}<h2>{{ block.type }}</h2>
{% if block.type == "text/html" %}<iframe sandbox srcdoc="{{ block.value }}" title="HTML part"></iframe>
{% else %}<pre>{{ block.value }}</pre>{% endif %}{% endfor %}
{% endblock %}""",
    "login.html": """{% extends "base.html" %}{% block title %}Key needed{% endblock %}{% block body %}
<h1>SendGrid sink</h1>
{% if wrong_key %}<p><strong>That key is not this sink's key.</strong></p>{% endif %}
<p>The mails are shown to holders of the sink's key only: the API key it was started with
(<code>--api-key</code>), else the random key it printed at start (<code>/sink?key=...</code>).</p>
<form method="get" action="/sink"><label>Key <input type="password" name="key" autofocus></label>
<button>Open</button></form>{% endblock %}""",
}
_env = Environment(loader=DictLoader(_TEMPLATES), autoescape=True)
MAX_LISTED = 500
MAX_RECIPIENTS_SHOWN = 100
# Defence in depth on top of escaping and the sandbox: no scripts, plugins or forms at all.
PAGE_HEADERS = {
    "Content-Security-Policy": "script-src 'none'; object-src 'none'; base-uri 'none'; form-action 'none'",
    "X-Content-Type-Options": "nosniff",
}
# The key form posts to the sink itself; nothing else changes.
LOGIN_HEADERS = {
    **PAGE_HEADERS,
    "Content-Security-Policy": PAGE_HEADERS["Content-Security-Policy"].replace(
        "form-action 'none'", "form-action 'self'"
    ),
}


def _pairs(mapping: Any) -> str:
    return ", ".join(f"{k}={v}" for k, v in mapping.items()) if isinstance(mapping, dict) else ""


def _addresses(entries: Any) -> str:
    return ", ".join(e.get("email", "") for e in entries) if isinstance(entries, list) else ""


def render_index(mails: Sequence[ReceivedMail]) -> str:
    """The list of received requests, newest first (subject: as the first recipient sees it)."""
    rows = []
    for mail in list(reversed(mails))[:MAX_LISTED]:
        payload = mail.payload
        first = payload["personalizations"][0]
        rows.append(
            {
                "message_id": mail.message_id,
                "time": utc_iso(mail.received_at).replace("T", " ").rstrip("Z"),
                "to": _addresses(first.get("to")),
                "more": len(payload["personalizations"]) - 1,
                "subject": personalized_subject(payload, 0) or "",
                "campaign": unique_args(payload, first).get("campaign", ""),
            }
        )
    return _env.get_template("index.html").render(mails=rows, total=len(mails))


def render_message(mail: ReceivedMail, index: int = 0) -> str:
    """One request as recipient `index` gets it (substitutions applied): headers, the recipients
    (each links to its own mail), the text part and the HTML part in a sandboxed iframe."""
    payload = mail.payload
    delivered = delivered_mail(mail, index)
    sender, reply_to = delivered["from"] or {}, delivered["reply_to"] or {}
    headers = [
        ("Message-Id", mail.message_id),
        ("Activity msg_id", delivered["msg_id"]),
        ("Received", utc_iso(mail.received_at)),
        ("From", f"{sender.get('name', '')} <{sender.get('email', '')}>".strip()),
        ("To", _addresses(delivered["to"])),
        ("Reply-To", reply_to.get("email", "")),
        ("Categories", ", ".join(delivered["categories"])),
        ("Custom args", _pairs(delivered["custom_args"])),
        ("Headers", _pairs(delivered["headers"])),
        ("Template", payload.get("template_id", "")),
    ]
    personalizations = [
        {
            "msg_id": f"{mail.message_id}.{i}",
            "to": ", ".join(filter(None, (_addresses(p.get(k)) for k in ("to", "cc", "bcc")))),
            "subject": personalized_subject(payload, i) or "",
            "custom_args": _pairs(p.get("custom_args")),
            "headers": _pairs(p.get("headers")),
        }
        for i, p in enumerate(payload["personalizations"][:MAX_RECIPIENTS_SHOWN])
    ]
    return _env.get_template("message.html").render(
        subject=delivered["subject"] or "(no subject)",
        headers=[(name, value) for name, value in headers if value],
        personalizations=personalizations,
        hidden=len(payload["personalizations"]) - len(personalizations),
        content=[b for b in delivered["content"] if isinstance(b, dict)],
    )


def render_login(wrong_key: bool = False) -> str:
    """The page asking for the sink's key (it sets the page cookie, see `sendgrid_sink.index_page`)."""
    return _env.get_template("login.html").render(wrong_key=wrong_key)
