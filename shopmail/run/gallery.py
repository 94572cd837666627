"""Every campaign's mail in every language from sample data, composed as a real run composes them,
and the gallery page that shows them side by side at phone and desktop width (`shopmail gallery`)."""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path

from config.settings import Settings
from shopmail.campaigns import Campaign, registry
from shopmail.mail.rendering import LANGUAGES
from shopmail.mail.samples import sample_products, sample_rows
from shopmail.mailer.base import OutgoingMail
from shopmail.run.composer import MailComposer

WIDTHS = (375, 600)  # phone and desktop, as the gallery shows them


@dataclass(frozen=True, slots=True)
class SampleMail:
    """One sample mail: campaign, language, which sample row (1-based) and the mail itself."""

    campaign: str
    language: str
    number: int
    mail: OutgoingMail

    @property
    def slug(self) -> str:
        return f"{self.campaign}-{self.language}-{self.number}"


def sample_mails(
    campaign: Campaign, settings: Settings, languages: tuple[str, ...] = LANGUAGES
) -> list[SampleMail]:
    """The campaign's sample mails in each language, composed (substitutions applied) by `MailComposer`."""
    folder = settings.templates_dir
    composer = MailComposer(campaign, settings, sample_products(folder), strict=False)
    found = []
    for language in languages:
        for number, row in enumerate(sample_rows(campaign.template, folder), 1):
            key = f"sample:{campaign.name}:{language}:{number}"  # one Message-ID per sample mail
            mail = composer.compose({**row, "language": language, "message_key": key}).personalized()
            found.append(SampleMail(campaign.name, language, number, mail))
    return found


def length_warnings(settings: Settings) -> list[str]:
    """Every campaign's subject and preheader length warnings and refusals (run/length_check.py)."""
    found = []
    for campaign in registry().values():
        report = MailComposer(campaign, settings, {}, strict=False).lengths
        found += [*report.refusals, *report.warnings]
    return found


def all_sample_mails(settings: Settings) -> list[SampleMail]:
    """Every campaign's sample mails, in the registry's order."""
    return [mail for campaign in registry().values() for mail in sample_mails(campaign, settings)]


def _card(sample: SampleMail, name: str) -> str:
    mail = sample.mail
    frames = "".join(
        f'<figure><figcaption>{width} px</figcaption><iframe title="{html.escape(sample.slug)} {width} px" '
        f'src="{html.escape(name)}" width="{width}" height="900" loading="lazy"></iframe></figure>'
        for width in WIDTHS
    )
    return (
        f'<section id="{html.escape(sample.slug)}"><h2>{html.escape(sample.campaign)} · '
        f"{html.escape(sample.language)} · {sample.number}</h2>"
        f"<p><b>{html.escape(mail.subject)}</b></p><div class=row>{frames}</div></section>"
    )


def write_gallery(samples: list[SampleMail], folder: Path) -> Path:
    """Write each sample mail's HTML and an index page showing them all (iframes at phone and
    desktop width) into `folder`; returns the index page."""
    folder.mkdir(parents=True, exist_ok=True)
    cards, links = [], []
    for sample in samples:
        name = f"{sample.slug}.html"
        (folder / name).write_text(sample.mail.html, encoding="utf-8")
        cards.append(_card(sample, name))
        links.append(f'<a href="#{html.escape(sample.slug)}">{html.escape(sample.slug)}</a>')
    page = (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Shopmail gallery</title>'
        "<style>body{font-family:sans-serif;margin:16px;background:#eee}section{margin:0 0 32px}"
        "figure{display:inline-block;margin:0 16px 0 0;vertical-align:top}"
        "iframe{border:1px solid #999;background:#fff}nav a{margin-right:8px}</style></head><body>"
        f"<h1>Every mail, from sample data</h1><nav>{' '.join(links)}</nav>{''.join(cards)}</body></html>"
    )
    index = folder / "index.html"
    index.write_text(page, encoding="utf-8")
    return index
