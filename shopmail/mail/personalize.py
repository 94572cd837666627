"""Render once, personalize per recipient: placeholders, the substitution rule, and what a template reads.

A shared body is rendered once with a `Personal` placeholder in place of each per-recipient value
(name, unsubscribe link, coupon code ...). A placeholder prints as a token, `-smv.<path>.h-` in HTML
(its value goes in HTML-escaped) and `-smv.<path>.t-` elsewhere (the value as it is); each recipient
gets a `substitutions` map from token to value, applied by SendGrid (personalization substitutions)
or locally by the outbox and memory providers (`OutgoingMail.personalized`), one pass.

The shared render never sees a personal value, so none can leak into another recipient's mail. A
template that does more with a personal value than print it (compare it, measure it, call a method
on it) raises `PersonalValueUsed`: that template is rendered per recipient instead. Truthiness is
allowed: recipients are grouped by which personal values are empty, and an empty value is rendered
literally (`{% if customer.first_name %}` takes the right branch for every group).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import cache
from typing import Any

from jinja2 import Environment, meta
from markupsafe import Markup, escape

TOKEN_PREFIX = "-smv."
TOKEN_SUFFIXES = (".h-", ".t-")


class PersonalValueUsed(RuntimeError):
    """A template inspects a per-recipient value (not only prints it): render it per recipient."""


@cache
def html_token(path: str) -> str:
    """The token of `path` in HTML parts (its value goes in HTML-escaped)."""
    return f"{TOKEN_PREFIX}{path}.h-"


@cache
def text_token(path: str) -> str:
    """The token of `path` in the subject and text part (its value goes in as it is)."""
    return f"{TOKEN_PREFIX}{path}.t-"


class Personal:
    """A non-empty per-recipient value in a shared render: prints as its token, is truthy, and
    refuses every other use (comparison, length, methods, arithmetic...)."""

    __slots__ = ("path",)

    def __init__(self, path: str) -> None:
        self.path = path

    def __str__(self) -> str:
        return text_token(self.path)

    def __html__(self) -> str:
        return html_token(self.path)

    def __bool__(self) -> bool:
        return True

    def _refuse(self, *_args: Any, **_kwargs: Any) -> Any:
        raise PersonalValueUsed(f"the template does more with '{self.path}' than print it")

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        self._refuse()

    __eq__ = __ne__ = __lt__ = __le__ = __gt__ = __ge__ = _refuse  # type: ignore[assignment]
    __len__ = __iter__ = __contains__ = __getitem__ = _refuse
    __add__ = __radd__ = __mul__ = __rmul__ = __mod__ = __rmod__ = _refuse
    __int__ = __float__ = __index__ = __format__ = _refuse  # type: ignore[assignment]
    __hash__ = None  # type: ignore[assignment]


_TOKEN_RE = re.compile(re.escape(TOKEN_PREFIX) + r"[A-Za-z0-9_.]+?\.[ht]-")
_TEXT_TOKEN_RE = re.compile(re.escape(TOKEN_PREFIX) + r"([A-Za-z0-9_.]+?)\.t-")


def tokens_in(*texts: str) -> frozenset[str]:
    """The tokens a shared render holds (only those need a substitution)."""
    return frozenset(token for text in texts for token in _TOKEN_RE.findall(text))


def html_of_text(text: str) -> Markup:
    """A text rendering (the preheader) placed in HTML: escaped, and its text tokens made HTML tokens,
    so their values go in escaped as a full render puts them (only `Personal` prints tokens: no
    value can hold one, `safe_value`)."""
    escaped = str(escape(text))
    if TOKEN_PREFIX not in escaped:
        return Markup(escaped)
    return Markup(_TEXT_TOKEN_RE.sub(lambda m: html_token(m.group(1)), escaped))


def safe_value(value: str) -> bool:
    """A value that can go in by substitution and give the same bytes as rendering it: no token
    syntax inside (no cascade, no spoofing) and whitespace already normalised (subjects are)."""
    return TOKEN_PREFIX not in value and value == " ".join(value.split())


def _sources(env: Environment, name: str, seen: set[str]) -> Iterable[Any]:
    """The parsed template `name` and every template it extends, includes or imports."""
    if name in seen:
        return
    seen.add(name)
    assert env.loader is not None
    source, _, _ = env.loader.get_source(env, name)
    tree = env.parse(source)
    yield tree
    for child in meta.find_referenced_templates(tree):
        if child is not None:
            yield from _sources(env, child, seen)


@cache
def _referenced(env: Environment, names: tuple[str, ...]) -> frozenset[str]:
    seen: set[str] = set()
    found: set[str] = set()
    for name in names:
        for tree in _sources(env, name, seen):
            found |= meta.find_undeclared_variables(tree)
    return frozenset(found - set(env.globals))


def referenced_names(env: Environment, names: Iterable[str]) -> frozenset[str]:
    """Top-level context names the templates `names` (with their layouts and partials) read."""
    return _referenced(env, tuple(names))
