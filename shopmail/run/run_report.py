"""What one campaign run did, as numbers and as Markdown for Prefect artifacts and the CLI."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from shopmail.mailer.base import OutgoingMail
from shopmail.redaction import redact, redact_data, redact_tokens
from shopmail.run.vocabulary import words

__all__ = ["EXTRA_COUNTS", "RunReport", "redact", "redact_tokens", "words"]

# sending outcomes shown only when they happened (doubt about acceptance, coupons without their mail)
EXTRA_COUNTS = (
    "in_doubt",
    "awaiting_proof",
    "still_open",
    "sent_before_crash",
    "resent_after_doubt",
    "coupons_waiting",
    "coupons_restored",
)


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
    segment_title: str = ""  # the segment's title (config/segments.toml), for the artifact
    sample_link: str = ""  # where the sample mail's HTML can be read (a preview artifact, a file)
    interrupted_by: str = ""  # SIGTERM / SIGINT: the run stopped on a signal (recovery resumes SIGTERM)
    batches_failed: int = 0  # send batches that failed as a whole (recovery resumes such a run)
    held_until: str = ""  # ISO UTC: when the latest lease over mails another run holds ends
    held_runs: dict[str, int] = field(default_factory=dict)  # run id -> mails it held
    zero_reason: str = ""  # a run that sends nothing: why, in one sentence (shopmail/run/zero_reason.py)

    def title(self) -> str:
        mode = "dry run" if self.dry_run else "send"
        return f"{self.campaign} for {self.as_of.isoformat()} ({mode})"

    def would_send(self) -> int:
        """Dry runs: how many mails a real run would send now."""
        return int(self.outcomes.get("would_send", 0))

    def sentence(self) -> str:
        """The run in one readable sentence (the flow's last log line)."""
        counts = self.counts()
        done = (
            f"would send {self.would_send():,}"
            if self.dry_run
            else f"sent {counts['sent']:,}" + (f", {counts['failed']:,} failed" if counts["failed"] else "")
        )
        segment = f" in segment {self.segment}" if self.segment else ""
        return (
            f"{self.title()}: {done} of {self.eligible:,} eligible{segment} "
            f"(audience {self.audience:,}, skipped {counts['skipped']:,}, held out {self.holdout:,})."
            + (f" {self.zero_reason}" if self.zero_reason else "")
        )

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

    def extra_counts(self) -> dict[str, int]:
        """The nonzero `EXTRA_COUNTS` outcomes."""
        return {k: int(self.outcomes[k]) for k in EXTRA_COUNTS if self.outcomes.get(k)}

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
            "problem": redact(self.problem),
            "errors": redact_data(self.errors[:20]),
            **({"zero_reason": self.zero_reason} if self.zero_reason else {}),
            **({"interrupted_by": self.interrupted_by} if self.interrupted_by else {}),
            **({"batches_failed": self.batches_failed} if self.batches_failed else {}),
            **({"held_until": self.held_until, "held_runs": self.held_runs} if self.held_runs else {}),
        }

    def markdown(self, status: str) -> str:
        counts = self.counts()
        lines = [f"# {self.title()}", "", f"Status: **{words(status, 'status')}**", ""]
        if self.dry_run:
            lines += [f"**Would send: {self.would_send():,}** (dry run: nothing was sent)", ""]
        if self.zero_reason:
            lines += [f"**{self.zero_reason}**", ""]
        if self.segment and self.segment != "all":
            title = f"{self.segment_title} (`{self.segment}`)" if self.segment_title else f"`{self.segment}`"
            lines += [f"**Segment:** {title}, {self.audience:,} customers in the campaign's audience", ""]
        else:
            lines += [f"**Segment:** none, the campaign's whole audience ({self.audience:,} customers)", ""]
        if self.approval:
            lines += [f"**Approval:** {self.approval}", ""]
        if self.problem:
            lines += [f"> {self.problem}", ""]
        lines += [f"| {words('measure', 'label')} | {words('count', 'label')} |", "|---|---:|"]
        if self.dry_run:
            lines += [f"| {words('would_send', 'count')} | {self.would_send()} |"]
        lines += [f"| {words(k, 'count')} | {v} |" for k, v in counts.items()]
        lines += [f"| {words(k, 'outcome')} | {v} |" for k, v in self.extra_counts().items()]
        if self.skipped:
            lines += [
                "",
                "## Skipped by reason",
                "",
                f"| {words('reason', 'label')} | {words('count', 'label')} |",
            ]
            lines += ["|---|---:|"] + [f"| {words(k)} | {v} |" for k, v in sorted(self.skipped.items())]
        if self.variants:
            lines += ["", "## Variants", "", f"| {words('variant', 'label')} | {words('count', 'label')} |"]
            lines += ["|---|---:|"] + [
                f"| {words(k, 'variant')} | {v} |" for k, v in sorted(self.variants.items())
            ]
        if self.errors:
            lines += ["", "## Errors (first 20)", ""] + [f"- {e}" for e in self.errors[:20]]
        if self.checks_markdown:
            lines += ["", "## Data checks", "", self.checks_markdown]
        if self.sample is not None:
            lines += [
                "",
                "## Sample mail",
                "",
                *([f"Full mail (HTML): {self.sample_link}", ""] if self.sample_link else []),
                f"**Subject:** {self.sample.subject}",
                "",
                "```text",
                redact_tokens(self.sample.text),
                "```",
            ]
        return redact("\n".join(lines))  # errors, problem and sample: no token, code or secret
