"""The one e-mail address rule: what the data gate lets through is what the sender sends.

An address can be mailed when, trimmed, it is an RFC 5321/5322 *dot-atom* `local@domain` within the
RFC 5321 limits (a local part of at most 64 characters, at most 254 in all) whose local part is
ASCII (SendGrid, like most providers, takes no SMTPUTF8 addresses) and whose domain is a DNS name
with at least two labels, each 1-63 letters, digits or hyphens (no hyphen at either end), under a
top-level domain of letters or an IDNA A-label (`xn--p1ai`). Unicode domains are converted to
punycode by IDNA 2008 with UTS 46 mapping (`почта.рф` -> `xn--80a1acny.xn--p1ai`), the form SendGrid
needs; domains are lower-cased (RFC 5321: case-insensitive). Not accepted, with the reason in words:
quoted local parts, comments, IP-address literals, single-label domains, spaces and control
characters. `address_problem` says why an address cannot be mailed; `sendable_address` gives the
form to send; `is_sendable` is the fast check of an address already in that form (the mailers').
"""

from __future__ import annotations

import re

MAX_LOCAL_PART = 64  # RFC 5321 4.5.3.1.1
MAX_ADDRESS = 254  # RFC 5321 4.5.3.1.3 (a 256-octet path minus the angle brackets)
MAX_LABEL = 63
_ATEXT = r"A-Za-z0-9!#$%&'*+/=?^_`{|}~\-"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_TLD = r"(?:[A-Za-z]{2,63}|xn--[A-Za-z0-9-]{1,59})"
# the whole rule for an ASCII address without A-labels (those are also checked by `idna`)
PLAIN_ADDRESS = re.compile(
    rf"(?=[^@]{{1,{MAX_LOCAL_PART}}}@)[{_ATEXT}]+(?:\.[{_ATEXT}]+)*@(?:{_LABEL}\.)+{_TLD}"
)
_LOCAL_CHARS = re.compile(rf"[{_ATEXT}.]+")
_LDH = re.compile(rf"{_LABEL}")
# spaces, control characters, zero-width and bidirectional-override characters (a link that reads other
# than it goes)
SPACE_OR_CONTROL = re.compile(
    r"[\s\x00-\x1f\x7f-\x9f\u2028\u2029\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]"
)


def _text(raw: object) -> str:
    """`raw` trimmed; None and NaN (a missing value read by pandas) are ''."""
    if raw is None or (isinstance(raw, float) and raw != raw):
        return ""
    return str(raw).strip()


def is_sendable(address: str) -> bool:
    """Whether `address`, exactly as given, can be mailed (already trimmed, domain in ASCII)."""
    if len(address) > MAX_ADDRESS or PLAIN_ADDRESS.fullmatch(address) is None:
        return False
    return "xn--" not in address.lower() or address_problem(address) is None


def sendable_address(raw: object) -> str:
    """The form to send `raw` to: trimmed, the domain lower-cased and in punycode. An address whose
    domain cannot be converted is returned trimmed (and `address_problem` says why)."""
    text = _text(raw)
    local, at, domain = text.rpartition("@")
    if not at:
        return text
    if domain.isascii() and "xn--" not in domain.lower():
        return f"{local}@{domain.lower()}"
    converted = _punycode(domain)
    return f"{local}@{domain if isinstance(converted, Exception) else converted}"


def _punycode(domain: str) -> str | Exception:
    """`domain` by IDNA 2008 + UTS 46 (lower-cased, Unicode in punycode), or the error saying why not."""
    import idna  # 26 ms: only for the rare Unicode or A-label domain, not at every start

    try:
        return idna.encode(domain, uts46=True).decode("ascii")
    except (idna.IDNAError, UnicodeError, ValueError) as exc:
        return exc


def address_problem(raw: object) -> str | None:
    """Why `raw` cannot be mailed, in words (None: it can, as `sendable_address(raw)`)."""
    text = _text(raw)
    if not text:
        return "no address"
    if "@" not in text:
        return "no @"
    if SPACE_OR_CONTROL.search(text):
        return "a space or control character in the address"
    local, _, domain = text.rpartition("@")
    if not local:
        return "nothing before the @"
    if not domain:
        return "nothing after the @"
    return _local_problem(local) or _domain_problem(domain) or _length_problem(sendable_address(text))


def _local_problem(local: str) -> str | None:
    if local.startswith('"') or "@" in local:
        return "a quoted local part or a second @ (not accepted by SendGrid)"
    if not local.isascii():
        return "non-ASCII characters before the @ (not accepted by SendGrid)"
    if len(local) > MAX_LOCAL_PART:
        return f"the part before the @ is longer than {MAX_LOCAL_PART} characters"
    if not _LOCAL_CHARS.fullmatch(local):
        odd = "".join(sorted({c for c in local if not _LOCAL_CHARS.fullmatch(c)}))
        return f"characters not allowed before the @: {odd}"
    if local.startswith(".") or local.endswith(".") or ".." in local:
        return "a dot at the start or end of the part before the @, or two dots in a row"
    return None


def _domain_problem(domain: str) -> str | None:
    if domain.startswith("[") or re.fullmatch(r"[0-9.]+", domain):
        return "an IP address instead of a domain"
    ascii_domain = domain.lower() if domain.isascii() and "xn--" not in domain.lower() else _punycode(domain)
    if isinstance(ascii_domain, Exception):
        return f"the domain is not a valid domain name ({_idna_reason(ascii_domain)})"
    labels = ascii_domain.split(".")
    if "" in labels:
        return "an empty part in the domain (two dots in a row, or a dot at either end)"
    if len(labels) < 2:
        return "the domain has no dot (a top-level domain is needed, e.g. mail.ru)"
    for label in labels:
        if len(label) > MAX_LABEL:
            return f"a part of the domain is longer than {MAX_LABEL} characters"
        if not _LDH.fullmatch(label):
            return "the domain has a part starting or ending with a hyphen, or other characters"
    if not re.fullmatch(_TLD, labels[-1]):
        return f"'{labels[-1]}' is not a top-level domain"
    return None


def _idna_reason(exc: Exception) -> str:
    text = str(exc)
    if "Empty Label" in text:
        return "an empty part, e.g. two dots in a row"
    if "hyphen" in text:
        return "a part starting or ending with a hyphen"
    if "Codepoint" in text or "not allowed" in text:
        return "characters a domain cannot have"
    if "too long" in text.lower():
        return "too long"
    return text[:80]


def _length_problem(address: str) -> str | None:
    if len(address) > MAX_ADDRESS:
        return f"longer than {MAX_ADDRESS} characters"
    return None
