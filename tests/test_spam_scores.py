"""SpamAssassin (Debian's package, offline rules) scores every campaign's sample mail in every language
under 2 points, as the outbox writes it. `python -m shopmail.devtools.spam_check` prints the table."""

from __future__ import annotations

import shutil
from dataclasses import replace

import pytest

from config.settings import Settings
from shopmail.devtools.spam_check import LIMIT, spam_scores
from shopmail.run.gallery import SampleMail, all_sample_mails

GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"  # SpamAssassin's test string


def test_every_campaign_scores_under_the_limit(settings: Settings) -> None:
    if shutil.which("spamassassin") is None:
        pytest.skip("Debian's spamassassin is not installed (.ci/run installs it)")
    samples = all_sample_mails(settings)
    spam = samples[0].mail  # a canary in the same run: the scores are read from the right mails
    html = spam.html.replace("</body>", f"<p>{GTUBE}</p></body>")
    canary = SampleMail(
        "canary", "en", 1, replace(spam, message_key="canary", text=GTUBE + "\n" + spam.text, html=html)
    )
    *scores, canary_score = spam_scores([*samples, canary])
    assert canary_score.score >= 1000 and "GTUBE" in canary_score.tests
    assert [s.slug for s in scores] == [s.slug for s in samples]
    assert all("HTML_MESSAGE" in s.tests for s in scores)  # SpamAssassin did read every mail's HTML
    high = [(s.slug, s.score, s.tests) for s in scores if s.score >= LIMIT]
    assert not high, high
