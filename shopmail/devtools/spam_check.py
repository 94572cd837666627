"""SpamAssassin's score of every campaign's sample mail, in every language, as the outbox writes it
(multipart/alternative, the headers a run sets): `python -m shopmail.devtools.spam_check`.

Runs Debian's `spamassassin` (4.x) once over an mbox of all the mails, offline (`-L`, no DNS or
network tests: the rules shipped with the package or fetched by `sa-update`). Exit status 1 when a
mail scores `--limit` (default 2.0) or more.
"""

from __future__ import annotations

import argparse
import mailbox
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from config.settings import Settings, get_settings
from shopmail.mailer.outbox import build_message
from shopmail.run.gallery import SampleMail, all_sample_mails

SPAMASSASSIN = "spamassassin"
LIMIT = 2.0
_STATUS = re.compile(r"score=(-?[\d.]+).*?tests=(.*?)\s+(?:autolearn|version)=", re.S)


@dataclass(frozen=True, slots=True)
class SpamScore:
    slug: str
    score: float
    tests: tuple[str, ...]


def spam_scores(samples: list[SampleMail], timeout_s: float = 600) -> list[SpamScore]:
    """Each sample mail's SpamAssassin score and the rules that hit, in the order given."""
    binary = shutil.which(SPAMASSASSIN)
    if binary is None:
        raise FileNotFoundError("spamassassin is not installed (Debian: apt-get install spamassassin)")
    messages = [build_message(sample.mail) for sample in samples]
    ids = [str(message["Message-ID"]) for message in messages]
    if len(set(ids)) != len(ids):
        raise ValueError("the sample mails need distinct Message-IDs (their scores are matched by it)")
    with tempfile.TemporaryDirectory() as folder:
        source = Path(folder) / "in.mbox"
        box = mailbox.mbox(source)
        for message in messages:
            box.add(message)
        box.close()
        prefs = Path(folder) / "user_prefs"
        prefs.touch()
        with source.open("rb") as stdin:
            done = subprocess.run(
                [
                    binary,
                    "-L",
                    "--mbox",
                    "-p",
                    str(prefs),
                    "--cf",
                    "dns_available no",
                    "--cf",
                    "report_safe 0",
                ],
                stdin=stdin,
                capture_output=True,
                timeout=timeout_s,
                check=True,
            )
        result = Path(folder) / "out.mbox"
        result.write_bytes(done.stdout)
        scored = {
            str(message["Message-ID"]): str(message.get("X-Spam-Status", ""))
            for message in mailbox.mbox(result)
        }
    found = []
    for sample, message_id in zip(samples, ids, strict=True):
        status = scored.get(message_id)
        match = _STATUS.search(" ".join((status or "").split()))
        if match is None:
            raise RuntimeError(f"{sample.slug}: no score from spamassassin (X-Spam-Status {status!r})")
        tests = tuple(t.strip() for t in match.group(2).split(",") if t.strip() not in ("", "none"))
        found.append(SpamScore(sample.slug, float(match.group(1)), tests))
    return found


def main(argv: list[str] | None = None, settings: Settings | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=float, default=LIMIT, help="fail at this score or above")
    args = parser.parse_args(argv)
    scores = spam_scores(all_sample_mails(settings or get_settings()))
    for score in scores:
        print(f"{score.score:5.1f}  {score.slug:28}  {' '.join(score.tests)}")
    worst = max(score.score for score in scores)
    print(f"{len(scores)} mails, highest score {worst:.1f} (limit {args.limit:.1f})")
    return 1 if worst >= args.limit else 0


if __name__ == "__main__":
    raise SystemExit(main())
