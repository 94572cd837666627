"""The link rule: every URL that goes into a mail (settings, campaign files, the shop's products).

A link must be absolute `https://host/...` (`http` only where SHOPMAIL_ALLOW_HTTP_LINKS allows it),
with a valid host name (Unicode hosts are judged in punycode), no user name or password, no spaces or
control characters, at most `MAX_URL` characters. `javascript:`, `data:`, `mailto:`, relative and
protocol-relative links are refused. A *shop link* (product pages, the shop's own pages) must also
point at one of the shop's hosts: SHOPMAIL_SHOP_URL's host (and, for `www.shop.ru`, `shop.ru`) with
its subdomains, and the hosts of SHOPMAIL_LINK_HOSTS. `url_problem` says why a link is refused.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Collection
from urllib.parse import urlsplit

from config.addresses import SPACE_OR_CONTROL

MAX_URL = 2048  # what every mail client and browser handles
HTTP_SETTING = "SHOPMAIL_ALLOW_HTTP_LINKS"
HOSTS_SETTING = "SHOPMAIL_LINK_HOSTS"
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")


def ascii_host(host: str) -> str | None:
    """`host` lower-cased, a Unicode host name in punycode; None if it is not a host name."""
    host = host.strip().lower().rstrip(".")
    if not host:
        return None
    try:
        ipaddress.ip_address(host.strip("[]"))
        return host
    except ValueError:
        pass
    if not host.isascii() or "xn--" in host:
        import idna  # only for the rare Unicode host

        try:
            host = idna.encode(host, uts46=True).decode("ascii")
        except (idna.IDNAError, UnicodeError, ValueError):
            return None
    labels = host.split(".")
    if all(_LABEL.fullmatch(label) for label in labels) and not labels[-1].isdigit():
        return host
    return None


def shop_hosts(shop_url: str, extra: Collection[str] = ()) -> tuple[str, ...]:
    """The hosts a shop link may point at: the shop URL's host (without a leading `www.` too) and
    `extra` (SHOPMAIL_LINK_HOSTS); their subdomains are the shop's as well."""
    found: list[str] = []
    host = ascii_host(urlsplit(shop_url.strip()).hostname or "")
    if host:
        found += [host, host.removeprefix("www.")]
    found += [h for h in (ascii_host(str(e)) for e in extra) if h]
    return tuple(dict.fromkeys(found))


def on_hosts(host: str, hosts: Collection[str]) -> bool:
    """Whether `host` (ASCII, lower-case) is one of `hosts` or a subdomain of one."""
    return any(host == h or host.endswith("." + h) for h in hosts)


def url_problem(
    url: object, *, allow_http: bool = False, hosts: Collection[str] = (), max_length: int = MAX_URL
) -> str | None:
    """Why `url` may not go into a mail, in words (None: it may). `hosts`: for a shop link, the
    hosts it must point at (`shop_hosts`); empty: any host."""
    text = "" if url is None or (isinstance(url, float) and url != url) else str(url)
    if not text.strip():
        return "no link"
    if SPACE_OR_CONTROL.search(text):
        return "a space or control character in the link"
    if len(text) > max_length:
        return f"longer than {max_length:,} characters"
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        return "not a link (a broken host or port)"
    scheme = parts.scheme.lower()
    if scheme not in ("https", "http"):
        return f"a '{scheme}:' link, not a web page (https only)" if scheme else "not a full https:// link"
    if scheme == "http" and not allow_http:
        return f"an http:// link (https only; {HTTP_SETTING}=true allows http)"
    if "@" in parts.netloc:
        return "a user name or password in the link"
    if "\\" in text:
        return "a backslash in the link"
    host = ascii_host(parts.hostname or "")
    if host is None:
        return "no valid host name in the link"
    if hosts and not on_hosts(host, hosts):
        return f"host '{host}' is not the shop's ({', '.join(hosts)}; more hosts: {HOSTS_SETTING})"
    return None
