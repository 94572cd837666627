"""UTM tags, unsubscribe tokens and the sandboxed, strict, autoescaped renderer."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from shopmail.mail.links import add_utm, unsubscribe_link, unsubscribe_token, verify_unsubscribe_token
from shopmail.mail.rendering import Renderer, TemplateError


def test_add_utm_keeps_other_params_and_replaces_old_utm() -> None:
    url = add_utm(
        "https://shop.ru/p/1?color=red&utm_source=old#top",
        source="shopmail",
        medium="email",
        campaign="wakeup",
        content="related",
    )
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    assert query == {
        "color": ["red"],
        "utm_source": ["shopmail"],
        "utm_medium": ["email"],
        "utm_campaign": ["wakeup"],
        "utm_content": ["related"],
    }
    assert parts.fragment == "top"


def test_unsubscribe_token_roundtrip_and_tamper_detection() -> None:
    token = unsubscribe_token("s3cret", 42, "wakeup")
    assert verify_unsubscribe_token("s3cret", token) == (42, "wakeup")
    assert verify_unsubscribe_token("other", token) is None
    payload, sig = token.split(".")
    forged = unsubscribe_token("s3cret", 43, "wakeup").split(".")[0] + "." + sig
    assert verify_unsubscribe_token("s3cret", forged) is None
    assert verify_unsubscribe_token("s3cret", "garbage") is None
    assert "@" not in token
    link = unsubscribe_link("https://shop.ru/unsub", "s3cret", 42, "wakeup")
    assert parse_qs(urlsplit(link).query)["token"] == [token]


def _write(folder: Path, name: str, text: str) -> None:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


CTX = {"utm": {"source": "s", "medium": "m", "campaign": "c"}, "name": "<b>Ann</b>", "url": "https://x.ru/a"}


@pytest.fixture
def templates(tmp_path: Path) -> Path:
    _write(tmp_path, "t/ru/subject.j2", "Привет, {{ name }}")
    _write(tmp_path, "t/ru/body.html.j2", '<p>{{ name }}</p><a href="{{ url | utm("x") }}">go</a>')
    _write(tmp_path, "t/ru/body.txt.j2", "{{ name }} {{ url | utm }}")
    _write(tmp_path, "t/en/subject.j2", "Hi, {{ name }}")
    _write(tmp_path, "t/en/body.html.j2", "<p>{{ name }}</p>")
    _write(tmp_path, "t/en/body.txt.j2", "{{ name }}")
    return tmp_path


def test_html_is_autoescaped_text_and_subject_are_not(templates: Path) -> None:
    mail = Renderer("t", templates).render("ru", CTX)
    assert "&lt;b&gt;Ann&lt;/b&gt;" in mail.html
    assert "utm_content=x" in mail.html and "utm_campaign=c" in mail.html
    assert mail.subject == "Привет, <b>Ann</b>"
    assert mail.text.startswith("<b>Ann</b> https://x.ru/a?utm_source=s")


def test_language_choice_and_fallback(templates: Path) -> None:
    renderer = Renderer("t", templates, default_language="ru")
    assert renderer.render("en", CTX).subject.startswith("Hi")
    assert renderer.render("de", CTX).subject.startswith("Привет")
    assert renderer.render(None, CTX).subject.startswith("Привет")


def test_undefined_variable_is_an_error(templates: Path) -> None:
    _write(templates, "u/ru/subject.j2", "{{ missing_name }}")
    _write(templates, "u/ru/body.html.j2", "x")
    _write(templates, "u/ru/body.txt.j2", "x")
    with pytest.raises(TemplateError, match="missing_name"):
        Renderer("u", templates).render("ru", CTX)


def test_sandbox_blocks_unsafe_attribute_access(templates: Path) -> None:
    _write(templates, "evil/ru/subject.j2", "{{ ''.__class__.__mro__[1].__subclasses__() }}")
    _write(templates, "evil/ru/body.html.j2", "x")
    _write(templates, "evil/ru/body.txt.j2", "x")
    with pytest.raises(TemplateError, match="unsafe|SecurityError"):
        Renderer("evil", templates).render("ru", CTX)


def test_syntax_error_names_the_template(templates: Path) -> None:
    _write(templates, "bad/ru/subject.j2", "{% if %}")
    with pytest.raises(TemplateError, match="bad/ru/subject.j2"):
        Renderer("bad", templates).render("ru", CTX)


def test_money_and_date_filters(templates: Path) -> None:
    _write(templates, "f/ru/subject.j2", "x")
    _write(templates, "f/ru/body.html.j2", "x")
    _write(templates, "f/ru/body.txt.j2", "{{ 12345.6 | money }} {{ d | human_date }}")
    mail = Renderer("f", templates).render("ru", {**CTX, "d": date(2026, 3, 8)})
    assert mail.text == "12\u00a0345,60\u00a0₽ 8 марта 2026\n"  # kopecks kept, never rounded away


def test_money_follows_the_shop_currency_the_order_currency_and_the_mail_language(templates: Path) -> None:
    """£24.99 stays £24.99 (not '25 GBP'); whole amounts drop the decimals; an order's own currency
    wins over the shop's; None (no `currency` column) is the shop's; each language writes it its way."""
    for language in ("ru", "en"):
        _write(templates, f"m/{language}/subject.j2", "x")
        _write(templates, f"m/{language}/body.html.j2", "x")
        _write(
            templates,
            f"m/{language}/body.txt.j2",
            "{{ 24.99 | money }}|{{ 25 | money }}|{{ 1990 | money('RUB') }}|{{ 7 | money(none) }}",
        )
    renderer = Renderer("m", templates, currency="GBP")
    assert renderer.render("en", CTX).text == "£24.99|£25|RUB\u00a01,990|£7\n"
    assert renderer.render("ru", CTX).text == "24,99\u00a0£|25\u00a0£|1\u00a0990\u00a0₽|7\u00a0£\n"


@pytest.mark.parametrize(
    "expression",
    [
        "{{ customer.update(first_name='Mallory') }}",
        "{{ shop.clear() }}",
        "{{ shop.social.append(('Spam', 'https://evil.example')) }}",
        "{{ items.pop() }}",
        "{{ customer.setdefault('vip', True) }}",
        "{% set _ = shop.update({'url': 'https://evil.example'}) %}",
    ],
)
def test_a_template_cannot_change_the_data_the_next_recipient_sees(templates: Path, expression: str) -> None:
    """`shop` (and product dicts) are shared by every mail of a run: the immutable sandbox refuses
    any mutating method, so one template cannot alter another recipient's mail."""
    from jinja2.exceptions import SecurityError

    _write(templates, "mut/ru/subject.j2", "x")
    _write(templates, "mut/ru/body.html.j2", expression)
    _write(templates, "mut/ru/body.txt.j2", "{{ customer.first_name }} {{ shop.url }} {{ items | length }}")
    shop = {"url": "https://shop.example", "social": [("VK", "https://vk.example/shop")]}
    items = [{"id": 1}, {"id": 2}]
    customer = {"id": 7, "first_name": "Ann"}
    before = repr((shop, items, customer))
    with pytest.raises(TemplateError, match="SecurityError") as caught:
        Renderer("mut", templates).render("ru", {**CTX, "shop": shop, "items": items, "customer": customer})
    assert isinstance(caught.value.__cause__, SecurityError)
    assert repr((shop, items, customer)) == before
