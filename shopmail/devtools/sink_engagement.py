"""What recipients of the local SendGrid sink do with their mails: the engagement its webhook reports.

With engagement on (`PATCH /sink/engagement`), each accepted personalization gets a fate drawn from
true rates (`Rates`) chosen per mail by the first `RateRule` whose `match` equals the mail's
custom_args (campaign, variant, segment: whatever the sender put there), else `default`:

- `processed`, then a hard bounce, a soft bounce or a block (no delivery), or `delivered` (after a
  `deferred` for a share of them);
- a person opens (`open`), and independently of that a share of recipients use a mail app that
  opens every mail by itself (Apple Mail Privacy Protection: `open` with `sg_machine_open: true`
  right after delivery, fixed per address);
- a person clicks (`click`, after an open) one of the mail's real links: an `href` of the HTML part
  as the recipient got it (substitutions applied), not the unsubscribe link, not `mailto:`; never
  when the mail switched click tracking off (SendGrid does not track those links);
- an unsubscribe through the mail's `List-Unsubscribe` one-click address (the real feedback app:
  a POST `List-Unsubscribe=One-Click`, as a mail client does; loopback addresses only), and spam
  reports (`spamreport`).

Every draw comes from a generator seeded with (`seed`, the mail's `shopmail_key`), so a mail's fate
does not depend on the order requests arrive in. Times: opens `open_delay_s` (exponential mean) after
delivery, clicks `click_delay_s` after the open. The webhook emitter then posts each event with its
delay, jitter (reordering) and duplicates (`sink_webhook`). `Truth` counts what was drawn: the
ground truth a report must match.
"""

from __future__ import annotations

import dataclasses
import html
import random
import re
import threading
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from shopmail.devtools.sink_page import substitute, unique_args

MESSAGE_KEY_ARG = "shopmail_key"
GROUP_ARGS = ("campaign", "variant", "segment")  # the custom_args ground truth is counted by
_HREF = re.compile(r"""href\s*=\s*["']([^"']+)["']""", re.I)
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})


@dataclass(frozen=True, slots=True)
class Rates:
    """True rates of one kind of mail. Bounces are shares of all mails; `deferred` of delivered mails
    (delivered after a deferral); `open`, `click`, `unsubscribe`, `spam` of delivered mails (a click
    implies an open by a person); `machine` the share of addresses whose mail app opens every mail."""

    bounce_hard: float = 0.01
    bounce_soft: float = 0.005
    blocked: float = 0.005
    deferred: float = 0.03
    open: float = 0.3
    machine: float = 0.3
    click: float = 0.04
    unsubscribe: float = 0.003
    spam: float = 0.0005

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            if not 0.0 <= getattr(self, f.name) <= 1.0:
                raise ValueError(f"{f.name} must be between 0 and 1")
        if self.bounce_hard + self.bounce_soft + self.blocked > 1.0:
            raise ValueError("the bounce rates must add up to at most 1")
        if self.click > self.open:
            raise ValueError("click cannot exceed open: a click implies an open")


@dataclass(frozen=True, slots=True)
class RateRule:
    """`rates` for mails whose custom_args hold every `match` item (e.g. {"campaign": "sale",
    "variant": "b"})."""

    match: Mapping[str, str]
    rates: Rates


@dataclass(frozen=True, slots=True)
class EngagementConfig:
    """Off unless `enabled`; see the module docstring."""

    enabled: bool = False
    default: Rates = field(default_factory=Rates)
    rules: tuple[RateRule, ...] = ()
    open_delay_s: float = 5.0
    click_delay_s: float = 5.0
    seed: int = 0

    def rates_for(self, args: Mapping[str, str]) -> Rates:
        for rule in self.rules:
            if all(args.get(k) == v for k, v in rule.match.items()):
                return rule.rates
        return self.default

    def as_json(self) -> dict[str, Any]:
        return {
            "enabled": self.enabled,
            "default": dataclasses.asdict(self.default),
            "rules": [{"match": dict(r.match), "rates": dataclasses.asdict(r.rates)} for r in self.rules],
            "open_delay_s": self.open_delay_s,
            "click_delay_s": self.click_delay_s,
            "seed": self.seed,
        }


def _rates(data: Any, base: Rates) -> Rates:
    if not isinstance(data, Mapping):
        raise ValueError("rates must be a JSON object")
    known = {f.name for f in dataclasses.fields(Rates)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"unknown rates: {', '.join(unknown)}")
    for name, value in data.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{name} must be a number")
    return dataclasses.replace(base, **data)


def engagement_from_json(data: Any, base: EngagementConfig) -> EngagementConfig:
    """An `EngagementConfig` from a JSON object over `base` (rates over the defaults); ValueError on
    unknown fields or bad values."""
    if not isinstance(data, Mapping):
        raise ValueError("expected a JSON object")
    unknown = sorted(set(data) - {f.name for f in dataclasses.fields(EngagementConfig)})
    if unknown:
        raise ValueError(f"unknown fields: {', '.join(unknown)}")
    changes: dict[str, Any] = {}
    if "enabled" in data:
        changes["enabled"] = bool(data["enabled"])
    default = _rates(data["default"], Rates()) if "default" in data else base.default
    changes["default"] = default
    if "rules" in data:
        rules = data["rules"]
        if not isinstance(rules, list):
            raise ValueError("rules must be a list")
        parsed = []
        for rule in rules:
            if not isinstance(rule, Mapping) or not isinstance(rule.get("match"), Mapping):
                raise ValueError('each rule needs a "match" object and "rates"')
            match = {str(k): str(v) for k, v in rule["match"].items()}
            parsed.append(RateRule(match, _rates(rule.get("rates", {}), default)))
        changes["rules"] = tuple(parsed)
    for name in ("open_delay_s", "click_delay_s"):
        if name in data:
            value = data[name]
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ValueError(f"{name} must be a number >= 0")
            changes[name] = float(value)
    if "seed" in data:
        if isinstance(data["seed"], bool) or not isinstance(data["seed"], int):
            raise ValueError("seed must be an integer")
        changes["seed"] = data["seed"]
    return dataclasses.replace(base, **changes)


@dataclass(frozen=True, slots=True)
class Planned:
    """One event to post: `after_s` seconds after the mail was accepted (`event`: its own fields)."""

    after_s: float
    event: dict[str, Any]


def mail_links(payload: Mapping[str, Any], personalization: Mapping[str, Any]) -> list[str]:
    """The links a recipient can click: every http(s) `href` of the HTML part as they got it, except
    the unsubscribe link (the `List-Unsubscribe` address and anything naming `unsubscribe`)."""
    body = next(
        (b.get("value", "") for b in payload.get("content") or [] if b.get("type") == "text/html"), ""
    )
    body = substitute(body, personalization.get("substitutions") or None)
    headers = {**(payload.get("headers") or {}), **(personalization.get("headers") or {})}
    unsubscribe = headers.get("List-Unsubscribe", "").strip("<>")
    links = []
    for raw in _HREF.findall(body):
        url = html.unescape(raw)
        if not url.startswith(("http://", "https://")) or "unsubscribe" in url.lower():
            continue
        if unsubscribe and url == unsubscribe:
            continue
        links.append(url)
    return links


def _click_tracked(payload: Mapping[str, Any]) -> bool:
    tracking = (payload.get("tracking_settings") or {}).get("click_tracking") or {}
    return tracking.get("enable", True) is not False


def one_click_target(payload: Mapping[str, Any], personalization: Mapping[str, Any]) -> str | None:
    """The `List-Unsubscribe` https/http address a mail client would POST to (loopback only)."""
    headers = {**(payload.get("headers") or {}), **(personalization.get("headers") or {})}
    url = headers.get("List-Unsubscribe", "").split(",")[0].strip().strip("<>")
    if not url.startswith(("http://", "https://")):
        return None
    return url if urlsplit(url).hostname in LOOPBACK else None


@dataclass
class Truth:
    """What the sink's recipients did, counted as it was drawn (thread-safe)."""

    groups: Counter = field(default_factory=Counter)  # (group args tuple, outcome) -> mails
    links: Counter = field(default_factory=Counter)  # (campaign, url) -> clicks
    link_mails: Counter = field(default_factory=Counter)  # (campaign, url) -> mails clicking it
    clicked_keys: dict[str, list[str]] = field(default_factory=dict)  # shopmail_key -> urls clicked
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, args: Mapping[str, str], outcomes: list[str], clicks: list[str]) -> None:
        group = tuple(args.get(name, "") for name in GROUP_ARGS)
        with self._lock:
            self.groups.update((group, outcome) for outcome in outcomes)
            campaign = args.get("campaign", "")
            self.links.update((campaign, url) for url in clicks)
            self.link_mails.update((campaign, url) for url in set(clicks))
            if clicks:
                self.clicked_keys[args.get(MESSAGE_KEY_ARG, "")] = list(clicks)

    def clear(self) -> None:
        with self._lock:
            self.groups.clear()
            self.links.clear()
            self.link_mails.clear()
            self.clicked_keys.clear()

    def as_json(self) -> dict[str, Any]:
        with self._lock:
            groups: dict[tuple, dict[str, int]] = {}
            for (group, outcome), count in self.groups.items():
                groups.setdefault(group, {})[outcome] = count
            return {
                "groups": [
                    {**dict(zip(GROUP_ARGS, group, strict=True)), **counts}
                    for group, counts in groups.items()
                ],
                "links": [
                    {"campaign": c, "url": u, "clicks": n, "mails": self.link_mails[(c, u)]}
                    for (c, u), n in sorted(self.links.items())
                ],
            }


def plan_mail(
    config: EngagementConfig,
    payload: Mapping[str, Any],
    index: int,
    truth: Truth | None = None,
) -> tuple[list[Planned], str | None]:
    """The events of personalization `index` (the fields of each event beyond what every event of
    the mail carries; `after_s` from acceptance) and the one-click unsubscribe address to POST, if
    the recipient unsubscribes."""
    base: dict[str, Any] = {}
    personalization = payload["personalizations"][index]
    args = unique_args(payload, personalization)
    key = str(args.get(MESSAGE_KEY_ARG, index))
    email = str(personalization["to"][0]["email"]).lower()
    rates = config.rates_for(args)
    rng = random.Random(f"{config.seed}:{key}")
    events = [Planned(0.0, {**base, "event": "processed"})]
    outcomes = ["sent"]
    fate = rng.random()
    if fate < rates.bounce_hard + rates.bounce_soft + rates.blocked:
        if fate < rates.bounce_hard:
            kind, extra, outcome = "bounce", {"bounce_classification": "Invalid Address"}, "hard_bounce"
        elif fate < rates.bounce_hard + rates.bounce_soft:
            kind, extra, outcome = "blocked", {"bounce_classification": "Technical Failure"}, "soft_bounce"
        else:
            kind, extra, outcome = "blocked", {"bounce_classification": "Reputation"}, "blocked"
        reason = "550 5.1.1 user unknown" if kind == "bounce" else "421 try again later"
        events.append(Planned(1.0, {**base, "event": "bounce", "type": kind, "reason": reason, **extra}))
        if truth is not None:
            truth.add(args, [*outcomes, outcome], [])
        return events, None
    delivered_after = 1.0
    if rng.random() < rates.deferred:
        events.append(
            Planned(0.5, {**base, "event": "deferred", "response": "421 try again later", "attempt": "1"})
        )
        delivered_after = 2.0
        outcomes.append("deferred")
    events.append(Planned(delivered_after, {**base, "event": "delivered", "response": "250 OK"}))
    outcomes.append("delivered")
    # an Apple Mail user (a trait of the address): the app opens every mail at once, by itself
    if random.Random(f"{config.seed}:machine:{email}").random() < rates.machine:
        events.append(Planned(delivered_after + 0.2, {**base, "event": "open", "sg_machine_open": True}))
        outcomes.append("machine_open")
    clicks: list[str] = []
    click, opened = rng.random(), rng.random()
    unsubscribe, spam = rng.random() < rates.unsubscribe, rng.random() < rates.spam
    links = mail_links(payload, personalization) if _click_tracked(payload) else []
    if click < rates.click and links:
        opened = 0.0  # a click implies an open
    if opened < rates.open:
        open_at = (
            delivered_after + rng.expovariate(1 / config.open_delay_s)
            if config.open_delay_s
            else delivered_after
        )
        events.append(Planned(open_at, {**base, "event": "open", "sg_machine_open": False}))
        outcomes.append("open")
        if click < rates.click and links:
            at = open_at
            for _ in range(1 + (rng.random() < 0.2)):  # some click twice (the same or another link)
                at += rng.expovariate(1 / config.click_delay_s) if config.click_delay_s else 0.0
                url = rng.choice(links)
                clicks.append(url)
                events.append(
                    Planned(
                        at, {**base, "event": "click", "url": url, "url_offset": {"index": 0, "type": "html"}}
                    )
                )
            outcomes.append("click")
        if spam:
            events.append(Planned(open_at + 1.0, {**base, "event": "spamreport"}))
            outcomes.append("spam")
    target = one_click_target(payload, personalization) if unsubscribe else None
    if target:
        outcomes.append("unsubscribe")
    if truth is not None:
        truth.add(args, outcomes, clicks)
    return events, target
