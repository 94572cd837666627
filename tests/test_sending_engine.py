"""The SendGrid sending engine against the local SendGrid server: pausing, reconciliation."""

from __future__ import annotations

from dataclasses import replace

from shopmail.devtools.sendgrid_sink import running_sink
from shopmail.mailer.base import OutgoingMail, SendStatus
from shopmail.mailer.sendgrid_api import SendGridSender
from shopmail.mailer.throttle import ErrorBudget

KEY = "SG.test"


def _mail(i: int, **changes) -> OutgoingMail:
    mail = OutgoingMail(
        message_key=f"key-{i}",
        to_email=f"user{i}@example.com",
        subject=f"Тема {i}",
        html=f"<p>{i}</p>",
        text=str(i),
        from_email="shop@example.com",
    )
    return replace(mail, **changes)


def test_sending_pauses_after_the_error_budget_and_attempts_nothing_more() -> None:
    with running_sink() as sink:
        sink.store.script([503] * 6)  # the first two requests fail for good (1 + 2 retries each)
        budget = ErrorBudget(limit=1)
        with SendGridSender(
            KEY, sink.url, retries=2, backoff_base_s=0.001, concurrency=1, error_budget=budget
        ) as sender:
            results = sender.send_batch([_mail(i) for i in range(5)])
        statuses = [r.status for r in results]
        assert statuses == [SendStatus.failed] * 5
        assert all("not attempted" in r.error for r in results[2:])
        assert sink.store.requests == 6 and sink.store.messages == []
        assert budget.exhausted


def test_confirm_finds_mails_the_provider_already_accepted() -> None:
    with running_sink() as sink:
        with SendGridSender(KEY, sink.url, backoff_base_s=0.001) as sender:
            [sent] = sender.send_batch([_mail(1)])
            confirmed = sender.confirm(["key-1", "key-2"])
        assert confirmed == {"key-1": confirmed["key-1"]}
        assert confirmed["key-1"].startswith(sent.provider_message_id)
