"""Composing mails: the template context of a recipient, and the `OutgoingMail`s of a batch.

`compose_many` renders a shared body once per group of recipients that differ only in personal
values (name, unsubscribe link, coupon code...: shopmail/mail/personalize.py) and gives each
recipient the substitutions that make it theirs; `compose` renders one recipient in full (previews,
samples, and the fallback for templates and values that cannot be shared).
"""

from __future__ import annotations

import logging
import math
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from markupsafe import escape

from config.settings import Settings
from config.shop_profile import ShopProfile, shop_profile
from segments.preferred_hour import SEND_HOUR_COLUMN, preferred_send_at
from segments.send_time import ZONE_COLUMN, quiet_hours, send_at
from shopmail.campaigns import Campaign
from shopmail.mail.links import add_utm, unsubscribe_prefix, unsubscribe_token
from shopmail.mail.palette import palette
from shopmail.mail.personalize import (
    TOKEN_PREFIX,
    Personal,
    PersonalValueUsed,
    html_token,
    referenced_names,
    safe_value,
    text_token,
    tokens_in,
)
from shopmail.mail.rendering import RENDERER_NAMES, RenderedMail, TemplateError, renderer_for
from shopmail.mail.unsubscribe_mail import list_unsubscribe
from shopmail.mail.variants import variant_renderer
from shopmail.mailer.base import OutgoingMail
from shopmail.run.length_check import LengthReport, check_lengths
from shopmail.state import state_db
from shopmail.state.coupons import Coupon, coupon_for

logger = logging.getLogger(__name__)

# context names whose value differs per recipient: never in a shared render, only as placeholders
PERSONAL_NAMES = frozenset({"customer", "first_name", "last_name", "email", "customer_id", "message_key"})
CUSTOMER_FIELDS = ("id", "first_name", "last_name")
SHARED_PERSONAL = PERSONAL_NAMES | {"unsubscribe_url", "coupon"}  # names with placeholders
CONSTANT_NAMES = ("shop", "utm", "campaign", "language")  # the same for every mail of the composer
SHARED_BODIES = 512  # shared renders kept per process (a process serves many batches of a campaign)
MIN_GROUP = 4  # smaller groups are rendered per recipient (the proof renders would cost as much)
_HTML_SPECIAL = re.compile(r"[&<>\"']")
_URL_SPECIAL = re.compile(r"[^A-Za-z0-9_.~-]")


def shop_context(profile: ShopProfile) -> dict[str, Any]:
    """`shop` in templates: the profile's customer-visible values (social links are UTM-tagged by the
    composer)."""
    logo = profile.logo
    return {
        "name": profile.name,
        "name_genitive": profile.name_genitive,
        "name_prepositional": profile.name_prepositional,
        "url": profile.url,
        "cart_url": profile.cart_url,
        "account_url": profile.account_url,
        "orders_url": profile.orders_url,
        "currency": profile.currency,
        "locale": profile.locale,
        "support_email": profile.support_email,
        "support_phone": profile.support_phone,
        "legal_footer": profile.legal_footer,
        "brand_color": profile.brand_color,
        "brand_text_color": profile.brand_text_color,
        "logo": {"url": logo.url, "width": logo.width, "height": logo.height} if logo else None,
        "palette": palette(profile.brand_color, profile.brand_text_color),
    }


def _custom_args(campaign: str, row: dict[str, Any]) -> dict[str, str]:
    """The mail's SendGrid custom_args (ids and labels only, never personal data): campaign, occasion,
    customer, and where known the A/B test variant and the run's segment (webhook events carry them;
    the local SendGrid server's engagement rates can depend on them)."""
    args = {
        "campaign": campaign,
        "occasion": str(row["occasion_key"]),
        "customer_id": str(int(row["customer_id"])),
    }
    variant, segment = row.get("test_variant"), row.get("segment")
    if variant:
        args["variant"] = str(variant)
    if segment:
        args["segment"] = str(segment)
    return args


def _plain(value: Any) -> Any:
    if hasattr(value, "to_pydatetime"):
        return value.to_pydatetime()
    if hasattr(value, "item") and not isinstance(value, list | dict | str):
        return value.item()
    return value


def _same_group(
    row: dict[str, Any], last: tuple[Any, ...], language: str, pattern: tuple, shape: Shape
) -> bool:
    """Whether `row` has the group key of the previous row (`last`: row, language, empty-value
    pattern, members) without building it: same language and pattern, equal values of the names
    the templates read (a comparison that cannot be made says no)."""
    before, last_language, last_pattern, _ = last
    if language != last_language or pattern != last_pattern:
        return False
    try:
        for name in shape.by_row:
            if not bool(row.get(name) == before.get(name)):
                return False
    except (TypeError, ValueError):
        return False
    return True


def _text(value: Any) -> str:
    """A personal value as the template prints it ('' for NULL)."""
    if type(value) is str:
        return value
    return "" if value is None else str(_plain(value))


def _frozen(value: Any) -> Any:
    """A hashable stand-in of a row value for grouping (lists of product ids become tuples)."""
    kind = type(value)
    if kind is str or kind is int or value is None:
        return value
    if kind is list or kind is tuple:
        items = tuple(value)
        try:
            hash(items)
            return items
        except TypeError:
            return tuple(_frozen(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _frozen(v)) for k, v in value.items()))
    if isinstance(value, float) and math.isnan(value):
        return None
    return _plain(value)


@dataclass(frozen=True, slots=True)
class Shape:
    """What a campaign's templates read in one language: every name, the personal ones (placeholders
    in a shared render) and the other per-row ones (equal within a group), each sorted."""

    names: frozenset[str]
    personal: tuple[str, ...]
    by_row: tuple[str, ...]

    @classmethod
    def of(cls, names: frozenset[str]) -> Shape:
        personal = tuple(sorted(names & SHARED_PERSONAL))
        by_row = tuple(sorted(names - SHARED_PERSONAL - set(CONSTANT_NAMES) - RENDERER_NAMES))
        return cls(names, personal, by_row)


@dataclass(slots=True)
class SharedBody:
    """A group's shared render, the tokens it holds per personal value (`printed`), and what full
    renders have proved about it (`proven`: (path, "html"/"url") classes, and the render itself)."""

    rendered: RenderedMail
    printed: list[tuple[str, str | None, str | None]]
    cache_key: tuple
    proven: set[tuple[str, str]] = field(default_factory=set)


class MailComposer:
    """Builds the template context and the `OutgoingMail`s of a campaign's recipients.

    With a coupon policy, each mail gets its personal coupon (`coupon` in templates): the one already
    issued for it (`issued`, from `coupons.recorded_coupons`) or, if none, the one it would be issued
    now; `self.coupons` keeps every coupon composed, by message key, for `coupons.issue_coupons`.
    `stats` counts mails composed from a shared body (`shared`) and rendered alone (`individual`);
    `unshared` says why a template is rendered per recipient, if it is.
    """

    def __init__(
        self,
        campaign: Campaign,
        settings: Settings,
        products: dict[int, dict[str, Any]],
        issued: Mapping[str, Coupon] | None = None,
        *,
        strict: bool = True,
    ) -> None:
        self.campaign = campaign
        self.settings = settings
        self.products = products
        self.coupons: dict[str, Coupon] = dict(issued or {})
        self.renderer = renderer_for(
            campaign.template,
            settings.templates_dir,
            default_language=settings.default_language,
            currency=settings.currency,
        )
        variant = campaign.test_variant  # an A/B test's variant: its subject, preheader, sender name
        if variant is not None:
            folder, language, currency = settings.templates_dir, settings.default_language, settings.currency
            self.renderer = variant_renderer(self.renderer, variant, folder, language, currency)
        self.profile = shop_profile(settings)
        self.shop = shop_context(self.profile)
        self.utm = {
            "source": settings.utm_source,
            "medium": settings.utm_medium,
            "campaign": campaign.utm,
        }
        self.shop["social"] = [  # UTM-tagged once per run, not per mail
            (name, add_utm(url, **self.utm, content="social")) for name, url in self.profile.social_links
        ]
        self.campaign_info = {"name": campaign.name, "title": campaign.title}
        # the fields every mail of the campaign shares, in `OutgoingMail`'s order (positional: fast)
        self._sender = (
            self.profile.sender_email,
            (variant.sender_name if variant else None) or self.profile.sender_name,
            self.profile.reply_to,
            campaign.name,
            campaign.categories,
            campaign.click_tracking,
        )
        self.quiet = quiet_hours(settings.quiet_hours) if campaign.marketing else None
        self._send_at: dict[tuple[object, int, int | None], int | None] = {}  # (zone, minute, hour)
        self._clock: tuple[datetime | None, int] = (None, 0)
        self._value_facts: dict[str, tuple[bool, str, bool]] = {}
        # what a shared render depends on besides the group key: the campaign and the shop settings
        self._scope = (campaign.name, _frozen(self.shop), _frozen(self.utm), _frozen(self.campaign_info))
        self._unsubscribe_prefix = unsubscribe_prefix(settings.unsubscribe_url)
        self._unsubscribe_secret = settings.unsubscribe_secret.get_secret_value()
        self._unsubscribe_mailbox = settings.unsubscribe_mailbox.strip() or None
        self._shapes: dict[str, Shape] = {}
        self.unshared: str | None = None
        self.stats: Counter = Counter()
        self.lengths = self._length_report(strict)

    def _length_report(self, strict: bool) -> LengthReport:
        """Subject and preheader lengths of the campaign's sample mails with this shop's profile, checked
        once per process and shop; over the limit stops the run (`strict`) before any mail is composed."""
        report = self.renderer.length_reports.get(self._scope)
        if report is None:
            report = self.renderer.length_reports[self._scope] = check_lengths(self)
            for warning in report.warnings + report.refusals:
                logger.warning("%s", warning)
        if strict and report.refusals:
            raise TemplateError("; ".join(report.refusals))
        return report

    def unsubscribe_url(self, customer_id: int) -> str | None:
        if not self.campaign.marketing:
            return None
        token = unsubscribe_token(self._unsubscribe_secret, customer_id, self.campaign.name)
        return self._unsubscribe_prefix + token  # as links.unsubscribe_link

    def coupon(self, row: dict[str, Any]) -> Coupon | None:
        """The recipient's personal coupon (None without a coupon policy); nothing is issued here."""
        policy = self.campaign.coupon
        if policy is None:
            return None
        key = str(row["message_key"])
        if key not in self.coupons:
            self.coupons[key] = coupon_for(
                policy,
                key,
                int(row["customer_id"]),
                state_db.utcnow().replace(microsecond=0),
                self.settings.tz,
                self.settings.coupon_secret.get_secret_value(),
            )
        return self.coupons[key]

    def context(self, row: dict[str, Any]) -> dict[str, Any]:
        customer_id = int(row["customer_id"])
        context = {k: _plain(v) for k, v in row.items()}
        for key, value in row.items():  # list columns hold product ids: give templates the products
            if isinstance(value, list):
                context[key] = [self.products[i] for i in value if i in self.products]
        context.update(
            shop=self.shop,
            utm=self.utm,
            customer={
                "id": customer_id,
                "first_name": row.get("first_name") or "",
                "last_name": row.get("last_name") or "",
            },
            campaign=self.campaign_info,
            unsubscribe_url=self.unsubscribe_url(customer_id),
        )
        coupon = self.coupon(row)
        if coupon is not None:
            context["coupon"] = coupon.template_context()
        else:
            context.setdefault("coupon", None)  # templates may test `{% if coupon %}`
        return context

    def scheduled(self, zone: object, now: datetime | None = None, hour: object = None) -> int | None:
        """Marketing mail composed in the customer's quiet hours: deliver when they end; with a
        preferred `hour` (send_time = preferred): the next time it is that hour in the customer's zone,
        out of the quiet hours (segments/preferred_hour.py). Cached per zone, minute and hour: a batch
        composes thousands of mails in a few zones."""
        if not self.campaign.marketing:
            return None
        now = now or state_db.utcnow()
        if now is not self._clock[0]:  # a group's mails share one `now`: its minute computed once
            self._clock = (now, int(now.timestamp() // 60))
        try:
            wanted: int | None = None if hour is None else int(hour)  # type: ignore[call-overload]
        except (TypeError, ValueError):  # NaN / <NA>: the fixed-hour group
            wanted = None
        key = (zone, self._clock[1], wanted)
        if key not in self._send_at:
            if wanted is None:
                found = None if self.quiet is None else send_at(zone, now, self.quiet, self.settings.timezone)
            else:
                place = zone if isinstance(zone, str) and zone else self.settings.timezone
                found = preferred_send_at(place, wanted, now, self.quiet)
            self._send_at[key] = found
        return self._send_at[key]

    def _mail(
        self,
        row: dict[str, Any],
        rendered: RenderedMail,
        unsubscribe: str | None,
        subs: dict[str, str],
        now: datetime | None = None,
    ) -> OutgoingMail:
        headers: dict[str, str] = {}
        if unsubscribe:
            prefix = self._unsubscribe_prefix
            token = unsubscribe[len(prefix) :] if unsubscribe.startswith(prefix) else None
            headers["List-Unsubscribe"] = list_unsubscribe(unsubscribe, self._unsubscribe_mailbox, token)
            headers["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        first, last = row.get("first_name"), row.get("last_name")
        name = f"{first} {last}" if first and last else first or last or ""
        sender = self._sender
        return OutgoingMail(
            str(row["message_key"]),
            str(row["email"]),
            rendered.subject,
            rendered.html,
            rendered.text,
            sender[0],
            sender[1],
            name,
            sender[2],
            headers,
            _custom_args(sender[3], row),
            sender[4],
            self.scheduled(row.get(ZONE_COLUMN), now, row.get(SEND_HOUR_COLUMN)),
            sender[5],
            subs,
        )

    def compose(self, row: dict[str, Any]) -> OutgoingMail:
        """Render one recipient's mail in full (raises `TemplateError` on a template problem)."""
        context = self.context(row)
        rendered = self.renderer.render(row.get("language"), context)
        return self._mail(row, rendered, context["unsubscribe_url"], {})

    # --- render once, personalize per recipient ------------------------------------------------

    def shape(self, language: str) -> Shape:
        """What the campaign's templates read in `language`, cached."""
        if language not in self._shapes:
            env = self.renderer.env
            names = self.renderer.part_names(language)
            self._shapes[language] = Shape.of(referenced_names(env, names))
        return self._shapes[language]

    def _personal(self, shape: Shape, row: dict[str, Any], coupon: Coupon | None) -> dict[str, str]:
        """path -> text of the row's personal values the templates read (empty ones included)."""
        values: dict[str, str] = {}
        for name in shape.personal:
            if name == "customer":
                first, last = row.get("first_name"), row.get("last_name")
                values["customer.id"] = str(int(row["customer_id"]))
                values["customer.first_name"] = first if type(first) is str else _text(first)
                values["customer.last_name"] = last if type(last) is str else _text(last)
            elif name == "coupon":
                if coupon is not None:
                    values["coupon.code"] = coupon.code
            elif name == "unsubscribe_url":
                values["unsubscribe_url"] = self.unsubscribe_url(int(row["customer_id"])) or ""
            else:
                values[name] = _text(row.get(name))
        return values

    def _group_key(
        self, language: str, shape: Shape, row: dict, values: dict, coupon: Coupon | None
    ) -> tuple:
        """Rows with equal keys render the same shared body: same language, same empty personal
        values, equal values of every other name the templates read."""
        shared = [_frozen(row.get(name)) for name in shape.by_row]
        if coupon is not None and "coupon" in shape.names:
            shared.append(_frozen({**coupon.template_context(), "code": None}))
        return (language, tuple(map(bool, values.values())), *shared)

    def _shared_context(self, row: dict[str, Any], shape: Shape, values: dict[str, str]) -> dict[str, Any]:
        """The context of a group: shared values of its first row, placeholders for personal ones
        (an empty personal value is rendered as it is: every row of the group has it empty)."""
        full = self.context(row)
        context = {name: full[name] for name in shape.names if name in full}
        context.update(shop=self.shop, utm=self.utm, campaign=self.campaign_info)
        held = {path: Personal(path) if text else "" for path, text in values.items()}
        for name in shape.personal:
            if name == "customer":
                context["customer"] = {k: held[f"customer.{k}"] for k in CUSTOMER_FIELDS}
            elif name == "coupon":
                context["coupon"] = (
                    {**full["coupon"], "code": held["coupon.code"]} if full["coupon"] else None
                )
            elif name == "unsubscribe_url":
                context["unsubscribe_url"] = held["unsubscribe_url"] or None
            else:
                context[name] = held[name]
        return context

    def compose_many(self, rows: list[dict[str, Any]]) -> tuple[list[OutgoingMail], list[str]]:
        """Every row's mail (in order) and the render errors of rows that could not be composed.

        Rows whose context differs only in personal values share one rendered body (proved against
        full renders of a few of them); a template that inspects personal values, a value that
        cannot be substituted exactly, or a group smaller than `MIN_GROUP` is rendered per recipient."""
        mails: dict[int, OutgoingMail] = {}
        errors: list[str] = []
        groups: dict[tuple, list[int]] = {}
        personal: list[dict[str, str]] = []
        coupons = [self.coupon(row) for row in rows] if self.campaign.coupon else [None] * len(rows)
        languages: dict[Any, str] = {}
        shapes: dict[str, Shape] = {}
        last: tuple[Any, ...] | None = None  # (row, language, empty-value pattern, its group's members)
        for i, row in enumerate(rows):
            wanted = row.get("language")
            if wanted not in languages:
                languages[wanted] = self.renderer.language_for(wanted)
            language = languages[wanted]
            shape = shapes.get(language) or shapes.setdefault(language, self.shape(language))
            values = self._personal(shape, row, coupons[i])
            personal.append(values)
            if self.unshared:
                groups[("one", i)] = [i]
                continue
            pattern = tuple(map(bool, values.values()))
            if last is not None and coupons[i] is None and _same_group(row, last, language, pattern, shape):
                last[3].append(i)  # batches come in sharing order: most rows join the previous row's group
                continue
            members = groups.setdefault(self._group_key(language, shape, row, values, coupons[i]), [])
            members.append(i)
            last = (row, language, pattern, members) if coupons[i] is None else None
        for key, members in groups.items():
            if len(members) >= MIN_GROUP and self.unshared is None:
                self._compose_group(rows, personal, members, mails, key)
            for i in members:
                if i in mails:
                    continue
                try:
                    mails[i] = self.compose(rows[i])
                    self.stats["individual"] += 1
                except TemplateError as exc:
                    errors.append(f"customer {rows[i]['customer_id']}: {exc}")
        return [mails[i] for i in sorted(mails)], errors

    def _shared_body(self, first: dict[str, Any], key: tuple, personal: dict[str, str]) -> SharedBody:
        """The group's shared render, from the process-wide cache when a batch before rendered (and
        proved) the same body: the same campaign, shop settings, group key and product contents."""
        shape = self.shape(key[0])
        ids = [i for name in shape.by_row if isinstance(first.get(name), list) for i in first[name]]
        cache_key = (self._scope, key, _frozen([self.products.get(i) for i in ids]))
        body = self.renderer.shared_bodies.get(cache_key)
        if body is None:
            rendered = self.renderer.render(key[0], self._shared_context(first, shape, personal))
            present = tokens_in(rendered.subject, rendered.html, rendered.text)
            printed = [  # (path, its text token, its HTML token) in this body: only those are substituted
                (
                    path,
                    text_token(path) if text_token(path) in present else None,
                    html_token(path) if html_token(path) in present else None,
                )
                for path in personal
            ]
            body = SharedBody(rendered, [entry for entry in printed if entry[1] or entry[2]], cache_key)
        return body

    def _compose_group(
        self,
        rows: list[dict[str, Any]],
        personal: list[dict[str, str]],
        members: list[int],
        mails: dict[int, OutgoingMail],
        key: tuple,
    ) -> None:
        """Compose a group from one shared render, proved against full renders of a few members (the
        first, and per personal value the first whose value HTML-escaping or URL-quoting would
        change; a body proved by an earlier batch needs only the proofs it lacks); on any doubt the
        group is left to per-recipient rendering."""
        first = rows[members[0]]
        language = key[0]
        try:
            body = self._shared_body(first, key, personal[members[0]])
        except TemplateError as exc:
            if isinstance(exc.__cause__, PersonalValueUsed):
                self._unshare(language, str(exc.__cause__))
            return  # rendered one by one: each row's error is reported on its own
        shared, printed = body.rendered, body.printed
        composed: dict[int, OutgoingMail] = {}
        now = state_db.utcnow()
        canaries = set() if body.proven else {members[0]}
        unproved = {(entry[0], kind) for entry in printed for kind in ("html", "url")} - body.proven
        for i in members:
            subs = self._substitutions(personal[i], printed, unproved, canaries, i)
            if subs is None:
                continue  # composed alone by the caller
            row = rows[i]
            unsubscribe = personal[i].get("unsubscribe_url") or self.unsubscribe_url(int(row["customer_id"]))
            composed[i] = self._mail(row, shared, unsubscribe, subs, now)
        if not body.proven and composed and not canaries & composed.keys():
            canaries.add(min(composed))  # the first member went alone: prove the body on another
        for i in sorted(canaries & set(composed)):
            try:
                full = self.compose(rows[i])
            except TemplateError:
                return
            if composed[i].personalized() != full:
                self._unshare(language, "a shared render differs from the full render of a recipient")
                return
        if canaries & set(composed):  # what this group proved holds for every later use of the body
            kinds = {(entry[0], kind) for entry in printed for kind in ("html", "url")}
            body.proven |= (kinds - unproved) | {("", "render")}
            if len(self.renderer.shared_bodies) >= SHARED_BODIES:
                self.renderer.shared_bodies.clear()
            self.renderer.shared_bodies[body.cache_key] = body
        mails.update(composed)
        self.stats["shared"] += len(composed)

    def _facts(self, text: str) -> tuple[bool, str, bool]:
        """(can go in by substitution, HTML-escaped, changed by URL quoting) of a personal value,
        cached: first names repeat across a base."""
        facts = self._value_facts.get(text)
        if facts is None:
            if len(self._value_facts) >= 100_000:
                self._value_facts.clear()
            html = str(escape(text)) if _HTML_SPECIAL.search(text) else text
            facts = self._value_facts[text] = (safe_value(text), html, bool(_URL_SPECIAL.search(text)))
        return facts

    def _unsubscribe_facts(self, url: str) -> tuple[bool, str, bool]:
        """`_facts` of a link `unsubscribe_url` built: its fixed prefix, then a token of base64url
        characters and '.' (`links.unsubscribe_token`), which escaping leaves alone, so the facts of
        the prefix hold (not cached: every link is different). Token syntax is refused anywhere."""
        prefix = self._unsubscribe_prefix
        if TOKEN_PREFIX in url or not url.startswith(prefix):
            return self._facts(url)
        safe, html, _ = self._facts(prefix)
        return safe, url if html is prefix else html + url[len(prefix) :], True

    def _substitutions(
        self,
        values: dict[str, str],
        printed: list[tuple[str, str | None, str | None]],
        unproved: set[tuple[str, str]],
        canaries: set[int],
        i: int,
    ) -> dict[str, str] | None:
        """The substitutions of one recipient: token -> value for every token of the shared body
        (`printed`: (path, its text token, its HTML token) where the body holds them; an HTML
        token's value is escaped); None when a value cannot go in by substitution (`safe_value`).
        The first recipient whose value HTML escaping or URL quoting changes, per value, joins the
        `canaries` (rendered in full to prove the body)."""
        subs: dict[str, str] = {}
        for path, text_tok, html_tok in printed:
            text = values[path]
            safe, html, url_odd = (
                self._unsubscribe_facts(text) if path == "unsubscribe_url" else self._facts(text)
            )
            if not safe:
                return None
            if text_tok:
                subs[text_tok] = text
            if html_tok:
                subs[html_tok] = html
            if unproved:
                if html is not text and (path, "html") in unproved:
                    unproved.discard((path, "html"))
                    canaries.add(i)
                if url_odd and (path, "url") in unproved:
                    unproved.discard((path, "url"))
                    canaries.add(i)
        return subs

    def _unshare(self, language: str, why: str) -> None:
        """From now on render this composer's mails per recipient (logged once)."""
        if self.unshared is None:
            self.unshared = f"{self.campaign.template}/{language}: {why}"
            logger.warning("template %s; rendering per recipient", self.unshared)
