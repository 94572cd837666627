"""Guard rail: does this audience size need a human's approval before sending?"""

from __future__ import annotations

from dataclasses import dataclass
from math import ceil
from statistics import median

from shopmail.campaigns import CampaignKind

GUARDED_KINDS = (CampaignKind.mass, CampaignKind.occasion, CampaignKind.trigger)
PLAUSIBLE_FLOOR = 20  # a ceiling from `max_share` is never below this many recipients (small shops)


@dataclass(frozen=True)
class GuardDecision:
    needed: bool
    reason: str = ""
    median: float | None = None


def needs_approval(
    kind: CampaignKind,
    eligible: int,
    history: list[int],
    factor: float,
    min_audience: int,
    max_audience: int | None,
    *,
    base: int = 0,
    max_share: float | None = None,
) -> GuardDecision:
    """Mass, occasion and trigger sends pause when the audience exceeds `max_audience`; or is above
    what the base makes plausible (`max_share` of the `base` customers, at least `PLAUSIBLE_FLOOR`:
    holds on a first run too, e.g. every birthday set to today); or is more than `factor` x the median
    of the campaign's recent sending runs (ignoring audiences under `min_audience`). Service mails
    never pause: they are time-critical and answer a customer's own action."""
    if kind not in GUARDED_KINDS or eligible == 0:
        return GuardDecision(False)
    usual = median(history) if history else None
    if max_audience is not None and eligible > max_audience:
        return GuardDecision(True, f"{eligible:,} recipients is above the limit of {max_audience:,}", usual)
    ceiling = plausible_ceiling(base, max_share)
    if ceiling is not None and eligible > ceiling:
        return GuardDecision(
            True,
            f"{eligible:,} recipients is implausible for this campaign: {eligible / max(base, 1):.1%} of "
            f"the {base:,} customers, where at most {max_share:.1%} ({ceiling:,}) is expected; check the "
            "shop data before approving",
            usual,
        )
    if usual is not None and eligible >= min_audience and eligible > factor * max(usual, 1):
        return GuardDecision(
            True,
            f"{eligible:,} recipients is more than {factor:g}x the median of the last "
            f"{len(history)} runs ({usual:,.0f})",
            usual,
        )
    return GuardDecision(False, median=usual)


def plausible_ceiling(base: int, max_share: float | None) -> int | None:
    """The most recipients a campaign with `max_share` plausibly has in a shop of `base` customers."""
    if max_share is None or base <= 0:
        return None
    return max(PLAUSIBLE_FLOOR, ceil(max_share * base))
