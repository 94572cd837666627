"""Jinja2 rendering of mails: sandboxed, autoescaped HTML, StrictUndefined, ru/en per recipient."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

from jinja2 import FileSystemLoader, StrictUndefined, TemplateNotFound, pass_context
from jinja2.sandbox import SandboxedEnvironment
from markupsafe import Markup

from shopmail.mail.links import add_utm

TEMPLATES_DIR = Path(__file__).resolve().parents[2] / "email_templates"
LANGUAGES = ("ru", "en")
PARTS = ("subject.j2", "body.html.j2", "body.txt.j2")
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


def _autoescape(name: str | None) -> bool:
    return bool(name) and name.endswith((".html.j2", ".html"))


@pass_context
def _utm(context: Any, url: str, content: str | None = None) -> str:
    utm = context["utm"]
    return add_utm(url, source=utm["source"], medium=utm["medium"], campaign=utm["campaign"], content=content)


def _money(value: float, currency: str = "RUB") -> str:
    whole = f"{round(float(value)):,}".replace(",", "\u00a0")
    return f"{whole}\u00a0₽" if currency == "RUB" else f"{whole}\u00a0{currency}"


def _human_date(value: date | datetime, language: str = "ru") -> str:
    if language == "ru":
        return f"{value.day} {MONTHS_RU[value.month - 1]} {value.year}"
    return value.strftime("%B %-d, %Y")


def make_environment(folder: Path = TEMPLATES_DIR) -> SandboxedEnvironment:
    env = SandboxedEnvironment(
        loader=FileSystemLoader(str(folder)),
        autoescape=_autoescape,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
        auto_reload=False,  # templates do not change during a run; saves a stat per include
    )
    env.filters.update(utm=_utm, money=_money, human_date=_human_date)
    return env


PRODUCT_BLOCKS = {"grid": "_partials/product_grid.html.j2", "list": "_partials/product_list.txt.j2"}
_BLOCK_CACHE_SIZE = 20_000


class Renderer:
    """Renders a campaign's template folder for one recipient context at a time."""

    def __init__(self, template: str, folder: Path = TEMPLATES_DIR, default_language: str = "ru"):
        self.env = make_environment(folder)
        self.template = template
        self.default_language = default_language
        self._cache: dict[tuple[str, str], Any] = {}
        self._blocks: dict[tuple, str] = {}
        self.env.globals["product_block"] = self._product_block_global()

    def _product_block_global(self) -> Any:
        """`product_block(items, utm_content, "grid"|"list")`: a product grid (HTML) or list (text),
        rendered once per distinct product set and reused for every recipient who gets it."""

        @pass_context
        def product_block(context: Any, items: list[dict], utm_content: str, layout: str = "grid") -> str:
            ids = tuple(item["id"] for item in items)
            key = (layout, utm_content, context["utm"]["campaign"], ids)
            block = self._blocks.get(key)
            if block is None:
                if len(self._blocks) >= _BLOCK_CACHE_SIZE:
                    self._blocks.clear()
                part = self.env.get_template(PRODUCT_BLOCKS[layout])
                rendered = part.render(items=items, utm_content=utm_content, utm=context["utm"])
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

    def render(self, language: str | None, context: dict[str, Any]) -> RenderedMail:
        lang = self.language_for(language)
        ctx = {**context, "language": lang}
        try:
            subject = self._part(lang, "subject.j2").render(ctx)
            html = self._part(lang, "body.html.j2").render(ctx)
            text = self._part(lang, "body.txt.j2").render(ctx)
        except TemplateError:
            raise
        except Exception as exc:
            raise TemplateError(f"{self.template}/{lang}: {type(exc).__name__}: {exc}") from exc
        return RenderedMail(" ".join(subject.split()), html, text.strip() + "\n")
