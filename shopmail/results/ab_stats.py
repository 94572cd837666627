"""Deciding an A/B test: the numbers of each variant, the significance test, the winner.

Which test, and why:

- **click rate, open rate** (a share of mails: each mail was clicked or not): the two-proportion
  z-test (pooled), the standard test for two rates; with at least `min_per_variant` mails per
  variant (200 by default) its normal approximation holds for the rates mails have. Rates are per
  delivered mail; open rates count people only (machine opens left out);
- **orders per recipient, revenue per recipient** (the mean of an amount per recipient: mostly zero,
  a long tail, a spread that differs between variants): Welch's t-test (no equal-variance
  assumption), with the normal approximation that these sample sizes allow. Orders count when
  placed after the recipient's mail (not cancelled), up to the decision: the groups are random, so
  what differs between them is the mail;
- **more than two variants**: the leader is tested against each other variant at
  (1 - confidence) / (k - 1) (Bonferroni), so the chance of naming a false winner stays at most
  1 - confidence.

A winner is decided by the test only when every variant has `min_per_variant` mails (delivered for
the rates, sent for the amounts) and the leader beats every other variant significantly; otherwise
`if_no_difference` says what is sent: the leader anyway, or the first variant (the control).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from shopmail.campaigns import AbTest, WinnerMetric
from shopmail.results.attribution import two_proportion_p_value

METRIC_WORDS = {
    WinnerMetric.click_rate: "click rate",
    WinnerMetric.open_rate: "open rate (people, machine opens left out)",
    WinnerMetric.orders_per_recipient: "orders per recipient",
    WinnerMetric.revenue_per_recipient: "revenue per recipient",
}
TEST_WORDS = {
    WinnerMetric.click_rate: "two-proportion z-test",
    WinnerMetric.open_rate: "two-proportion z-test",
    WinnerMetric.orders_per_recipient: "Welch's t-test",
    WinnerMetric.revenue_per_recipient: "Welch's t-test",
}
RATES = (WinnerMetric.click_rate, WinnerMetric.open_rate)


@dataclass(frozen=True)
class VariantNumbers:
    """What one variant's test mails did so far."""

    name: str
    sent: int = 0
    delivered: int = 0
    opened: int = 0  # by people (or clicked)
    clicked: int = 0
    orders: int = 0  # orders after the mail
    revenue: float = 0.0
    orders_squares: float = 0.0  # sum over recipients of (their orders)^2
    revenue_squares: float = 0.0  # sum over recipients of (their revenue)^2

    def sample(self, metric: WinnerMetric) -> int:
        """The mails the metric is measured on: delivered for rates, sent for amounts per recipient."""
        return self.delivered if metric in RATES else self.sent

    def hits(self, metric: WinnerMetric) -> float:
        return {
            WinnerMetric.click_rate: self.clicked,
            WinnerMetric.open_rate: self.opened,
            WinnerMetric.orders_per_recipient: self.orders,
            WinnerMetric.revenue_per_recipient: self.revenue,
        }[metric]

    def value(self, metric: WinnerMetric) -> float | None:
        n = self.sample(metric)
        return self.hits(metric) / n if n else None

    def variance(self, metric: WinnerMetric) -> float | None:
        """Sample variance of the per-recipient amount (amount metrics)."""
        n = self.sent
        if n < 2:
            return None
        squares = self.orders_squares if metric == WinnerMetric.orders_per_recipient else self.revenue_squares
        mean = self.hits(metric) / n
        return max(0.0, (squares - n * mean * mean) / (n - 1))


def welch_p_value(a: VariantNumbers, b: VariantNumbers, metric: WinnerMetric) -> float | None:
    """Two-sided p-value of equal means (Welch's t-test, normal approximation); None if undefined."""
    va, vb = a.variance(metric), b.variance(metric)
    ma, mb = a.value(metric), b.value(metric)
    if va is None or vb is None or ma is None or mb is None:
        return None
    se = math.sqrt(va / a.sent + vb / b.sent)
    if se == 0:
        return None if ma == mb else 0.0
    return math.erfc(abs(ma - mb) / se / math.sqrt(2))


def p_value(a: VariantNumbers, b: VariantNumbers, metric: WinnerMetric) -> float | None:
    """The metric's test of `a` against `b`."""
    if metric in RATES:
        return two_proportion_p_value(
            int(a.hits(metric)), a.sample(metric), int(b.hits(metric)), b.sample(metric)
        )
    return welch_p_value(a, b, metric)


@dataclass(frozen=True)
class Decision:
    """What the test says: `winner` to send, the `leader` by the metric, whether it is `significant`
    and whether every variant had `enough` mails; `p_values` of the leader against each other."""

    winner: str
    leader: str
    significant: bool
    enough: bool
    p_values: dict[str, float | None] = field(default_factory=dict)
    level: float = 0.05
    sentence: str = ""

    @property
    def decided_by(self) -> str:
        return "test" if self.significant else "no_difference"


def format_value(metric: WinnerMetric, value: float | None) -> str:
    if value is None:
        return "–"
    if metric in RATES:
        return f"{value * 100:.2f} %"
    return f"{value:,.3f}" if metric == WinnerMetric.orders_per_recipient else f"{value:,.2f}"


def decide(numbers: list[VariantNumbers], test: AbTest) -> Decision:
    """The winner of a test from its variants' numbers (see the module docstring)."""
    metric = test.metric
    names = [n.name for n in numbers]
    by_name = {n.name: n for n in numbers}
    leader = max(numbers, key=lambda n: (n.value(metric) or 0.0, -names.index(n.name))).name
    level = (1 - test.confidence) / max(1, len(numbers) - 1)
    enough = all(n.sample(metric) >= test.min_per_variant for n in numbers)
    p_values = {n.name: p_value(by_name[leader], n, metric) for n in numbers if n.name != leader}
    significant = enough and all(p is not None and p < level for p in p_values.values())
    lead = by_name[leader]
    others = ", ".join(
        f"{n.name} {format_value(metric, n.value(metric))}" for n in numbers if n.name != leader
    )
    words, test_name = METRIC_WORDS[metric], TEST_WORDS[metric]
    worst_p = max((p for p in p_values.values() if p is not None), default=None)
    shown_p = "–" if worst_p is None else f"{worst_p:.4f}"
    measured = f"{words} {leader} {format_value(metric, lead.value(metric))} vs {others}"
    if significant:
        winner = leader
        sentence = f"Variant {leader} wins: {measured} ({test_name}, p = {shown_p} < {level:.4f})."
    else:
        winner = leader if test.if_no_difference == "leader" else names[0]
        why = (
            f"not every variant reached {test.min_per_variant:,} mails"
            if not enough
            else f"the difference is not significant ({test_name}, p = {shown_p}, needed < {level:.4f})"
        )
        rule = "the variant that measured best" if test.if_no_difference == "leader" else "the first variant"
        sentence = f"No clear winner: {measured}; {why}. Sending {rule}: {winner}."
    return Decision(winner, leader, significant, enough, p_values, level, sentence)
