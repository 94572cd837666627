"""One address rule for the data gate and every sender (issue 29): RFC 5321/5322 with its length limits,
IDNA domains mailed in punycode, and everything a sender would refuse quarantined with the reason."""

from __future__ import annotations

from datetime import date

import pandas as pd
import pytest
from sqlalchemy import select, text
from typer.testing import CliRunner

from config.addresses import address_problem, is_sendable, sendable_address
from config.settings import Settings, get_settings
from segments.eligibility import clean_addresses, eligibility, sendable
from shopmail.cli import app
from shopmail.db import get_engine
from shopmail.devtools.demo_shop import generate_demo_shop
from shopmail.mailer.base import OutgoingMail, SendStatus
from shopmail.mailer.memory import InMemorySender
from shopmail.mailer.outbox import build_message
from shopmail.run.errors import CONFIG_EXIT
from shopmail.shop.data_checks import run_gate
from shopmail.state import state_db
from shopmail.state.schema import send_ledger
from tests.test_bad_data import _quarantined

AS_OF = date(2026, 11, 23)
LONG_LOCAL = "a" * 70
# real-world addresses that must be mailed, and the form they are mailed to
MAILABLE = {
    "user@xn--e1afmkfd.xn--p1ai": "user@xn--e1afmkfd.xn--p1ai",  # пример.рф, as the docs ask for it
    "user@пример.рф": "user@xn--e1afmkfd.xn--p1ai",  # the same address typed in Cyrillic
    "Ivan@ПОЧТА.РФ": "Ivan@xn--80a1acny.xn--p1ai",
    "hans@münchen.de": "hans@xn--mnchen-3ya.de",
    " Anna.Petrova+shop@Mail.RU ": "Anna.Petrova+shop@mail.ru",
    "o'brien@example.co.uk": "o'brien@example.co.uk",
    "first_last-1990@yandex.ru": "first_last-1990@yandex.ru",
    "x@a-b.example": "x@a-b.example",
    "a" * 64 + "@mail.example": "a" * 64 + "@mail.example",  # the longest local part RFC 5321 allows
    "user@sub.domain.example.museum": "user@sub.domain.example.museum",
}
# real-world malformed addresses: each must be refused by the sender and quarantined with this reason
REFUSED = {
    "anna.mail.ru": "no @",
    "anna@": "nothing after the @",
    "@mail.ru": "nothing before the @",
    "anna@mail": "no dot",
    "user@localhost": "no dot",
    "anna @mail.ru": "space or control character",
    "anna\x00@mail.ru": "space or control character",
    "anna@ma il.ru": "space or control character",
    "anna..petrova@mail.ru": "two dots in a row",
    ".anna@mail.ru": "a dot at the start",
    "anna.@mail.ru": "a dot at the start or end",
    f"{LONG_LOCAL}@mail.ru": "longer than 64 characters",
    "anna@mail..ru": "empty part in the domain",
    "anna@mail.ru.": "empty part in the domain",
    "anna@-mail.ru": "hyphen",
    "anna@mail_ru.com": "other characters",
    "анна@почта.рф": "non-ASCII characters before the @",
    '"anna"@mail.ru': "quoted local part",
    "anna@b@mail.ru": "second @",
    "anna,petrova@mail.ru": "characters not allowed before the @: ,",
    "anna@[192.168.0.1]": "IP address",
    "anna@192.168.0.1": "IP address",
    "anna@mail.r": "not a top-level domain",
    "anna@mail.123": "not a top-level domain",
    "anna@xn--zz.ru": "not a valid domain name",
    "x" * 60 + "@" + ".".join(["d" * 63] * 3) + ".ru": "longer than 254 characters",
}


def _mail(to: str, key: str = "k") -> OutgoingMail:
    return OutgoingMail(key, to, "Subject", "<p>hi</p>", "hi", "shop@shop.example")


@pytest.mark.parametrize("raw", list(MAILABLE))
def test_real_world_addresses_that_must_be_mailed(raw: str) -> None:
    assert address_problem(raw) is None
    form = sendable_address(raw)
    assert form == MAILABLE[raw] and form.isascii()
    assert is_sendable(form)
    assert build_message(_mail(form))["To"].addresses[0].addr_spec == form  # the outbox takes it
    assert InMemorySender().send_batch([_mail(form)])[0].status == SendStatus.sent


@pytest.mark.parametrize("raw", list(REFUSED))
def test_real_world_malformed_addresses_are_refused_with_a_reason(raw: str) -> None:
    problem = address_problem(raw)
    assert problem is not None and REFUSED[raw] in problem, problem
    form = sendable_address(raw)
    assert not is_sendable(form)
    assert InMemorySender().send_batch([_mail(form)])[0].status == SendStatus.rejected
    with pytest.raises(ValueError, match="invalid recipient address"):
        build_message(_mail(form))


def test_the_gate_sets_aside_exactly_what_the_sender_refuses_and_says_why() -> None:
    """The same rule in the data gate, in eligibility and in the senders: nothing passes the gate to be
    refused at send time (6 of 10 malformed addresses used to), and nothing mailable is set aside."""
    emails = [*MAILABLE, *REFUSED]
    customers = pd.DataFrame(
        {
            "id": range(1, len(emails) + 1),
            "email": emails,
            "gender": None,
            "registered_at": pd.Timestamp("2026-01-01"),
            "marketing_consent": True,
            "language": "ru",
        }
    )
    gate = run_gate({"customers": customers})
    refused_ids = set(range(len(MAILABLE) + 1, len(emails) + 1))
    assert gate.quarantined_keys("customers") == refused_ids
    assert gate.failures  # 26 of 36 bad: a mapping that broken stops the run
    reasons = {key: labels[0] for key, labels in gate.quarantine["customers"].items()}
    for key, raw in zip(range(len(MAILABLE) + 1, len(emails) + 1), REFUSED, strict=True):
        assert reasons[key].startswith("email:valid_address (") and REFUSED[raw] in reasons[key]
    message = next(r.message for r in gate.results if r.check == "valid_address")
    assert "customers.email: 26 of 36 rows set aside, never mailed: " in message
    assert "@" not in message.replace("the @", "").replace("no @", "").replace("second @", "")  # no address

    # eligibility (what the send path uses) agrees row by row and converts Unicode domains
    clean = clean_addresses(customers["email"])
    assert sendable(clean).tolist() == [True] * len(MAILABLE) + [False] * len(REFUSED)
    assert clean.head(len(MAILABLE)).tolist() == list(MAILABLE.values())
    recipients = customers.rename(columns={"id": "customer_id"}).assign(
        message_key=lambda f: f["customer_id"]
    )
    kept, skipped = eligibility(recipients, marketing=True, quarantined_ids=(), suppressed=(), done_keys=())
    assert set(skipped.loc[skipped["reason"] == "invalid_email", "customer_id"]) == refused_ids
    results = InMemorySender().send_batch([_mail(e, str(i)) for i, e in enumerate(kept["email"])])
    assert {r.status for r in results} == {SendStatus.sent}


def refused_at_start(monkeypatch: pytest.MonkeyPatch, variable: str, value: str) -> str:
    """What `shopmail run` says when the environment sets `variable` to `value`: a configuration error
    (exit 2) before any work, without a traceback."""
    monkeypatch.setenv(variable, value)
    get_settings.cache_clear()
    result = CliRunner().invoke(app, ["run", "wakeup", "--dry-run"])
    assert result.exit_code == CONFIG_EXIT, result.output
    assert "Traceback" not in result.output and "Unexpected error" not in result.output
    return result.output


@pytest.mark.parametrize(
    ("variable", "value", "reason"),
    [
        ("SHOPMAIL_REPLY_TO", "not an address", "no @"),
        ("SHOPMAIL_SENDER_EMAIL", "news at shop", "no @"),
        ("SHOPMAIL_SENDER_EMAIL", "news@shop", "no dot"),
        ("SHOPMAIL_SUPPORT_EMAIL", "help@shop..example", "empty part in the domain"),
    ],
)
def test_a_bad_sender_or_reply_to_refuses_the_run_at_start_naming_the_variable(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, variable: str, value: str, reason: str
) -> None:
    said = refused_at_start(monkeypatch, variable, value)
    assert f"Configuration error: {variable}: {value!r} is not an e-mail address" in said and reason in said
    monkeypatch.setenv(variable, "zakaz@Магазин.рф")  # a Unicode domain: kept in punycode, as SendGrid needs
    get_settings.cache_clear()
    field = variable.removeprefix("SHOPMAIL_").lower()
    assert getattr(get_settings(), field) == "zakaz@xn--80aairftm.xn--p1ai"
    if variable == "SHOPMAIL_REPLY_TO":  # empty: Reply-To falls back to the support address
        monkeypatch.setenv(variable, " ")
        get_settings.cache_clear()
        assert get_settings().reply_to is None
        assert get_settings().reply_to_resolved == get_settings().support_email


@pytest.mark.flow
def test_punycode_addresses_are_mailed_through_sendgrid_and_bad_ones_reported_never_refused(
    prefect_harness, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real run through the local SendGrid server: `.рф` addresses (punycode or typed in Cyrillic)
    are mailed in punycode; a 70-character local part and other malformed addresses are set aside by the
    gate with their reason, so the provider refuses nothing."""
    from flows.campaign import campaign_flow
    from segments.holdout import in_holdout
    from shopmail.campaigns import get_campaign
    from shopmail.devtools.sendgrid_sink import running_sink

    generate_demo_shop(settings.shop_url_resolved, customers=600, seed=7, today=AS_OF)
    shop = get_engine(settings.shop_url_resolved)
    with shop.connect() as conn:
        ids = conn.execute(
            text("SELECT id FROM customers WHERE marketing_consent ORDER BY id LIMIT 40")
        ).scalars()
        ids = list(ids)
    held = in_holdout("new_arrivals", ids, get_campaign("new_arrivals").holdout_percent)
    chosen = [i for i, h in zip(ids, held, strict=True) if not h][:6]
    addresses = dict(
        zip(
            chosen,
            [
                "user@xn--e1afmkfd.xn--p1ai",
                "ivan@почта.рф",
                f"{LONG_LOCAL}@mail.ru",
                "anna..petrova@mail.ru",
                "anna@mail.r",
                "anna,petrova@mail.ru",
            ],
            strict=True,
        )
    )
    with shop.begin() as conn:
        for cid, address in addresses.items():
            conn.execute(text("UPDATE customers SET email = :e WHERE id = :i"), {"e": address, "i": cid})
    with running_sink() as sink:
        monkeypatch.setenv("SHOPMAIL_MAIL_PROVIDER", "sendgrid")
        monkeypatch.setenv("SHOPMAIL_SENDGRID_HOST", sink.url)
        monkeypatch.setenv("SHOPMAIL_SENDGRID_API_KEY", "SG.test-key-not-a-secret")
        monkeypatch.setenv("SHOPMAIL_FREQUENCY_CAP", "0")
        get_settings.cache_clear()
        report = campaign_flow(campaign="new_arrivals", as_of=AS_OF, preapproved=True)
        received = {
            part["to"][0]["email"]
            for message in sink.store.messages
            for part in message.payload["personalizations"]
        }
    assert {"user@xn--e1afmkfd.xn--p1ai", "ivan@xn--80a1acny.xn--p1ai"} <= received
    assert not received & {sendable_address(a) for a in list(addresses.values())[2:]}
    counts = report.counts()
    assert counts["rejected"] == 0 and counts["sent"] == len(received) > 10
    stored = _quarantined(settings, "customers")
    with state_db.upgrade(settings.state_url_resolved).connect() as conn:
        statuses = set(conn.execute(select(send_ledger.c.status)).scalars())
    long_id, dots_id, tld_id, comma_id = chosen[2:]
    assert "longer than 64 characters" in stored[str(long_id)]
    assert "two dots in a row" in stored[str(dots_id)]
    assert "not a top-level domain" in stored[str(tld_id)]
    assert "characters not allowed before the @: ," in stored[str(comma_id)]
    assert "rejected" not in statuses
    row = "| customers | email | must be a valid e-mail address | row set aside, never mailed |"
    assert row in report.checks_markdown


def test_the_vectorised_rule_is_the_rule() -> None:
    """`sendable` (fast pattern for short addresses without a hyphen, the rule for the rest) says for
    every address what `is_sendable` says: 20,000 random strings of address characters, near misses
    included."""
    import random

    rng = random.Random(29)

    def part(alphabet: str, low: int, high: int) -> str:
        return "".join(rng.choice(alphabet) for _ in range(rng.randint(low, high)))

    strings = []
    for _ in range(20_000):
        local = part("abz09_+'.-", 1, 8) if rng.random() < 0.9 else part("ab.-", 60, 70)
        labels = [part("abz09-", 0 if rng.random() < 0.05 else 1, 8) for _ in range(rng.randint(1, 3))]
        tld = rng.choice(["ru", "example", "r", "123", "xn--p1ai", "xn--zz", "Рф", "r-u"])
        address = f"{local}@{'.'.join(labels)}.{tld}"
        if rng.random() < 0.05:  # noise: a space, a second @, a missing @
            address = rng.choice([address.replace("@", " @"), address + "@x.ru", address.replace("@", "")])
        strings.append(address)
    strings += [f"{'a' * n}@{'b' * m}.ru" for n in (63, 64, 65) for m in (1, 60, 63, 64)]
    fast = sendable(pd.Series(strings, dtype="str")).tolist()
    assert fast == [is_sendable(s) for s in strings]
    assert 2_000 < sum(fast) < 18_000  # both answers are well represented
