"""Guard rail: does this audience size need a human's approval before sending?"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import median

from shopmail.campaigns import CampaignKind

GUARDED_KINDS = (CampaignKind.mass, CampaignKind.occasion)


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
) -> GuardDecision:
    """Mass and occasion sends pause when the audience exceeds `max_audience`, or is more than
    `factor` x the median of the campaign's recent sending runs (ignoring audiences under
    `min_audience`). Service mails and triggers never pause: they are time-critical and small."""
    if kind not in GUARDED_KINDS or eligible == 0:
        return GuardDecision(False)
    usual = median(history) if history else None
    if max_audience is not None and eligible > max_audience:
        return GuardDecision(True, f"{eligible:,} recipients is above the limit of {max_audience:,}", usual)
    if usual is not None and eligible >= min_audience and eligible > factor * max(usual, 1):
        return GuardDecision(
            True,
            f"{eligible:,} recipients is more than {factor:g}x the median of the last "
            f"{len(history)} runs ({usual:,.0f})",
            usual,
        )
    return GuardDecision(False, median=usual)
