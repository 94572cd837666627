"""The shape of personal coupon codes: PREFIX-XXXX-XXXX-XXXX, and how much of it fits a shop's column.

Foundation (no database): the campaign registry checks at load time that a campaign's coupon prefix fits
`SHOPMAIL_COUPON_CODE_MAX_LENGTH` (OpenCart's `coupon.code` is 20 characters), and `shopmail.state.coupons`
builds the codes. A shorter maximum keeps the prefix and shortens the random (HMAC) part, down to
`MIN_RANDOM_CHARS`; below that the campaign does not load.
"""

from __future__ import annotations

ALPHABET = "23456789ABCDEFGHJKMNPQRSTVWXYZ"  # no 0/O, 1/I/L, U: nothing to misread or mistype
GROUP_SIZE = 4
FULL_RANDOM_CHARS = 12  # 30**12 ~ 2**59 codes per prefix
MIN_RANDOM_CHARS = 8  # 30**8 ~ 2**39: still unguessable for single-use codes a shop rate-limits
CONTRACT_MAX_LENGTH = 40  # the contract's coupons.code


def code_length(prefix: str, random_chars: int) -> int:
    """Length of PREFIX-XXXX-XXXX-XX for `random_chars` random characters in groups of `GROUP_SIZE`."""
    groups = -(-random_chars // GROUP_SIZE)
    return len(prefix) + groups + random_chars


def random_chars_for(prefix: str, max_length: int | None) -> int:
    """How many random characters a code with this prefix gets within `max_length` (None: the contract's
    40). Raises ValueError when not even `MIN_RANDOM_CHARS` fit."""
    limit = CONTRACT_MAX_LENGTH if max_length is None else max_length
    for chars in range(FULL_RANDOM_CHARS, MIN_RANDOM_CHARS - 1, -1):
        if code_length(prefix, chars) <= limit:
            return chars
    shortest = code_length(prefix, MIN_RANDOM_CHARS)
    raise ValueError(
        f"coupon prefix '{prefix}' does not fit SHOPMAIL_COUPON_CODE_MAX_LENGTH={limit}: the shortest code "
        f"is {shortest} characters ({prefix}- plus {MIN_RANDOM_CHARS} random characters); shorten the "
        f"prefix to at most {max(0, len(prefix) - (shortest - limit))} characters"
    )
