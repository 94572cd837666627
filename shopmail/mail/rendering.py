"""Jinja2 rendering of mails: immutable sandbox, autoescaped HTML, StrictUndefined, ru/en per recipient."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import date, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from babel import Locale, UnknownLocaleError
from babel.numbers import format_currency
from jinja2 import FileSystemLoader, StrictUndefined, TemplateNotFound, pass_context
from jinja2.sandbox import ImmutableSandboxedEnvironment
from markupsafe import Markup

from shopmail.mail.links import add_utm
from shopmail.mail.personalize import html_of_text
from shopmail.mail.typography import TypographyExtension, typography

TEMPLATES_DIR = Path(__file__).resolve().parents[2] / "email_templates"
LANGUAGES = ("ru", "en")
PARTS = ("subject.j2", "body.html.j2", "body.txt.j2")
PREHEADER = "preheader.j2"  # optional per campaign and language; else the layouts' default
DEFAULT_PREHEADER = "_layouts/preheader.j2"
RENDERER_NAMES = frozenset({"preheader"})  # context names the renderer itself provides
MONTHS_RU = (
    "января",
    "февраля",
    "марта",
    "апреля",
    "мая",
    "июня",
    "июля",
    "августа",
    "сентября",
    "октября",
    "ноября",
    "декабря",
)


class TemplateError(RuntimeError):
    """A template is missing or cannot be rendered with the data given."""


@dataclass(frozen=True, slots=True)
class RenderedMail:
    subject: str
    html: str
    text: str
    preheader: str = ""  # the inbox preview line (in the HTML, hidden); kept for the length check


def _autoescape(name: str | None) -> bool:
    return bool(name) and name.endswith((".html.j2", ".html"))


@pass_context
def _utm(context: Any, url: str, content: str | None = None) -> str:
    utm = context["utm"]
    return add_utm(url, source=utm["source"], medium=utm["medium"], campaign=utm["campaign"], content=content)


def format_money(value: float, currency: str, language: str = "ru") -> str:
    """`value` in `currency` as the mail's language writes money (CLDR via Babel): '1 990 ₽',
    '24,99 £' (ru); '£24.99', 'RUB 1,990' (en). Whole amounts without decimals, others with the
    currency's own decimals, never rounded away."""
    try:
        locale = Locale.parse(language.replace("-", "_"))
    except (UnknownLocaleError, ValueError, TypeError):
        locale = Locale.parse("en")
    amount = float(value)
    pattern = locale.currency_formats["standard"].pattern
    if amount == round(amount):
        pattern = pattern.replace(".00", "")
    text = format_currency(
        amount, currency, format=pattern, locale=locale, currency_digits=pattern.count("0.") > 0
    )
    return text.replace(currency, currency + "\u00a0") if text.startswith(currency) else text


def money_filter(shop_currency: str, default_language: str) -> Any:
    """The `money` filter: `{{ total | money }}` in the shop currency, `{{ total | money(currency) }}` in
    an order's own currency (None, NaN or blank, as pandas gives a missing one: the shop's), formatted for
    the mail's language."""

    @pass_context
    def money(context: Any, value: float, currency: str | None = None) -> str:
        language = context.get("language") or default_language
        own = currency.strip() if isinstance(currency, str) else ""
        return format_money(value, own or shop_currency, language)

    return money


@pass_context
def _typography(context: Any, text: str) -> str:
    """`{{ headline | typography }}`: the mail language's typography on text a campaign file supplies."""
    return typography(str(text), context.get("language") or "ru")


def _human_date(value: date | datetime, language: str = "ru") -> str:
    if language == "ru":
        return f"{value.day} {MONTHS_RU[value.month - 1]} {value.year}"
    return value.strftime("%B %-d, %Y")


def make_environment(
    folder: Path = TEMPLATES_DIR, currency: str = "RUB", default_language: str = "ru"
) -> ImmutableSandboxedEnvironment:
    """The templates' Jinja2 environment: sandboxed and immutable (a template cannot change the
    shared `shop`/`customer`/product data the next recipient sees: `.update()`, `.append()`,
    `.clear()` ... raise `SecurityError`), HTML autoescaped, undefined names are errors."""
    env = ImmutableSandboxedEnvironment(
        loader=FileSystemLoader(str(folder)),
        autoescape=_autoescape,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
        auto_reload=False,  # templates do not change during a run; saves a stat per include
        extensions=[TypographyExtension],  # literal text gets its language's typography when compiled
    )
    env.filters.update(
        utm=_utm,
        money=money_filter(currency, default_language),
        human_date=_human_date,
        typography=_typography,
    )
    return env


PRODUCT_BLOCKS = {"grid": "_partials/product_grid.html.j2", "list": "_partials/product_list.txt.j2"}
_BLOCK_CACHE_SIZE = 20_000


def _product_key(item: dict) -> tuple:
    """A product's contents as a hashable key (unhashable values by their repr)."""
    return tuple(
        (k, v if isinstance(v, str | int | float | bool | None) else repr(v)) for k, v in item.items()
    )


class Renderer:
    """Renders a campaign's template folder for one recipient context at a time."""

    def __init__(
        self, template: str, folder: Path = TEMPLATES_DIR, default_language: str = "ru", currency: str = "RUB"
    ):
        self.env = make_environment(folder, currency, default_language)
        self.template = template
        self.default_language = default_language
        self._cache: dict[tuple[str, str], Any] = {}
        self._blocks: dict[tuple, str] = {}
        # shared renders of render-once groups, kept for the next batches (shopmail/run/composer.py)
        self.shared_bodies: dict[tuple, Any] = {}
        self.length_reports: dict[tuple, Any] = {}  # subject/preheader checks per shop (run/length_check.py)
        self.env.globals["product_block"] = self._product_block_global()

    def _product_block_global(self) -> Any:
        """`product_block(items, utm_content, "grid"|"list")`: a product grid (HTML) or list (text),
        rendered once per distinct product set and reused for every recipient who gets it. Keyed by
        the products' contents, not their ids: the same id may carry other data (a sample product, a
        price changed since an earlier run of a long-lived process)."""

        @pass_context
        def product_block(context: Any, items: list[dict], utm_content: str, layout: str = "grid") -> str:
            ids = tuple(_product_key(item) for item in items)
            language = context.get("language") or self.default_language
            shop = context["shop"]
            brand = (shop.get("brand_color"), shop.get("brand_text_color"))
            key = (layout, utm_content, context["utm"]["campaign"], language, ids, brand)
            block = self._blocks.get(key)
            if block is None:
                if len(self._blocks) >= _BLOCK_CACHE_SIZE:
                    self._blocks.clear()
                part = self.env.get_template(PRODUCT_BLOCKS[layout])
                rendered = part.render(
                    items=items, utm_content=utm_content, utm=context["utm"], language=language, shop=shop
                )
                block = self._blocks[key] = Markup(rendered) if layout == "grid" else rendered
            return block

        return product_block

    def language_for(self, wanted: str | None) -> str:
        return wanted if wanted in LANGUAGES and self._has(wanted) else self.default_language

    def _has(self, language: str) -> bool:
        try:
            self._part(language, "subject.j2")
            return True
        except TemplateError:
            return False

    def _part(self, language: str, part: str) -> Any:
        key = (language, part)
        if key not in self._cache:
            name = f"{self.template}/{language}/{part}"
            try:
                self._cache[key] = self.env.get_template(name)
            except TemplateNotFound as exc:
                raise TemplateError(f"template not found: {name}") from exc
            except Exception as exc:  # syntax errors carry the line number
                raise TemplateError(f"{name}: {exc}") from exc
        return self._cache[key]

    def _preheader_part(self, language: str) -> Any:
        """The campaign's preheader template in `language`, else the layouts' default."""
        key = (language, PREHEADER)
        if key not in self._cache:
            try:
                self._cache[key] = self._part(language, PREHEADER)
            except TemplateError as exc:
                if not isinstance(exc.__cause__, TemplateNotFound):
                    raise
                try:
                    self._cache[key] = self.env.get_template(DEFAULT_PREHEADER)
                except TemplateNotFound:  # a template folder without layouts: no preheader
                    self._cache[key] = self.env.from_string("")
                except Exception as default_exc:
                    raise TemplateError(f"{DEFAULT_PREHEADER}: {default_exc}") from default_exc
        return self._cache[key]

    def part_names(self, language: str) -> list[str]:
        """The templates a mail in `language` is rendered from (its layouts and partials aside)."""
        names = [f"{self.template}/{language}/{part}" for part in PARTS]
        preheader = self._preheader_part(language).name
        return [*names, preheader] if preheader else names

    def preheader(self, language: str, context: dict[str, Any]) -> str:
        """The preheader in `language`, whitespace normalised."""
        return " ".join(self._preheader_part(language).render(context).split())

    def render(self, language: str | None, context: dict[str, Any]) -> RenderedMail:
        lang = self.language_for(language)
        ctx = {**context, "language": lang}
        try:
            subject = self._part(lang, "subject.j2").render(ctx)
            preheader = self.preheader(lang, ctx)
            ctx["preheader"] = html_of_text(preheader)
            html = self._part(lang, "body.html.j2").render(ctx)
            text = self._part(lang, "body.txt.j2").render(ctx)
        except TemplateError:
            raise
        except Exception as exc:
            raise TemplateError(f"{self.template}/{lang}: {type(exc).__name__}: {exc}") from exc
        return RenderedMail(" ".join(subject.split()), html, text.strip() + "\n", preheader)


def _folder_signature(folder: Path, template: str) -> tuple[int, ...]:
    """Changes when any file of the campaign's templates, layouts or partials changes."""
    stamps: list[int] = []
    for sub in (template, "_layouts", "_partials"):
        for root, _dirs, files in os.walk(folder / sub):
            stamps.extend(os.stat(os.path.join(root, f)).st_mtime_ns for f in files)
    return (len(stamps), max(stamps, default=0), sum(stamps))


@lru_cache(maxsize=32)
def _cached_renderer(
    template: str, folder: Path, default_language: str, currency: str, _signature: tuple[int, ...]
) -> Renderer:
    return Renderer(template, folder, default_language, currency)


def renderer_for(
    template: str, folder: Path = TEMPLATES_DIR, default_language: str = "ru", currency: str = "RUB"
) -> Renderer:
    """A `Renderer` shared by every batch of a process (templates compiled once, not per batch),
    renewed when a template file changes (a long-running `shopmail serve` sees edits)."""
    folder = Path(folder)
    return _cached_renderer(template, folder, default_language, currency, _folder_signature(folder, template))
