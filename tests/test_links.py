"""Every link that goes into a mail is checked (issue 29): a `javascript:` product URL put
`href="javascript:alert(1)//?utm_source=…"` into every mail of a campaign. Products with a bad link are
set aside with the reason; a bad link in the settings or a campaign file refuses to start."""

from __future__ import annotations

import email
import email.policy
import shutil
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

import shopmail.campaigns
from config.settings import Settings, get_settings
from config.urls import shop_hosts, url_problem
from shopmail.campaigns import broken_campaigns, registry
from shopmail.cli import app
from shopmail.db import get_engine
from shopmail.devtools.demo_shop import generate_demo_shop
from shopmail.run.errors import CONFIG_EXIT
from tests.test_addresses import refused_at_start
from tests.test_bad_data import _quarantined

ROOT = Path(__file__).resolve().parent.parent
AS_OF = date(2026, 11, 23)
SHOP = shop_hosts("https://www.shop.example", ["catalog.example"])


@pytest.mark.parametrize(
    ("url", "allow_http", "hosts", "reason"),
    [
        ("https://shop.example/p/1", False, SHOP, None),
        ("https://www.shop.example/p/1?x=1#top", False, SHOP, None),
        ("https://cdn.shop.example/img/1.jpg", False, SHOP, None),  # a subdomain of the shop
        ("https://catalog.example/p/1", False, SHOP, None),  # SHOPMAIL_LINK_HOSTS
        ("https://магазин.рф/p/1", False, (), None),  # any host: a carrier, a social network
        ("http://shop.example/p/1", True, SHOP, None),
        ("javascript:alert(1)", False, SHOP, "a 'javascript:' link"),
        ("JavaScript:alert(1)", False, (), "a 'javascript:' link"),
        ("data:text/html;base64,PHNjcmlwdD4=", False, (), "a 'data:' link"),
        ("vbscript:msgbox(1)", False, (), "a 'vbscript:' link"),
        ("mailto:a@shop.example", False, (), "a 'mailto:' link"),
        ("http://shop.example/p/1", False, SHOP, "SHOPMAIL_ALLOW_HTTP_LINKS=true allows http"),
        ("https://user:pw@shop.example/p/1", False, SHOP, "a user name or password"),
        ("https://shop.example@evil.example/p/1", False, SHOP, "a user name or password"),
        ("https://shop.example/p/1\r\nSet-Cookie: x", False, SHOP, "control character"),
        ("https://shop.example/p 1", False, SHOP, "a space"),
        ("https://shop.example/p/\u202egpj.exe", False, SHOP, "control character"),  # right-to-left override
        ("//evil.example/p/1", False, SHOP, "not a full https:// link"),
        ("/p/1", False, SHOP, "not a full https:// link"),
        ("https:\\\\evil.example\\p", False, SHOP, "a backslash"),
        ("https://evil.example/p/1", False, SHOP, "host 'evil.example' is not the shop's"),
        ("https://shop.example.evil.example/p/1", False, SHOP, "is not the shop's"),
        ("https://xshop.example/p/1", False, SHOP, "is not the shop's"),
        ("https://shop.example:99999/p", False, SHOP, "a broken host or port"),
        ("https://shop.example/" + "x" * 2100, False, SHOP, "longer than 2,048 characters"),
    ],
)
def test_the_link_rule(url: str, allow_http: bool, hosts: tuple[str, ...], reason: str | None) -> None:
    problem = url_problem(url, allow_http=allow_http, hosts=hosts)
    if reason is None:
        assert problem is None, problem
    else:
        assert problem is not None and reason in problem, problem


@pytest.mark.parametrize(
    ("variable", "value", "said"),
    [
        (
            "SHOPMAIL_SOCIAL_LINKS",
            '{"VK": "javascript:alert(1)"}',
            "'javascript:alert(1)': a 'javascript:' link",
        ),
        ("SHOPMAIL_CART_PATH", "https://evil.example/cart", "host 'evil.example' is not the shop's"),
        ("SHOPMAIL_SHOP_URL", "http://shop.example", "SHOPMAIL_ALLOW_HTTP_LINKS=true allows http"),
        ("SHOPMAIL_UNSUBSCRIBE_URL", "https://u:p@mail.shop.example/unsubscribe", "a user name or password"),
        ("SHOPMAIL_LOGO_URL", "data:image/png;base64,iVBORw0KGgo=", "a 'data:' link"),
        (
            "SHOPMAIL_TRACKING_URLS",
            '{"cdek": "cdek.ru/track?n={tracking_number}"}',
            "not a full https:// link",
        ),
        ("SHOPMAIL_PRODUCT_PATH", "/product/{id}\t", "control character"),
    ],
)
def test_a_bad_link_in_the_settings_refuses_the_run_at_start(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, variable: str, value: str, said: str
) -> None:
    output = refused_at_start(monkeypatch, variable, value)
    assert f"Configuration error: {variable}: " in output and said in output, output


def test_http_links_need_the_setting_and_shop_pages_the_shop_host(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SHOPMAIL_SHOP_URL", "http://shop.example")
    monkeypatch.setenv("SHOPMAIL_ALLOW_HTTP_LINKS", "true")
    monkeypatch.setenv("SHOPMAIL_CART_PATH", "https://pay.example/cart")
    monkeypatch.setenv("SHOPMAIL_LINK_HOSTS", "pay.example")
    get_settings.cache_clear()
    allowed = get_settings()
    assert allowed.shop_link(allowed.cart_path) == "https://pay.example/cart"
    assert allowed.shop_hosts == ("shop.example", "pay.example")


def test_a_bad_link_in_a_campaign_file_disables_that_campaign(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "campaigns"
    folder.mkdir()
    for name in ("sale", "order_shipped", "wakeup"):
        shutil.copy(ROOT / "config" / "campaigns" / f"{name}.toml", folder)
    sale = folder / "sale.toml"
    sale.write_text(sale.read_text(encoding="utf-8").replace('url = ""', 'url = "javascript:alert(1)"'))
    shipped = folder / "order_shipped.toml"
    shipped.write_text(
        shipped.read_text(encoding="utf-8").replace("https://www.pochta.ru", "http://www.pochta.ru")
    )
    monkeypatch.setattr(shopmail.campaigns, "CAMPAIGNS_DIR", folder)
    registry.cache_clear()
    try:
        broken = broken_campaigns()
        assert list(registry()) == ["wakeup"]
        assert "sale.toml: params.url: 'javascript:alert(1)': a 'javascript:' link" in broken["sale"]
        assert "params.tracking_url" in broken["order_shipped"] and "http://" in broken["order_shipped"]
        ran = CliRunner().invoke(app, ["run", "sale", "--dry-run"])
        assert (
            ran.exit_code == CONFIG_EXIT and "campaign 'sale' is disabled, its file is broken" in ran.output
        )
    finally:
        registry.cache_clear()


@pytest.mark.flow
def test_a_javascript_product_link_never_reaches_a_mail(prefect_harness, settings: Settings) -> None:
    """The newest products of a new-arrivals mail: one with a `javascript:` link and one on another
    host are set aside with the reason, one with a `data:` picture is mailed without the picture."""
    from flows.campaign import campaign_flow

    generate_demo_shop(settings.shop_url_resolved, customers=500, seed=7, today=AS_OF)
    shop = get_engine(settings.shop_url_resolved)
    with shop.begin() as conn:
        newest = conn.execute(text("SELECT id, name FROM products WHERE in_stock ORDER BY id LIMIT 5")).all()
        for hours, (pid, _name) in enumerate(newest):  # the week's new arrivals, newest first
            added = datetime(2026, 11, 22, 12) - timedelta(hours=hours)
            conn.execute(text("UPDATE products SET created_at = :t WHERE id = :i"), {"t": added, "i": pid})
        (script_id, _), (foreign_id, _), (picture_id, picture_name) = newest[:3]
        conn.execute(text("UPDATE products SET url = 'javascript:alert(1)' WHERE id = :i"), {"i": script_id})
        conn.execute(
            text("UPDATE products SET url = 'https://evil.example/p' WHERE id = :i"), {"i": foreign_id}
        )
        conn.execute(
            text("UPDATE products SET image_url = 'data:image/svg+xml;base64,PHN2Zz4=' WHERE id = :i"),
            {"i": picture_id},
        )
    report = campaign_flow(campaign="new_arrivals", as_of=AS_OF, preapproved=True)
    files = sorted(settings.outbox_path.glob("*.eml"))
    assert report.counts()["sent"] == len(files) > 100
    for path in files[:50] + files[-50:]:
        mail = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        body = "".join(
            part.get_content() for part in mail.walk() if part.get_content_type().startswith("text/")
        )
        assert "javascript:" not in body.lower() and "evil.example" not in body and "data:image" not in body
        assert picture_name in body  # still offered, without its picture
    stored = _quarantined(settings, "products")
    assert "url:valid_link (a 'javascript:' link, not a web page (https only))" in stored[str(script_id)]
    assert "host 'evil.example' is not the shop's" in stored[str(foreign_id)]
    assert str(picture_id) not in stored
    assert "| products | url | must be a safe link | row set aside, never mailed | " in report.checks_markdown
    row = "| products | image_url | must be a safe link | value treated as missing | "
    assert row in report.checks_markdown
