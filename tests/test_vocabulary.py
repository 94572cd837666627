"""One vocabulary (shopmail/run/vocabulary.py): every code a run can produce has a marketer's phrase in
English and Russian, and the approval dialog, the report and the batch log line show phrases, not codes."""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path

import pytest

from flows.steps import LEDGER_OUTCOMES, approval_request
from segments.audiences import order_cancelled, wakeup
from segments.eligibility import REASONS as ELIGIBILITY_REASONS
from shopmail.mailer.base import OutgoingMail, SendStatus
from shopmail.run.run_report import EXTRA_COUNTS, RunReport
from shopmail.run.sample_mail import preheader_of
from shopmail.run.vocabulary import GROUPS, LANGUAGES, snake_codes, words
from shopmail.state.ledger import FINAL_STATES, OPEN_STATES
from tasks.send import CLAIM_SKIP_REASONS, DOUBT_COUNTS

ROOT = Path(__file__).resolve().parents[1]


def recorded_statuses() -> set[str]:
    """Every run status a `record_run(report, "...")` call or a `status = "..."` in the flows, tasks and
    shopmail packages writes, plus the statuses of runs closed by a signal or by the recovery step."""
    found = {"running", "crashed", "interrupted", "failed", "paused", "completed"}
    for folder in ("flows", "tasks", "shopmail"):
        for path in (ROOT / folder).rglob("*.py"):
            found |= set(
                re.findall(r"record_run\([^,()]+, \"([a-z_]+)\"\)", path.read_text(encoding="utf-8"))
            )
    return found


def produced_codes() -> dict[str, set[str]]:
    """The codes of each kind the ledger, arbitration, send and report modules can produce."""
    report = RunReport(run_id="r", campaign="c", as_of=date(2026, 12, 7), dry_run=False)
    return {
        "reason": {
            *ELIGIBILITY_REASONS,
            *CLAIM_SKIP_REASONS,
            "holdout",  # shopmail/run/pipeline.py: the holdout group's outcome
            "no_customer_row",  # segments/segment_snapshot.py
            "eligible",  # the snapshot's outcome of a chosen customer (`shopmail why`)
        },
        "outcome": {
            *(str(s) for s in SendStatus),
            *DOUBT_COUNTS,
            *FINAL_STATES,
            *OPEN_STATES,
            *LEDGER_OUTCOMES,
            *EXTRA_COUNTS,
            *CLAIM_SKIP_REASONS,
            "render_failed",
            "paused",
            "already_sent",
            "would_send",
            "still_open",
        },
        "count": {*report.counts(), "would_send"},
        "status": recorded_statuses(),
        "variant": {*wakeup.VARIANTS, *order_cancelled.VARIANTS},
    }


@pytest.mark.parametrize("kind", ["reason", "outcome", "count", "status", "variant"])
def test_every_code_has_a_phrase_in_both_languages(kind: str) -> None:
    codes = produced_codes()[kind]
    missing = sorted(code for code in codes if code not in GROUPS[kind])
    assert not missing, f"{kind} codes without a phrase: {missing}"
    for code in codes:
        for lang in LANGUAGES:
            phrase = GROUPS[kind][code][lang]
            assert phrase.strip() and not snake_codes(phrase), (kind, code, lang, phrase)
        assert re.search("[а-яё]", GROUPS[kind][code]["ru"], re.I), (kind, code)


def test_an_unknown_code_is_never_shown_as_snake_case() -> None:
    assert words("green_subject", "variant") == "green subject"  # an A/B test's own variant name
    assert words("no_consent", lang="ru") == "нет согласия на рекламные письма"
    assert words("frequency_cap", lang="en") == "got enough mails lately (frequency cap)"


HTML = (
    '<html><body><div style="display:none;font-size:1px;">Скидка 20% только сегодня'
    "&#8199;&#65279;&#847; &#8199;&#65279;&#847; </div><p>Здравствуйте</p></body></html>"
)


def test_the_approval_dialog_speaks_words_and_shows_the_sample_mail() -> None:
    report = RunReport(run_id="r1", campaign="new_arrivals", as_of=date(2026, 12, 7), dry_run=False)
    report.audience, report.eligible, report.holdout = 120, 90, 10
    report.skipped = {"frequency_cap": 12, "no_consent": 5, "already_sent": 3}
    report.variants = {"basic": 40, "detailed": 50}
    text = "\n".join(f"Line {i}: товар {i}" for i in range(1, 30))
    report.sample = OutgoingMail("k", "a@example.com", "Мы скучаем", HTML, text, "shop@example.com")
    shown = approval_request(report, "90 recipients is above the limit of 10", "[open the mail](http://x/p)")
    assert not snake_codes(shown), snake_codes(shown)
    assert shown.startswith("## Approve: Новинки недели, 2026-12-07?"), shown  # the title, not the id
    for code in ("frequency_cap", "no_consent", "holdout", "quarantined", "basic", "detailed"):
        assert f": {code} " not in shown and f"| {code} |" not in shown
    assert "got enough mails lately (frequency cap)" in shown and "shop best sellers" in shown
    assert "**Subject:** Мы скучаем" in shown and "**Preheader:** Скидка 20% только сегодня" in shown
    assert "Line 1: товар 1" in shown and "Line 8: товар 8" in shown and "Line 9:" not in shown
    assert "[open the mail](http://x/p)" in shown


def test_snake_codes_finds_codes_but_not_links_or_paths() -> None:
    text = "new_arrivals: see https://s.example/p?utm_source=x&utm_medium=y or /tmp/a/new_arrivals-1.html"
    assert snake_codes(text) == ["new_arrivals"]
    assert snake_codes("`frequency_cap` is the setting") == []


def test_preheader_of_a_rendered_mail_ignores_the_filler() -> None:
    assert preheader_of(HTML) == "Скидка 20% только сегодня"
    assert preheader_of("<p>no preheader</p>") == ""


def test_the_report_in_russian(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHOPMAIL_REPORT_LANGUAGE", "ru")
    report = RunReport(run_id="r1", campaign="wakeup", as_of=date(2026, 12, 7), dry_run=False)
    report.skipped = {"frequency_cap": 2}
    report.variants = {"detailed": 1}
    shown = report.markdown("rejected")
    assert "не одобрен: ничего не отправлено" in shown and "ограничение частоты" in shown
    assert "товары, связанные с покупкой" in shown and not snake_codes(shown)


def _check_codes() -> set[str]:
    """Every check name the data checks can report: the Great Expectations expectations of every
    dataset of the contract, and the names the pandas checks pass to their results."""
    import ast
    import inspect

    from shopmail.shop import data_checks
    from shopmail.shop.contract import DATASETS

    codes = {
        type(e).__name__ for dataset in DATASETS for e in data_checks.expectations_for(dataset)
    }
    codes = {re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower() for name in codes}
    tree = ast.parse(inspect.getsource(data_checks))
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") in {"CheckResult", "_set_aside"}:
            arg = node.args[1] if node.func.id == "CheckResult" else node.args[2]
            if isinstance(arg, ast.Constant):
                codes.add(arg.value)
    return codes


def test_every_data_check_and_severity_reads_as_words_in_both_languages() -> None:
    from shopmail.run.vocabulary import CHECKS, SEVERITIES, check_words, checks_table
    from shopmail.shop.data_checks import SEVERITY_TEXT, CheckResult

    codes = _check_codes()
    assert {"expect_column_values_to_not_be_null", "valid_address", "parsable_time"} <= codes
    missing = sorted(codes - set(CHECKS))
    assert not missing, f"data checks without a phrase: {missing}"
    assert set(SEVERITY_TEXT) == set(SEVERITIES)
    for lang in LANGUAGES:
        for code in codes:
            assert not snake_codes(check_words(code, lang)), (code, lang)
        assert check_words("references_orders", lang).endswith(" orders")
    table = checks_table([CheckResult("orders", "not_in_future", "created_at", "quarantine", False, 5, 90)])
    row = "| orders | created_at | must not lie in the future | row set aside, never mailed | 90 | 5 |"
    assert row in table
    assert "not_in_future" not in table and "quarantine" not in table
