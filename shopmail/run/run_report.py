"""What one campaign run did, as numbers and as Markdown for Prefect artifacts and the CLI."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from shopmail.mailer.base import OutgoingMail
from shopmail.redaction import redact, redact_data, redact_tokens

__all__ = ["SKIP_REASON_WORDS", "RunReport", "redact", "redact_tokens"]

# what each skip reason means, for the marketer reading the artifact
SKIP_REASON_WORDS = {
    "quarantined": "shop data failed a check (quarantined)",
    "invalid_email": "no valid e-mail address",
    "no_consent": "no consent to marketing mail",
    "unsubscribed": "unsubscribed",
    "suppressed": "address suppressed (bounce, spam report)",
    "already_sent": "already got this mail",
    "duplicate_address": "same address as another recipient",
    "frequency_cap": "got enough mails lately (frequency cap)",
    "claimed_by_other_run": "another run is sending it right now",
    "no_customer_row": "customer missing from the shop data",
}
# counts() keys as the artifact shows them
COUNT_LABELS = {
    "audience": "audience (campaign rule and segment)",
    "eligible": "eligible",
    "holdout": "held out (comparison group)",
    "sent": "sent",
    "skipped": "skipped",
    "failed": "failed",
    "rejected": "rejected by the mail provider",
    "quarantined": "shop rows quarantined",
}
# sending outcomes shown only when they happened (doubt about acceptance, coupons without their mail)
EXTRA_COUNT_LABELS = {
    "in_doubt": "in doubt: waiting for proof of acceptance (resent after the grace period if none comes)",
    "sent_before_crash": "accepted earlier, proved by the provider (not resent)",
    "resent_after_doubt": "resent after doubt (no proof within the grace period)",
    "coupons_waiting": "coupons issued, waiting for their mail (the rerun sends them)",
}
STATUS_WORDS = {
    "completed": "completed",
    "rejected": "not approved: nothing sent",
    "blocked": "stopped before sending: nothing sent",
    "paused": "sending paused",
    "failed": "failed",
}


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
        """The nonzero `EXTRA_COUNT_LABELS` outcomes."""
        return {k: int(self.outcomes[k]) for k in EXTRA_COUNT_LABELS if self.outcomes.get(k)}

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
        }

    def markdown(self, status: str) -> str:
        counts = self.counts()
        lines = [f"# {self.title()}", "", f"Status: **{STATUS_WORDS.get(status, status)}**", ""]
        if self.dry_run:
            lines += [f"**Would send: {self.would_send():,}** (dry run: nothing was sent)", ""]
        if self.segment and self.segment != "all":
            title = f"{self.segment_title} (`{self.segment}`)" if self.segment_title else f"`{self.segment}`"
            lines += [f"**Segment:** {title}, {self.audience:,} customers in the campaign's audience", ""]
        else:
            lines += [f"**Segment:** none, the campaign's whole audience ({self.audience:,} customers)", ""]
        if self.approval:
            lines += [f"**Approval:** {self.approval}", ""]
        if self.problem:
            lines += [f"> {self.problem}", ""]
        lines += ["| measure | count |", "|---|---:|"]
        if self.dry_run:
            lines += [f"| would send | {self.would_send()} |"]
        lines += [f"| {COUNT_LABELS.get(k, k)} | {v} |" for k, v in counts.items()]
        lines += [f"| {EXTRA_COUNT_LABELS[k]} | {v} |" for k, v in self.extra_counts().items()]
        if self.skipped:
            lines += ["", "## Skipped by reason", "", "| reason | count |", "|---|---:|"]
            lines += [
                f"| {SKIP_REASON_WORDS.get(k, k.replace('_', ' '))} | {v} |"
                for k, v in sorted(self.skipped.items())
            ]
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
                *([f"Full mail (HTML): {self.sample_link}", ""] if self.sample_link else []),
                f"**Subject:** {self.sample.subject}",
                "",
                "```text",
                redact_tokens(self.sample.text),
                "```",
            ]
        return redact("\n".join(lines))  # errors, problem and sample: no token, code or secret
