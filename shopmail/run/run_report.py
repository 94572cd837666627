"""What one campaign run did, as numbers and as Markdown for Prefect artifacts and the CLI."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from shopmail.mailer.base import OutgoingMail

_TOKEN = re.compile(r"(token=)[^&#\s\"'<>]+")


_COUPON = re.compile(r"\b([A-Z0-9]{1,8})-[A-Z0-9]{4}-[A-Z0-9]{4}-[A-Z0-9]{4}\b")


def redact_tokens(text: str) -> str:
    """Hide `token=` values (unsubscribe links, password-reset links): an artifact must not let its
    readers unsubscribe a customer or take over an account. The whole value up to the next `&`, `#`,
    quote or blank goes, whatever its alphabet (percent-encoded base64 included).
    Personal coupon codes (`BDAY-7KQ2-M9XD-4TZP`) keep only their prefix: a reader must not be
    able to spend a customer's coupon."""
    return _COUPON.sub(r"\1-…", _TOKEN.sub(r"\1…", text))


@dataclass
class RunReport:
    run_id: str
    campaign: str
    as_of: date
    dry_run: bool
    audience: int = 0
    eligible: int = 0
    holdout: int = 0  # eligible but in the campaign's random holdout group: not mailed
    skipped: dict[str, int] = field(default_factory=dict)
    outcomes: Counter = field(default_factory=Counter)
    quarantined: int = 0
    checks_markdown: str = ""
    problem: str = ""
    errors: list[str] = field(default_factory=list)
    sample: OutgoingMail | None = None
    variants: dict[str, int] = field(default_factory=dict)
    segment: str | None = None
    window: list[str] | None = None  # polled service mails: [since, until) naive UTC, ISO
    approval: str = ""  # why the send needed approval and who decided what

    def title(self) -> str:
        mode = "dry run" if self.dry_run else "send"
        return f"{self.campaign} for {self.as_of.isoformat()} ({mode})"

    def counts(self) -> dict[str, int]:
        return {
            "audience": self.audience,
            "eligible": self.eligible,
            "holdout": self.holdout,
            "sent": int(self.outcomes.get("sent", 0)),
            "skipped": sum(self.skipped.values()) + int(self.outcomes.get("already_sent", 0)),
            "failed": int(self.outcomes.get("failed", 0) + self.outcomes.get("render_failed", 0)),
            "rejected": int(self.outcomes.get("rejected", 0)),
            "quarantined": self.quarantined,
        }

    def details(self) -> dict[str, Any]:
        return {
            "eligible": self.eligible,
            "holdout": self.holdout,
            "segment": self.segment,
            "window": self.window,
            "approval": self.approval,
            "skipped_by_reason": self.skipped,
            "outcomes": dict(self.outcomes),
            "variants": self.variants,
            "problem": self.problem,
            "errors": self.errors[:20],
        }

    def markdown(self, status: str) -> str:
        counts = self.counts()
        lines = [f"# {self.title()}", "", f"Status: **{status}**", ""]
        if self.problem:
            lines += [f"> {self.problem}", ""]
        lines += ["| measure | count |", "|---|---:|"]
        lines += [f"| {k} | {v} |" for k, v in counts.items()]
        if self.skipped:
            lines += ["", "## Skipped by reason", "", "| reason | count |", "|---|---:|"]
            lines += [f"| {k} | {v} |" for k, v in sorted(self.skipped.items())]
        if self.variants:
            lines += ["", "## Variants", "", "| variant | count |", "|---|---:|"]
            lines += [f"| {k} | {v} |" for k, v in sorted(self.variants.items())]
        if self.errors:
            lines += ["", "## Errors (first 20)", ""] + [f"- {e}" for e in self.errors[:20]]
        if self.checks_markdown:
            lines += ["", "## Data checks", "", self.checks_markdown]
        if self.sample is not None:
            lines += [
                "",
                "## Sample mail",
                "",
                f"**Subject:** {self.sample.subject}",
                "",
                "```text",
                redact_tokens(self.sample.text),
                "```",
            ]
        return "\n".join(lines)
