"""SendGrid's documented `/v3/mail/send` rules, as the local sink (`sendgrid_sink`) enforces them.

Sources: the Mail Send API reference (OpenAPI `tsg_mail_v3.json` of twilio/sendgrid-oai), its errors
page (`API_Reference/Web_API_v3/Mail/errors.md` of sendgrid/docs) and its limitations page. Messages
are SendGrid's own text where documented (`MSG_*`), `Invalid type. Expected: X, given: Y.` for JSON
type errors, and the sink's own wording where SendGrid documents a rule but not its message.

Cheap by design: the sink checks 1,000-personalization requests at benchmark speed (module-level
regexes, no copies, JSON sizes estimated from string lengths before anything is encoded).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import time
from typing import Any

SendGridError = dict[str, Any]

MAX_PERSONALIZATIONS = 1000
MAX_RECIPIENTS = 1000
MAX_REPLY_TO_LIST = 1000
MAX_CATEGORIES = 10
MAX_CATEGORY_LENGTH = 255
MAX_CUSTOM_ARGS_BYTES = 10_000  # global + personalization custom_args, merged, per personalization
# Substitutions (legacy `personalizations[].substitutions`). Sources:
# - API reference (twilio/sendgrid-oai `tsg_mail_v3.json`, https://www.twilio.com/docs/sendgrid/api-reference/mail-send/mail-send):
#   "The key/value pairs must be strings ... The total collective size of your substitutions may not
#   exceed 10,000 bytes per personalization object"; "should not be used in combination with a
#   Dynamic Transactional Template ... `template_id` starting with `d-`";
# - errors page (https://www.twilio.com/docs/sendgrid/api-reference/mail-send/errors, and the older
#   sendgrid/docs `errors.md`): "You are limited to 10,000 substitutions." ("You may not make more
#   than 10,000 substitutions per request"), "Substitutions are limited to 150 items per
#   personalization block.";
# - SendGrid's answer to substitutions with a `d-` template, as reported in sendgrid/sendgrid-java#549,
#   sendgrid/sendgrid-php#659: 400 "Substitutions may not be used with dynamic templating",
#   field `personalizations.N.substitutions`.
MAX_SUBSTITUTIONS = 10_000  # per request: all personalizations together
MAX_SUBSTITUTIONS_PER_PERSONALIZATION = 150
MAX_SUBSTITUTION_BYTES = 10_000  # per personalization, keys + values in UTF-8 ("may not exceed")
MAX_ASM_GROUPS_TO_DISPLAY = 25
MAX_SCHEDULE_AHEAD_S = 72 * 3600
RESERVED_HEADERS = frozenset(
    ["x-sg-id", "x-sg-eid", "received", "dkim-signature", "content-type"]
    + ["content-transfer-encoding", "to", "from", "subject", "reply-to", "cc", "bcc"]
)

# --- messages ---------------------------------------------------------------------------------
MSG_NO_PERSONALIZATIONS = "The personalizations field is required and must have at least one personalization."
MSG_TOO_MANY_PERSONALIZATIONS = (
    "The personalization block is limited to 1000 personalizations per API request. You have "
    "provided {n} personalizations. Please consider splitting this into multiple requests and "
    "resending your request."
)
MSG_TOO_MANY_RECIPIENTS = "There is a limit of 1000 total recipients (to + cc + bcc) per request."
MSG_NO_TO = (
    "The to array is required for all personalization objects, and must have at least one email "
    "object with a valid email address."
)
MSG_BAD_ADDRESS = "Does not contain a valid address."
MSG_NAME_SEPARATORS = "The {kind}.name field cannot contain ';' or ','"
MSG_DUPLICATE = (
    "Each email address in the personalization block should be unique between to, cc, and bcc. "
    "We found the first duplicate instance of [{address}] in the {field} field."
)
MSG_NO_FROM = (
    "The from object must be provided for every email send. It is an object that requires the "
    'email parameter, but may also contain a name parameter.  e.g. {"email" : '
    '"example@example.com"}  or {"email" : "example@example.com", "name" : "Example Recipient"}.'
)
MSG_BAD_FROM = "The from email does not contain a valid address."
MSG_BAD_REPLY_TO = "The reply_to email does not contain a valid address."
MSG_REPLY_TO_AND_LIST = "You can use either the reply_to property or reply_to_list property but not both."
MSG_BAD_REPLY_TO_LIST = "The reply_to_list must be an array of 1 to 1000 unique objects with a valid email."
MSG_NO_SUBJECT = (
    "The subject is required. You can get around this requirement if you use a template with a "
    "subject defined or if every personalization has a subject defined."
)
MSG_EMPTY_SUBJECT = "The subject of your email must be a string at least one character in length."
MSG_NO_CONTENT = (
    "Unless a valid template_id is provided, the content parameter is required. There must be at "
    "least one defined content block. We typically suggest both text/plain and text/html blocks "
    "are included, but only one block is required."
)
MSG_EMPTY_CONTENT_VALUE = "The content value must be a string at least one character in length."
MSG_EMPTY_CONTENT_TYPE = "The content type must be a string at least one character in length."
MSG_CONTENT_TYPE_CHARS = "Cannot contain ';', or CRLF characters."
MSG_CONTENT_ORDER = (
    "If present, text/plain and text/html may only be provided in this order, followed by any other content."
)
MSG_WRONG_TYPE = "Invalid type. Expected: {expected}, given: {given}."
MSG_RESERVED_HEADER = "Header can not be one of the reserved keys."
MSG_P_RESERVED_HEADER = "Header cannot be one of the reserved keys."
MSG_HEADER_VALUES = "The header values must be strings."
MSG_P_HEADER_VALUES = "All values of the headers object must be strings."
MSG_HEADER_KEYS = "Header keys cannot contain non-ASCII characters and empty spaces."
MSG_P_HEADER_KEYS = "Header keys cannot contain non-ASCII characters or empty spaces."
MSG_DUPLICATE_HEADERS = "The headers cannot contain duplicate keys."
MSG_CUSTOM_ARGS_EMPTY = "custom_args cannot be empty."
MSG_CUSTOM_ARGS_SIZE = (
    "The combined size of both global and personalization custom arguments may not exceed 10,000 "
    "bytes per personalization."
)
MSG_SUBSTITUTIONS = (
    "The substitution values must be an object of key/value pairs, where the values are all strings."
)
MSG_TOO_MANY_SUBSTITUTIONS = "You are limited to 10,000 substitutions."
MSG_SUBSTITUTIONS_SIZE = (
    "The total collective size of your substitutions may not exceed 10,000 bytes per personalization object."
)
MSG_SUBSTITUTIONS_ITEMS = "Substitutions are limited to 150 items per personalization block."
MSG_SUBSTITUTIONS_DYNAMIC = "Substitutions may not be used with dynamic templating"
MSG_CATEGORIES_TYPE = "Categories must be an array of strings."
MSG_BAD_CATEGORIES = "The categories must be an array of non-empty strings."
MSG_TOO_MANY_CATEGORIES = (
    "There is a limit of 10 categories for each email that is sent. You provided {n} categories."
)
MSG_CATEGORY_TOO_LONG = "Each category must not be longer than 255 characters. {category} exceeds this limit"
MSG_CATEGORY_TWICE = "The categories must be a unique list, and you have included {category} more than once."
MSG_CATEGORY_ASCII = "Categories can not contain non-ASCII characters."
MSG_SEND_AT_TOO_LATE = "Scheduling more than 72 hours in advance is forbidden."
MSG_BATCH_ID = "The batch_id must be a string."
MSG_TEMPLATE_ID = "The template ID must be a string, you provided {value}."
MSG_IP_POOL = "The name of your IP pool must be a string."
MSG_IP_POOL_LENGTH = "The name of your IP pool must be 2 to 64 characters long."
MSG_SECTIONS = "The section values must be strings."
MSG_ASM_GROUP_ID = "The ASM group ID must be an integer."
MSG_ASM_GROUPS_TO_DISPLAY = "The ASM Group IDs to display must be an array of integers."
MSG_ASM_TOO_MANY_GROUPS = (
    "There is a limit of 25 unsubscribe groups that can be displayed to a user at a time."
)
MSG_BYPASS_COMBINED = "The bypass_list_management filter cannot be combined with any other bypass filter."
MSG_BCC_SETTING_EMAIL = (
    "The bcc email recipient object must at least have an email address and may also contain a name."
)
MSG_BCC_SETTING_NO_EMAIL = "You must include a recipient object when using the bcc mail setting."
MSG_SPAM_URL_MISSING = "You must include the url to post to when using the spam check mail setting."
MSG_SPAM_URL_SCHEME = "The `post_to_url` parameter must start with `http://` or `https://`."
MSG_SPAM_THRESHOLD = (
    "The spam check threshold is between 1 and 10, with the lower numbers being the most strict filtering."
)
MSG_SPAM_THRESHOLD_MISSING = (
    "You must include the spam check threshold when using the spam check mail setting."
)
MSG_ATTACHMENT_BASE64 = "The attachment content must be base64 encoded."
MSG_ATTACHMENT_CONTENT = "The attachment content must be a string at least one character in length."
MSG_ATTACHMENT_FILENAME = "The filename of your attachment must be a string."
MSG_ATTACHMENT_FILENAME_CHARS = "The filename of your attachment cannot contain CRLF characters."
MSG_ATTACHMENT_NO_FILENAME = "filename is required."
MSG_ATTACHMENT_TYPE = "The attachment type must be a string and at least one character in length."
MSG_ATTACHMENT_TYPE_CHARS = "The type cannot contain ';', or CRLF characters."
MSG_ATTACHMENT_DISPOSITION = (
    'The disposition of your attachment can be either "inline" or "attachment". You provided {value}.'
)
MSG_ATTACHMENT_CONTENT_ID = "The content ID of your attachment must be a string. You provided {value}."
MSG_ATTACHMENT_CONTENT_ID_CHARS = "The content ID of your attachment cannot contain CRLF characters."

# (section, setting, property) -> (expected JSON type, SendGrid's message), from the errors page
_SETTING_RULES: dict[tuple[str, str, str], tuple[type, str]] = {
    ("mail_settings", "bcc", "enable"): (bool, "The bcc enable param should be a boolean value."),
    ("mail_settings", "bypass_list_management", "enable"): (
        bool,
        "The bypass list management enable param should be a boolean value.",
    ),
    ("mail_settings", "bypass_spam_management", "enable"): (
        bool,
        "The bypass spam management enable param should be a boolean value.",
    ),
    ("mail_settings", "bypass_bounce_management", "enable"): (
        bool,
        "The bypass bounce management enable param should be a boolean value.",
    ),
    ("mail_settings", "bypass_unsubscribe_management", "enable"): (
        bool,
        "The bypass unsubscribe management enable param should be a boolean value.",
    ),
    ("mail_settings", "footer", "enable"): (bool, "The footer enable param should be a boolean value."),
    ("mail_settings", "footer", "html"): (str, "The text/html version of your footer should be a string."),
    ("mail_settings", "footer", "text"): (str, "The text/plain version of your footer should be a string."),
    ("mail_settings", "sandbox_mode", "enable"): (
        bool,
        "The sandbox mode enable param should be a boolean value.",
    ),
    ("mail_settings", "spam_check", "enable"): (
        bool,
        "The spam check enable param should be a boolean value.",
    ),
    ("mail_settings", "spam_check", "post_to_url"): (str, "The spam check url must be a string."),
    ("tracking_settings", "click_tracking", "enable"): (
        bool,
        "The click tracking enable param should be a boolean value.",
    ),
    ("tracking_settings", "click_tracking", "enable_text"): (
        bool,
        "The click tracking enable text must be a boolean value.",
    ),
    ("tracking_settings", "ganalytics", "enable"): (
        bool,
        "The Google Analytics enable param must be a boolean value.",
    ),
    **{
        ("tracking_settings", "ganalytics", utm): (str, f"The Google Analytics {utm} must be a string value.")
        for utm in ("utm_source", "utm_medium", "utm_term", "utm_content", "utm_campaign")
    },
    ("tracking_settings", "open_tracking", "enable"): (
        bool,
        "The open tracking enable param should be a boolean value.",
    ),
    ("tracking_settings", "open_tracking", "substitution_tag"): (
        str,
        "The open tracking substitution tag must be a string.",
    ),
    ("tracking_settings", "subscription_tracking", "enable"): (
        bool,
        "The subscription tracking enable param should be a boolean value.",
    ),
    ("tracking_settings", "subscription_tracking", "html"): (
        str,
        "The subscription tracking unsubscribe content for text/html messages must be a string.",
    ),
    ("tracking_settings", "subscription_tracking", "text"): (
        str,
        "The subscription tracking unsubscribe content for text/plain messages must be a string.",
    ),
    ("tracking_settings", "subscription_tracking", "substitution_tag"): (
        str,
        "The subscription tracking substitution tag must be a string value.",
    ),
}
_BYPASS_FILTERS = ("bypass_spam_management", "bypass_bounce_management", "bypass_unsubscribe_management")

# SendGrid takes IDN domains in punycode, top-level A-labels included (`.xn--p1ai`, the `.рф` zone)
_EMAIL_RE = re.compile(
    r"[^@\s<>(),;:\"\[\]]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.(?:[A-Za-z]{2,}|xn--[A-Za-z0-9-]+)"
)
_HEADER_KEY_RE = re.compile(r"[!-~]+")  # printable ASCII, no spaces
_JSON_TYPES = {str: "string", bool: "boolean", int: "integer", float: "number"}
_JSON_TYPES.update({list: "array", dict: "object", type(None): "null"})


def sg_error(message: str, field: str | None = None) -> SendGridError:
    """One entry of SendGrid's `errors` list."""
    return {"message": message, "field": field, "help": None}


def wrong_type(expected: str, value: Any, field: str) -> SendGridError:
    given = _JSON_TYPES.get(type(value), type(value).__name__)
    return sg_error(MSG_WRONG_TYPE.format(expected=expected, given=given), field)


def valid_email(value: Any) -> bool:
    return isinstance(value, str) and len(value) <= 254 and _EMAIL_RE.fullmatch(value) is not None


def _non_empty_str(value: Any) -> bool:
    return isinstance(value, str) and bool(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def json_size_over(mapping: dict[str, str], limit: int) -> bool:
    """Whether `mapping` (string keys and values) as compact UTF-8 JSON is longer than `limit` bytes.

    A JSON string takes at most 6 bytes per character, so small maps (the usual case) are decided
    from their lengths alone; only maps near the limit are encoded."""
    chars = 2 + sum(len(k) + len(v) + 6 for k, v in mapping.items())
    if 6 * chars <= limit:
        return False
    text = json.dumps(mapping, ensure_ascii=False, separators=(",", ":"))
    return len(text.encode("utf-8", "surrogatepass")) > limit


def _string_map(value: Any, field: str, errors: list[SendGridError]) -> dict[str, str] | None:
    """`custom_args`: an object of strings; returns it when usable for the size check."""
    if value is None:
        return None
    if not isinstance(value, dict):
        errors.append(wrong_type("object", value, field))
        return None
    if not value:
        errors.append(sg_error(MSG_CUSTOM_ARGS_EMPTY, field))
    usable = True
    for key, item in value.items():
        if not isinstance(item, str):
            errors.append(wrong_type("string", item, f"{field}.{key}"))
            usable = False
    return value if usable else None


def _check_headers(value: Any, field: str, errors: list[SendGridError], personalization: bool) -> None:
    """Headers: string values, ASCII keys without spaces, none reserved, no key twice (any case)."""
    if value is None:
        return
    if not isinstance(value, dict):
        errors.append(wrong_type("object", value, field))
        return
    values_msg, keys_msg, reserved_msg = (
        (MSG_P_HEADER_VALUES, MSG_P_HEADER_KEYS, MSG_P_RESERVED_HEADER)
        if personalization
        else (MSG_HEADER_VALUES, MSG_HEADER_KEYS, MSG_RESERVED_HEADER)
    )
    seen: set[str] = set()
    for key, item in value.items():
        lowered = key.lower()
        if not isinstance(item, str):
            errors.append(sg_error(values_msg, f"{field}.{key}"))
        if _HEADER_KEY_RE.fullmatch(key) is None:
            errors.append(sg_error(keys_msg, field))
        elif lowered in RESERVED_HEADERS:
            errors.append(sg_error(reserved_msg, field))
        if lowered in seen:
            errors.append(sg_error(MSG_DUPLICATE_HEADERS, field))
        seen.add(lowered)


def _check_send_at(value: Any, field: str, errors: list[SendGridError], now: float) -> None:
    """`send_at`: a unix timestamp (JSON integer), at most 72 hours ahead; past times mean now."""
    if value is None:
        return
    if not _is_int(value):
        errors.append(wrong_type("integer", value, field))
    elif value > now + MAX_SCHEDULE_AHEAD_S:
        errors.append(sg_error(MSG_SEND_AT_TOO_LATE, field))


def _check_name(entry: dict[str, Any], field: str, errors: list[SendGridError], kind: str | None) -> None:
    """A display name is a string; in to/cc/bcc (`kind`) without `,` or `;`."""
    name = entry.get("name")
    if name is None:
        return
    if not isinstance(name, str):
        errors.append(wrong_type("string", name, f"{field}.name"))
    elif kind is not None and ("," in name or ";" in name):
        errors.append(sg_error(MSG_NAME_SEPARATORS.format(kind=kind), f"{field}.name"))


def substitution_bytes_over(substitutions: dict[str, str], limit: int) -> bool:
    """Whether the substitutions' keys and values together take more than `limit` UTF-8 bytes.

    Our reading of "the total collective size of your substitutions": the bytes of every key and
    every value, without JSON quoting or separators (a UTF-8 character takes at most 4 bytes, so the
    usual small maps are decided from their lengths alone)."""
    chars = sum(len(k) + len(v) for k, v in substitutions.items())
    if 4 * chars <= limit:
        return False
    return sum(_utf8_len(k) + _utf8_len(v) for k, v in substitutions.items()) > limit


def _utf8_len(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def _check_substitutions(value: Any, field: str, errors: list[SendGridError], dynamic: bool) -> None:
    """One personalization's `substitutions` (the per-request count: `_check_substitution_count`)."""
    if value is None:
        return
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        errors.append(sg_error(MSG_SUBSTITUTIONS, field))
        return
    if dynamic:
        errors.append(sg_error(MSG_SUBSTITUTIONS_DYNAMIC, field))
    if len(value) > MAX_SUBSTITUTIONS_PER_PERSONALIZATION:
        errors.append(sg_error(MSG_SUBSTITUTIONS_ITEMS, field))
    if substitution_bytes_over(value, MAX_SUBSTITUTION_BYTES):
        errors.append(sg_error(MSG_SUBSTITUTIONS_SIZE, field))


def _check_substitution_count(personalizations: list[Any], errors: list[SendGridError]) -> None:
    """At most 10,000 substitutions per request, reported at the personalization that passes it."""
    total = 0
    for i, p in enumerate(personalizations):
        subs = p.get("substitutions") if isinstance(p, dict) else None
        total += len(subs) if isinstance(subs, dict) else 0
        if total > MAX_SUBSTITUTIONS:
            errors.append(sg_error(MSG_TOO_MANY_SUBSTITUTIONS, f"personalizations.{i}.substitutions"))
            return


def is_dynamic_template(payload: dict[str, Any]) -> bool:
    """Whether the request names a dynamic transactional template (`template_id` `d-...`)."""
    template_id = payload.get("template_id")
    return isinstance(template_id, str) and template_id.startswith("d-")


def _check_personalization(
    p: Any,
    i: int,
    errors: list[SendGridError],
    now: float,
    global_args: dict[str, str] | None,
    dynamic: bool = False,
) -> int:
    """Validate one personalization; return its recipient count (to + cc + bcc)."""
    field = f"personalizations.{i}"
    if not isinstance(p, dict):
        errors.append(wrong_type("object", p, field))
        return 0
    if not isinstance(p.get("to"), list) or not p["to"]:
        errors.append(sg_error(MSG_NO_TO, f"{field}.to"))
    seen: set[str] = set()
    count = 0
    for kind in ("to", "cc", "bcc"):
        recipients = p.get(kind)
        if recipients is None:
            continue
        if not isinstance(recipients, list):
            if kind != "to":
                errors.append(wrong_type("array", recipients, f"{field}.{kind}"))
            continue
        count += len(recipients)
        for j, recipient in enumerate(recipients):
            if not isinstance(recipient, dict):
                errors.append(sg_error(MSG_BAD_ADDRESS, f"{field}.{kind}.{j}.email"))
                continue
            address = recipient.get("email")
            if not valid_email(address):
                errors.append(sg_error(MSG_BAD_ADDRESS, f"{field}.{kind}.{j}.email"))
            else:
                lowered = address.lower()
                if lowered in seen:
                    message = MSG_DUPLICATE.format(address=address, field=f"{field}.{kind}")
                    errors.append(sg_error(message, field))
                seen.add(lowered)
            _check_name(recipient, f"{field}.{kind}.{j}", errors, kind)
    if "subject" in p and not _non_empty_str(p["subject"]):
        errors.append(sg_error(MSG_EMPTY_SUBJECT, f"{field}.subject"))
    sender = p.get("from")
    if sender is not None and not (isinstance(sender, dict) and valid_email(sender.get("email"))):
        errors.append(sg_error(MSG_BAD_FROM, f"{field}.from.email"))
    args = _string_map(p.get("custom_args"), f"{field}.custom_args", errors)
    merged = {**global_args, **args} if global_args and args else args  # global alone: checked once
    if merged and json_size_over(merged, MAX_CUSTOM_ARGS_BYTES):
        errors.append(sg_error(MSG_CUSTOM_ARGS_SIZE, f"{field}.custom_args"))
    _check_headers(p.get("headers"), f"{field}.headers", errors, personalization=True)
    _check_substitutions(p.get("substitutions"), f"{field}.substitutions", errors, dynamic)
    data = p.get("dynamic_template_data")
    if data is not None and not isinstance(data, dict):
        errors.append(wrong_type("object", data, f"{field}.dynamic_template_data"))
    _check_send_at(p.get("send_at"), f"{field}.send_at", errors, now)
    return count


def _check_sender(payload: dict[str, Any], errors: list[SendGridError]) -> None:
    """`from` (required), `reply_to` / `reply_to_list` (one or the other)."""
    sender = payload.get("from")
    if not isinstance(sender, dict) or not sender.get("email"):
        errors.append(sg_error(MSG_NO_FROM, "from.email"))
    else:
        if not valid_email(sender["email"]):
            errors.append(sg_error(MSG_BAD_FROM, "from.email"))
        _check_name(sender, "from", errors, None)
    reply_to, reply_to_list = payload.get("reply_to"), payload.get("reply_to_list")
    if reply_to is not None:
        if not (isinstance(reply_to, dict) and valid_email(reply_to.get("email"))):
            errors.append(sg_error(MSG_BAD_REPLY_TO, "reply_to.email"))
        else:
            _check_name(reply_to, "reply_to", errors, None)
        if reply_to_list is not None:
            errors.append(sg_error(MSG_REPLY_TO_AND_LIST, "reply_to_list"))
    if reply_to_list is not None:
        entries = reply_to_list if isinstance(reply_to_list, list) else []
        addresses = [e.get("email") for e in entries if isinstance(e, dict)]
        if (
            not 1 <= len(entries) <= MAX_REPLY_TO_LIST
            or len(addresses) != len(entries)
            or not all(valid_email(a) for a in addresses)
            or len({a.lower() for a in addresses}) != len(addresses)
        ):
            errors.append(sg_error(MSG_BAD_REPLY_TO_LIST, "reply_to_list"))
        for j, entry in enumerate(entries):
            if isinstance(entry, dict):
                _check_name(entry, f"reply_to_list.{j}", errors, None)


def _check_content(content: Any, has_template: bool, errors: list[SendGridError]) -> None:
    if not isinstance(content, list) or not content:
        if not has_template:
            errors.append(sg_error(MSG_NO_CONTENT, "content"))
        return
    types: list[str] = []
    for i, block in enumerate(content):
        block = block if isinstance(block, dict) else {}
        kind = block.get("type")
        if not _non_empty_str(kind):
            errors.append(sg_error(MSG_EMPTY_CONTENT_TYPE, f"content.{i}.type"))
        elif any(c in kind for c in ";,\r\n"):
            errors.append(sg_error(MSG_CONTENT_TYPE_CHARS, f"content.{i}.type"))
        if not _non_empty_str(block.get("value")):
            errors.append(sg_error(MSG_EMPTY_CONTENT_VALUE, f"content.{i}.value"))
        types.append(str(kind or "").lower())
    types = [t for t in types if t != "text/x-amp-html"]  # AMP may sit between plain and html
    expected = [t for t in ("text/plain", "text/html") if t in types]
    if types[: len(expected)] != expected:
        errors.append(sg_error(MSG_CONTENT_ORDER, "content"))


def _check_subject(payload: dict[str, Any], personalizations: list[Any], errors: list[SendGridError]) -> None:
    """A subject, if given, is a non-empty string; one is needed unless every personalization or
    the template has one."""
    if "subject" in payload and not _non_empty_str(payload["subject"]):
        errors.append(sg_error(MSG_EMPTY_SUBJECT, "subject"))
    every_p_subject = bool(personalizations) and all(
        isinstance(p, dict) and _non_empty_str(p.get("subject")) for p in personalizations
    )
    if not (_non_empty_str(payload.get("subject")) or every_p_subject or _has_template(payload)):
        errors.append(sg_error(MSG_NO_SUBJECT, "subject"))


def _has_template(payload: dict[str, Any]) -> bool:
    return _non_empty_str(payload.get("template_id"))


def _check_categories(categories: Any, errors: list[SendGridError]) -> None:
    """At most 10 unique ASCII strings of 1 to 255 characters."""
    if categories is None:
        return
    if not isinstance(categories, list) or not all(isinstance(c, str) for c in categories):
        errors.append(sg_error(MSG_CATEGORIES_TYPE, "categories"))
        return
    if len(categories) > MAX_CATEGORIES:
        errors.append(sg_error(MSG_TOO_MANY_CATEGORIES.format(n=len(categories)), "categories"))
    seen: set[str] = set()
    for category in categories:
        if not category:
            errors.append(sg_error(MSG_BAD_CATEGORIES, "categories"))
        elif not category.isascii():
            errors.append(sg_error(MSG_CATEGORY_ASCII, "categories"))
        elif len(category) > MAX_CATEGORY_LENGTH:
            errors.append(sg_error(MSG_CATEGORY_TOO_LONG.format(category=category), "categories"))
        if category in seen:
            errors.append(sg_error(MSG_CATEGORY_TWICE.format(category=category), "categories"))
        seen.add(category)


def _check_asm(asm: Any, errors: list[SendGridError]) -> None:
    """`asm`: `group_id` an integer (required), `groups_to_display` at most 25 integers."""
    if asm is None:
        return
    if not isinstance(asm, dict):
        errors.append(wrong_type("object", asm, "asm"))
        return
    if not _is_int(asm.get("group_id")):
        errors.append(sg_error(MSG_ASM_GROUP_ID, "asm.group_id"))
    groups = asm.get("groups_to_display")
    if groups is None:
        return
    if not isinstance(groups, list) or not all(_is_int(g) for g in groups):
        errors.append(sg_error(MSG_ASM_GROUPS_TO_DISPLAY, "asm.groups_to_display"))
    elif len(groups) > MAX_ASM_GROUPS_TO_DISPLAY:
        errors.append(sg_error(MSG_ASM_TOO_MANY_GROUPS, "asm.groups_to_display"))


def _check_settings(payload: dict[str, Any], errors: list[SendGridError]) -> None:
    """`mail_settings` and `tracking_settings`: objects of objects whose properties have the
    documented types, plus the bcc, spam check and bypass combinations."""
    for section in ("mail_settings", "tracking_settings"):
        value = payload.get(section)
        if value is not None and not isinstance(value, dict):
            errors.append(wrong_type("object", value, section))
        elif isinstance(value, dict):
            for name, setting in value.items():
                if not isinstance(setting, dict):
                    errors.append(wrong_type("object", setting, f"{section}.{name}"))
    for (section, name, prop), (kind, message) in _SETTING_RULES.items():
        setting = _setting(payload, section, name)
        if prop in setting and not isinstance(setting[prop], kind):
            errors.append(sg_error(message, f"{section}.{name}.{prop}"))
    bcc = _setting(payload, "mail_settings", "bcc")
    if bcc.get("enable") is True:
        if "email" not in bcc:
            errors.append(sg_error(MSG_BCC_SETTING_NO_EMAIL, "mail_settings.bcc.email"))
        elif not valid_email(bcc["email"]):
            errors.append(sg_error(MSG_BCC_SETTING_EMAIL, "mail_settings.bcc.email"))
    spam = _setting(payload, "mail_settings", "spam_check")
    if spam.get("enable") is True:
        url, threshold = spam.get("post_to_url"), spam.get("threshold")
        if url is None:
            errors.append(sg_error(MSG_SPAM_URL_MISSING, "mail_settings.spam_check.post_to_url"))
        elif isinstance(url, str) and not url.startswith(("http://", "https://")):
            errors.append(sg_error(MSG_SPAM_URL_SCHEME, "mail_settings.spam_check.post_to_url"))
        if threshold is None:
            errors.append(sg_error(MSG_SPAM_THRESHOLD_MISSING, "mail_settings.spam_check.threshold"))
    threshold = spam.get("threshold")
    if threshold is not None and not (_is_int(threshold) and 1 <= threshold <= 10):
        errors.append(sg_error(MSG_SPAM_THRESHOLD, "mail_settings.spam_check.threshold"))
    if _setting(payload, "mail_settings", "bypass_list_management").get("enable") is True and any(
        _setting(payload, "mail_settings", other).get("enable") is True for other in _BYPASS_FILTERS
    ):
        errors.append(sg_error(MSG_BYPASS_COMBINED, "mail_settings.bypass_list_management"))


def _setting(payload: dict[str, Any], section: str, name: str) -> dict[str, Any]:
    """`payload[section][name]` when both are objects, else {}."""
    value = payload.get(section)
    setting = value.get(name) if isinstance(value, dict) else None
    return setting if isinstance(setting, dict) else {}


def _check_attachments(attachments: Any, errors: list[SendGridError]) -> None:
    if attachments is None:
        return
    if not isinstance(attachments, list):
        errors.append(wrong_type("array", attachments, "attachments"))
        return
    for i, item in enumerate(attachments):
        field = f"attachments.{i}"
        item = item if isinstance(item, dict) else {}
        content = item.get("content")
        if not _non_empty_str(content):
            errors.append(sg_error(MSG_ATTACHMENT_CONTENT, f"{field}.content"))
        elif not _is_base64(content):
            errors.append(sg_error(MSG_ATTACHMENT_BASE64, f"{field}.content"))
        filename = item.get("filename")
        if filename is None:
            errors.append(sg_error(MSG_ATTACHMENT_NO_FILENAME, f"{field}.filename"))
        elif not isinstance(filename, str):
            errors.append(sg_error(MSG_ATTACHMENT_FILENAME, f"{field}.filename"))
        elif any(c in filename for c in ";,\r\n"):
            errors.append(sg_error(MSG_ATTACHMENT_FILENAME_CHARS, f"{field}.filename"))
        kind = item.get("type")
        if kind is not None and not _non_empty_str(kind):
            errors.append(sg_error(MSG_ATTACHMENT_TYPE, f"{field}.type"))
        elif kind is not None and any(c in kind for c in ";,\r\n"):
            errors.append(sg_error(MSG_ATTACHMENT_TYPE_CHARS, f"{field}.type"))
        disposition = item.get("disposition")
        if disposition is not None and disposition not in ("inline", "attachment"):
            errors.append(
                sg_error(MSG_ATTACHMENT_DISPOSITION.format(value=disposition), f"{field}.disposition")
            )
        content_id = item.get("content_id")
        if content_id is not None and not isinstance(content_id, str):
            errors.append(sg_error(MSG_ATTACHMENT_CONTENT_ID.format(value=content_id), f"{field}.content_id"))
        elif isinstance(content_id, str) and any(c in content_id for c in ";,\r\n"):
            errors.append(sg_error(MSG_ATTACHMENT_CONTENT_ID_CHARS, f"{field}.content_id"))


def _is_base64(text: str) -> bool:
    try:
        base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return False
    return True


def _check_scalars(payload: dict[str, Any], errors: list[SendGridError]) -> None:
    """`batch_id`, `template_id`, `ip_pool_name` (strings) and `sections` (an object of strings)."""
    if "batch_id" in payload and not isinstance(payload["batch_id"], str):
        errors.append(sg_error(MSG_BATCH_ID, "batch_id"))
    template_id = payload.get("template_id")
    if template_id is not None and not isinstance(template_id, str):
        errors.append(sg_error(MSG_TEMPLATE_ID.format(value=template_id), "template_id"))
    pool = payload.get("ip_pool_name")
    if pool is not None and not isinstance(pool, str):
        errors.append(sg_error(MSG_IP_POOL, "ip_pool_name"))
    elif isinstance(pool, str) and not 2 <= len(pool) <= 64:
        errors.append(sg_error(MSG_IP_POOL_LENGTH, "ip_pool_name"))
    sections = payload.get("sections")
    if sections is not None and not (
        isinstance(sections, dict) and all(isinstance(v, str) for v in sections.values())
    ):
        errors.append(sg_error(MSG_SECTIONS, "sections"))


def validate_mail_send(payload: Any, now: float | None = None) -> list[SendGridError]:
    """SendGrid's documented `/v3/mail/send` rules; an empty list means valid (`now`: unix time the
    72-hour `send_at` limit is measured from, default the clock). Every error is reported at once."""
    now = time.time() if now is None else now
    if not isinstance(payload, dict):
        return [sg_error("Bad Request")]
    errors: list[SendGridError] = []
    personalizations = payload.get("personalizations")
    if not isinstance(personalizations, list) or not personalizations:
        errors.append(sg_error(MSG_NO_PERSONALIZATIONS, "personalizations"))
        personalizations = []
    elif len(personalizations) > MAX_PERSONALIZATIONS:
        message = MSG_TOO_MANY_PERSONALIZATIONS.format(n=len(personalizations))
        errors.append(sg_error(message, "personalizations"))
    global_args = _string_map(payload.get("custom_args"), "custom_args", errors)
    if global_args and json_size_over(global_args, MAX_CUSTOM_ARGS_BYTES):
        errors.append(sg_error(MSG_CUSTOM_ARGS_SIZE, "custom_args"))
    dynamic = is_dynamic_template(payload)
    recipients = sum(
        _check_personalization(p, i, errors, now, global_args, dynamic)
        for i, p in enumerate(personalizations)
    )
    if recipients > MAX_RECIPIENTS:
        errors.append(sg_error(MSG_TOO_MANY_RECIPIENTS, "personalizations"))
    _check_substitution_count(personalizations, errors)
    _check_sender(payload, errors)
    _check_subject(payload, personalizations, errors)
    _check_content(payload.get("content"), _has_template(payload), errors)
    _check_headers(payload.get("headers"), "headers", errors, personalization=False)
    _check_send_at(payload.get("send_at"), "send_at", errors, now)
    _check_categories(payload.get("categories"), errors)
    _check_asm(payload.get("asm"), errors)
    _check_settings(payload, errors)
    _check_attachments(payload.get("attachments"), errors)
    _check_scalars(payload, errors)
    return errors
