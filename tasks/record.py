"""Record task: run summary in the state DB and Prefect artifacts a marketer can read."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NONE

from config.settings import get_settings
from shopmail.db import private_dir
from shopmail.mail.previews import PREVIEW_DIR, preview_url
from shopmail.mailer.base import OutgoingMail
from shopmail.redaction import redact, redact_tokens
from shopmail.run.run_report import RunReport, words
from shopmail.state import state_db

_ACTIVE = re.compile(r"<script\b.*?</script\s*>|\son\w+\s*=\s*(\"[^\"]*\"|'[^']*'|[^\s>]+)", re.I | re.S)


def artifact_key(prefix: str, name: str) -> str:
    """Prefect artifact keys allow lower-case letters, digits and dashes only."""
    return re.sub(r"[^a-z0-9-]+", "-", f"{prefix}-{name}".lower()).strip("-")


def save_mail_html(mail: OutgoingMail, name: str) -> Path:
    """The mail's HTML as a file a marketer can open in a browser: tokens and coupon codes redacted,
    scripts and event handlers removed; in `<data_dir>/previews/` (owner only)."""
    folder = private_dir(get_settings().data_dir / PREVIEW_DIR)
    path = folder / f"{re.sub(r'[^A-Za-z0-9_.-]+', '-', name)}.html"
    path.write_text(_ACTIVE.sub("", redact_tokens(mail.html)), encoding="utf-8")
    return path


def html_link_markdown(html_path: Path) -> str:
    """A Markdown link to a saved preview, signed and expiring, served by the feedback app; and the
    file itself (for whoever runs Shopmail)."""
    link, expires = preview_url(get_settings(), html_path)
    until = expires.strftime("%Y-%m-%d %H:%M UTC")
    return f"[open the mail]({link}) (link valid until {until}); file `{html_path}`"


def mail_markdown(mail: OutgoingMail, heading: str, html_path: Path | None = None, level: int = 1) -> str:
    """A mail as Markdown: subject, a link to its HTML version, its text version (tokens redacted)."""
    lines = [f"{'#' * level} {heading}", "", f"**Subject:** {mail.subject}", ""]
    if html_path is not None:
        lines += [f"**HTML version:** {html_link_markdown(html_path)}", ""]
    lines += ["```text", redact_tokens(mail.text), "```"]
    return redact("\n".join(lines))


@task(name="record-run", retries=3, retry_delay_seconds=[2, 10, 30], cache_policy=NONE)
def record_run(report: RunReport, status: str) -> None:
    """Store the run summary and publish it as Prefect artifacts (the report, its counts as a table,
    and the sample mail with its HTML version)."""
    settings = get_settings()
    state = state_db.upgrade(settings.state_url_resolved)
    state_db.finish_run(state, report.run_id, status, report.counts(), report.details())
    if not report.dry_run:
        state_db.recount_late_sends(state, report.campaign, report.as_of, report.run_id)
    key = artifact_key("campaign", report.campaign)
    if report.sample is not None and not report.sample_link:
        html = save_mail_html(report.sample, f"{report.campaign}-{report.run_id}")
        mail_key = artifact_key("mail", report.campaign)
        create_markdown_artifact(
            markdown=mail_markdown(report.sample, f"Sample mail: {report.title()}", html),
            key=mail_key,
            description=f"Sample mail of {report.title()}",
        )
        report.sample_link = f"artifact `{mail_key}`: {html_link_markdown(html)}"
    create_markdown_artifact(markdown=report.markdown(status), key=key, description=report.title())
    rows: list[dict[str, Any]] = []
    if report.dry_run:
        rows.append({"outcome": words("would_send", "count"), "count": report.would_send()})
    rows += [{"outcome": words(k, "count"), "count": v} for k, v in report.counts().items()]
    skipped = words("skipped_because", "label")
    rows += [{"outcome": f"{skipped}: {words(k)}", "count": v} for k, v in report.skipped.items()]
    create_table_artifact(table=rows, key=f"{key}-counts", description=report.title())
