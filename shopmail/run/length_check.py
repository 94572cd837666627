"""Subject and preheader lengths, checked when a campaign's templates are loaded (before any mail).

Inboxes cut subjects at about 60 characters on a phone and preheaders at about 100; a subject over 100
characters is refused (spam filters and some clients truncate or flag it). The check renders each
language's subject and preheader with the campaign's sample data (`email_templates/<campaign>/
sample.toml`: the longest names and prices the demo shop can produce) and this shop's profile.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from shopmail.mail.rendering import LANGUAGES
from shopmail.mail.samples import SampleError, sample_products, sample_rows

if TYPE_CHECKING:
    from shopmail.run.composer import MailComposer

SUBJECT_WARN, SUBJECT_MAX = 60, 100
PREHEADER_WARN, PREHEADER_MAX = 110, 150


@dataclass
class LengthReport:
    """Warnings (shown, the send goes on) and refusals (the send stops) of one campaign's templates."""

    warnings: list[str] = field(default_factory=list)
    refusals: list[str] = field(default_factory=list)


def _measure(report: LengthReport, what: str, where: str, text: str, warn: int, refuse: int) -> None:
    size = len(text)
    if size > refuse:
        report.refusals.append(f"{where}: the {what} has {size} characters, more than {refuse}: «{text}»")
    elif size > warn:
        report.warnings.append(
            f"{where}: the {what} has {size} characters; phones show about {warn}: «{text}»"
        )
    elif what == "preheader" and not text:
        report.warnings.append(f"{where}: the preheader is empty (inboxes show the first words of the mail)")


def check_lengths(composer: MailComposer) -> LengthReport:
    """The subject and preheader of every sample mail of the composer's campaign, in every language."""
    folder = composer.settings.templates_dir
    report = LengthReport()
    try:
        rows = sample_rows(composer.campaign.template, folder)
        products = sample_products(folder)
    except SampleError as exc:
        report.warnings.append(f"subject and preheader lengths not checked: {exc}")
        return report
    issued = dict(composer.coupons)  # sample coupons must not join the coupons a run issues
    try:
        _check_samples(composer, rows, products, report)
    finally:
        composer.coupons.clear()
        composer.coupons.update(issued)
    return report


def _check_samples(composer: MailComposer, rows: list[dict], products: dict, report: LengthReport) -> None:
    renderer = composer.renderer
    for language in LANGUAGES:
        if renderer.language_for(language) != language:
            continue
        for number, row in enumerate(rows, 1):
            context: dict[str, Any] = composer.context({**row, "language": language})
            for key, value in row.items():
                if isinstance(value, list):
                    context[key] = [products[i] for i in value if i in products]
            context["language"] = language
            where = f"{composer.campaign.template}/{language} (sample {number})"
            rendered = renderer.render(language, context)
            _measure(report, "subject", where, rendered.subject, SUBJECT_WARN, SUBJECT_MAX)
            _measure(report, "preheader", where, rendered.preheader, PREHEADER_WARN, PREHEADER_MAX)
