"""The shop profile: everything a customer can see in a mail, read from the settings.

`shop_profile(settings)` groups the customer-visible settings (names and their Russian grammatical
forms, sender, Reply-To, support contacts, social links, legal footer, page URLs, carrier tracking
URLs, currency, locale, brand colours and logo) into one immutable value the composer and the
templates use (`shop.*` in templates). `DEMO_PROFILE` lists the shipped demo value of each: a real send
refuses any of them still in use (`demo_profile_fields`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from config.settings import Settings

# Shipped demo values of the customer-visible settings (RFC 2606 reserved names, a made-up phone).
DEMO_SHOP_NAME = "Демо-магазин"
DEMO_PROFILE: dict[str, object] = {
    "shop_name": DEMO_SHOP_NAME,
    "shop_name_genitive": "Демо-магазина",
    "shop_name_prepositional": "Демо-магазине",
    "sender_name": DEMO_SHOP_NAME,
    "sender_email": "shop@shop.example",
    "reply_to": "support@shop.example",
    "shop_url": "https://shop.example",
    "support_email": "support@shop.example",
    "support_phone": "+7 800 000-00-00",
    "social_links": {"ВКонтакте": "https://vk.example/shop", "Telegram": "https://t.example/shop"},
    "legal_footer": "ООО «Демо-магазин», 101000, Москва, ул. Примерная, 1",
    "unsubscribe_url": "https://shop.example/unsubscribe",
    "unsubscribe_mailbox": "unsubscribe@shop.example",
    "logo_url": "https://shop.example/logo.png",
    # unset: tracking links use the campaign's default (Russian Post), wrong for most shops; '' = no link
    "tracking_url": None,
}


@dataclass(frozen=True, slots=True)
class Logo:
    url: str
    width: int
    height: int


@dataclass(frozen=True, slots=True)
class ShopProfile:
    """What a customer sees of the shop (see module docstring); built by `shop_profile`."""

    name: str
    name_genitive: str  # "Восстановление пароля в ..." takes the prepositional, "от ..." the genitive
    name_prepositional: str
    sender_name: str
    sender_email: str
    reply_to: str | None
    url: str
    support_email: str
    support_phone: str
    social_links: tuple[tuple[str, str], ...]
    legal_footer: str
    cart_url: str
    account_url: str
    orders_url: str
    product_url_template: str
    tracking_urls: tuple[tuple[str, str], ...]
    tracking_url: str | None  # orders without a known carrier; None: the campaign's tracking_url param
    currency: str
    locale: str
    brand_color: str
    brand_text_color: str
    logo: Logo | None
    unsubscribe_url: str
    extra: dict[str, str] = field(default_factory=dict)

    def forms(self) -> dict[str, str]:
        """The shop name's grammatical forms (`shop.name_genitive` etc. in templates)."""
        return {
            "nominative": self.name,
            "genitive": self.name_genitive,
            "prepositional": self.name_prepositional,
        }


def shop_profile(settings: Settings) -> ShopProfile:
    """The profile of the configured shop."""
    logo = (
        Logo(settings.logo_url, settings.logo_width, settings.logo_height)
        if (settings.logo_url or "").strip()
        else None
    )
    return ShopProfile(
        name=settings.shop_name,
        name_genitive=settings.shop_name_genitive or settings.shop_name,
        name_prepositional=settings.shop_name_prepositional or settings.shop_name,
        sender_name=settings.sender_name,
        sender_email=settings.sender_email,
        reply_to=settings.reply_to_resolved,
        url=settings.shop_url,
        support_email=settings.support_email,
        support_phone=settings.support_phone,
        social_links=tuple(settings.social_links.items()),
        legal_footer=settings.legal_footer,
        cart_url=settings.shop_link(settings.cart_path),
        account_url=settings.shop_link(settings.account_path),
        orders_url=settings.shop_link(settings.orders_path),
        product_url_template=settings.product_url_template,
        tracking_urls=tuple(settings.tracking_urls.items()),
        tracking_url=settings.tracking_url,
        currency=settings.currency,
        locale=settings.locale,
        brand_color=settings.brand_color,
        brand_text_color=settings.brand_text_color,
        logo=logo,
        unsubscribe_url=settings.unsubscribe_url,
    )


BLANK_MEANS_DEFAULT = {"reply_to", "shop_name_genitive", "shop_name_prepositional"}  # -> another setting


DEMO_HOSTS = ("shop.example", "vk.example", "t.example")  # the demo's reserved hosts (RFC 2606)
_HOST = re.compile(r"(?:@|//)([^/:?#\s@]+)")


def _demo_host(text: str) -> bool:
    """`text` names one of the demo's hosts (an address or a link to it or to a subdomain of it):
    'support@shop.example', 'https://mail.shop.example/u'; not 'mail@e2e-shop.example.org'."""
    hosts = [h.lower().rstrip(".") for h in _HOST.findall(text)]
    return any(h == demo or h.endswith("." + demo) for h in hosts for demo in DEMO_HOSTS)


def _is_demo(field_name: str, value: object) -> bool:
    demo = DEMO_PROFILE[field_name]
    if isinstance(demo, str):
        text = str(value or "").strip()
        blank = not text and field_name not in BLANK_MEANS_DEFAULT
        return blank or text.lower() == demo.lower() or _demo_host(text)
    if isinstance(demo, dict) and isinstance(value, dict):
        return value == demo or any(_demo_host(str(url)) for url in value.values())
    return value == demo


def demo_profile_fields(settings: Settings) -> list[str]:
    """Customer-visible settings still at a shipped demo value (or blank where a value is needed)."""
    found = []
    for name in DEMO_PROFILE:
        value = settings.reply_to if name == "reply_to" else getattr(settings, name)
        if name == "reply_to" and value is None:
            continue  # unset: Reply-To falls back to support_email, which is checked on its own
        if name in ("logo_url", "unsubscribe_mailbox") and not (value or "").strip():
            continue  # no logo: the shop name is shown; no mailbox: the https unsubscribe link only
        if _is_demo(name, value):
            found.append(name)
    return found


PROFILE_MEANING = {  # what each customer-visible setting is, as `check-shop` lists the profile
    "shop_name": "shop name (nominative: 'Ромашка')",
    "shop_name_genitive": "shop name, genitive ('от Ромашки')",
    "shop_name_prepositional": "shop name, prepositional ('в Ромашке')",
    "sender_name": "From name",
    "sender_email": "From address (a domain authenticated in SendGrid)",
    "reply_to": "Reply-To (empty: the support address)",
    "shop_url": "shop home page",
    "support_email": "support address in every footer",
    "support_phone": "support phone in every footer",
    "social_links": "social links in every footer (JSON name -> URL; {} for none)",
    "legal_footer": "legal name and postal address in every footer",
    "unsubscribe_url": "public one-click unsubscribe endpoint (the feedback app)",
    "logo_url": "logo in the header (empty: the shop name)",
    "tracking_url": "parcel tracking page with {tracking_number} (empty: no link)",
}


@dataclass(frozen=True)
class ProfileRow:
    """One customer-visible setting as `shopmail check-shop` shows it."""

    setting: str  # the environment variable
    meaning: str
    value: str
    demo: bool  # still the shipped demo value (or blank where a value is needed): a real send refuses it


def profile_rows(settings: Settings) -> list[ProfileRow]:
    """The shop profile, setting by setting, with the demo values a real send would refuse, then the
    page URLs and carrier tracking URLs the mails link to (docs/connect/index.md)."""
    demo = set(demo_profile_fields(settings))
    rows = []
    for name, meaning in PROFILE_MEANING.items():
        value = getattr(settings, name)
        if name == "reply_to" and not value:
            value = f"(support address: {settings.reply_to_resolved or '-'})"
        elif name == "tracking_url" and value is None:
            value = "(unset: the campaign's default tracking page)"
        elif name == "logo_url" and not value:
            value = "(none)"
        rows.append(ProfileRow("SHOPMAIL_" + name.upper(), meaning, str(value), name in demo))
    profile = shop_profile(settings)
    pages = (
        ("SHOPMAIL_CART_PATH", "cart page", profile.cart_url),
        ("SHOPMAIL_ACCOUNT_PATH", "account page", profile.account_url),
        ("SHOPMAIL_ORDERS_PATH", "order history page", profile.orders_url),
        ("SHOPMAIL_PRODUCT_PATH", "product page (products without a url)", profile.product_url_template),
    )
    rows += [ProfileRow(env, meaning, url, False) for env, meaning, url in pages]
    for carrier, url in profile.tracking_urls:
        rows.append(ProfileRow("SHOPMAIL_TRACKING_URLS", f"tracking page of carrier {carrier!r}", url, False))
    rows.append(ProfileRow("SHOPMAIL_CURRENCY", "currency of prices", profile.currency, False))
    rows.append(ProfileRow("SHOPMAIL_LOCALE", "locale", profile.locale, False))
    return rows
