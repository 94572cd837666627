"""One vocabulary: every code a run produces (skip reasons, sending outcomes, counts, run statuses,
content variants) as the phrase a marketer reads, in English and Russian.

The approval dialog, the run report artifacts, the run's log lines and `shopmail history` all say
things through `words()`; none of them shows a snake_case code. `SHOPMAIL_REPORT_LANGUAGE` (en / ru)
chooses the language. tests/test_vocabulary.py checks that every code the ledger, arbitration and
send modules can produce has a phrase in both languages.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from typing import Any, Literal

Language = Literal["en", "ru"]
LANGUAGES: tuple[Language, ...] = ("en", "ru")
Phrase = dict[str, str]

# why a customer of the audience gets no mail from this run (segments/eligibility.REASONS, the claim's
# reasons in tasks/send.py, the holdout group, the snapshot's outcomes)
REASONS: dict[str, Phrase] = {
    "quarantined": {
        "en": "shop data failed a check (set aside)",
        "ru": "данные магазина не прошли проверку (отложены)",
    },
    "invalid_email": {"en": "no valid e-mail address", "ru": "нет правильного адреса почты"},
    "no_consent": {"en": "no consent to marketing mail", "ru": "нет согласия на рекламные письма"},
    "unsubscribed": {"en": "unsubscribed", "ru": "отписался"},
    "suppressed": {
        "en": "address blocked (bounce, spam report)",
        "ru": "адрес заблокирован (недоставка, жалоба на спам)",
    },
    "already_sent": {"en": "already got this mail", "ru": "уже получил это письмо"},
    "duplicate_address": {
        "en": "same address as another recipient",
        "ru": "тот же адрес, что у другого получателя",
    },
    "frequency_cap": {
        "en": "got enough mails lately (frequency cap)",
        "ru": "недавно получил достаточно писем (ограничение частоты)",
    },
    "claimed_by_other_run": {
        "en": "another run (or an earlier attempt of this one) is sending it right now",
        "ru": "это письмо прямо сейчас отправляет другой запуск",
    },
    "no_customer_row": {
        "en": "customer missing from the shop data",
        "ru": "покупателя нет в данных магазина",
    },
    "holdout": {
        "en": "held out for comparison (gets no mail on purpose)",
        "ru": "в контрольной группе (не получает письмо намеренно)",
    },
    "eligible": {"en": "chosen to get the mail", "ru": "выбран для письма"},
}

# what happened to the mails (tasks/send.py counts, ledger states, the report's extra counts)
OUTCOMES: dict[str, Phrase] = {
    "sent": {"en": "sent", "ru": "отправлено"},
    "rejected": {"en": "refused by the mail provider", "ru": "отклонено почтовым сервисом"},
    "failed": {"en": "failed (a rerun sends them)", "ru": "не отправлено из-за ошибки (повтор отправит)"},
    "render_failed": {
        "en": "mail could not be built from the template",
        "ru": "письмо не собралось по шаблону",
    },
    "paused": {
        "en": "not sent: sending paused after too many errors",
        "ru": "не отправлено: отправка приостановлена",
    },
    "in_doubt": {
        "en": "in doubt: waiting for proof of acceptance (resent after the grace period if none comes)",
        "ru": "под вопросом: ждём подтверждения приёма (иначе отправим ещё раз)",
    },
    "awaiting_proof": {
        "en": "doubtful mails found waiting for proof of acceptance (settled by proof, or by a later run)",
        "ru": "письма под вопросом ждут подтверждения приёма (решит подтверждение или следующий запуск)",
    },
    "still_open": {
        "en": "still open: another attempt is sending them, or one that died left them (the recovery step "
        "finishes them)",
        "ru": "ещё не закрыты: их отправляет другая попытка или их допишет восстановление",
    },
    "pending": {"en": "being sent", "ru": "отправляется"},
    "sent_before_crash": {
        "en": "accepted earlier, proved by the provider (not resent)",
        "ru": "принято раньше, подтверждено сервисом (не отправлено повторно)",
    },
    "resent_after_doubt": {
        "en": "resent after doubt (no proof within the grace period)",
        "ru": "отправлено повторно (подтверждение не пришло вовремя)",
    },
    "expired": {"en": "no longer due (occasion over), not sent", "ru": "повод прошёл, не отправлено"},
    "would_send": {"en": "would send", "ru": "было бы отправлено"},
    "coupons_waiting": {
        "en": "coupons issued, waiting for their mail (the rerun sends them)",
        "ru": "купоны выпущены и ждут своего письма (повтор отправит)",
    },
    "coupons_restored": {
        "en": "coupons mailed earlier but missing from the shop, inserted again",
        "ru": "купоны из прошлых писем, пропавшие в магазине, добавлены снова",
    },
    "claimed_by_other_run": REASONS["claimed_by_other_run"],
    "frequency_cap": REASONS["frequency_cap"],
    "already_sent": REASONS["already_sent"],
    "holdout": REASONS["holdout"],
    "skipped": {"en": "skipped", "ru": "пропущено"},
}

# the report's count table (RunReport.counts())
COUNTS: dict[str, Phrase] = {
    "audience": {
        "en": "audience (campaign rule and segment)",
        "ru": "аудитория (правило кампании и сегмент)",
    },
    "eligible": {"en": "eligible", "ru": "могут получить"},
    "holdout": {"en": "held out (comparison group)", "ru": "контрольная группа"},
    "sent": {"en": "sent", "ru": "отправлено"},
    "skipped": {"en": "skipped", "ru": "пропущено"},
    "failed": {"en": "failed", "ru": "ошибки"},
    "rejected": {"en": "rejected by the mail provider", "ru": "отклонено почтовым сервисом"},
    "quarantined": {
        "en": "shop rows set aside (failed a check)",
        "ru": "строки магазина отложены (не прошли проверку)",
    },
    "would_send": OUTCOMES["would_send"],
}

# a run's status (run_summaries.status; record_run's statuses)
STATUSES: dict[str, Phrase] = {
    "running": {"en": "running", "ru": "идёт"},
    "completed": {"en": "completed", "ru": "завершён"},
    "rejected": {"en": "not approved: nothing sent", "ru": "не одобрен: ничего не отправлено"},
    "blocked": {
        "en": "stopped before sending: nothing sent",
        "ru": "остановлен до отправки: ничего не отправлено",
    },
    "skipped": {
        "en": "not run: the shop lacks data it needs",
        "ru": "не запускался: в магазине нет нужных данных",
    },
    "paused": {"en": "sending paused", "ru": "отправка приостановлена"},
    "failed": {"en": "failed", "ru": "ошибка"},
    "interrupted": {
        "en": "stopped by a signal: the rest waits for the recovery step or a rerun",
        "ru": "остановлен сигналом: остальное отправит восстановление или повтор",
    },
    "crashed": {
        "en": "its process died: the recovery step finishes it",
        "ru": "процесс упал: восстановление допишет",
    },
}

# content variants a campaign's audience picks per customer (segments/audiences/*.VARIANTS)
VARIANTS: dict[str, Phrase] = {
    "detailed": {"en": "items related to what they bought", "ru": "товары, связанные с покупкой"},
    "basic": {"en": "shop best sellers", "ru": "хиты магазина"},
    "items": {"en": "the cancelled items", "ru": "отменённые товары"},
    "alternatives": {"en": "alternatives to the cancelled order", "ru": "замена отменённому заказу"},
}

# the shop-data checks (shopmail/shop/data_checks.py: Great Expectations expectations and the pandas
# checks), as the data-check table and the run log name them; `references_<table>` reads "refers to a
# row missing from <table>" (check_words)
CHECKS: dict[str, Phrase] = {
    "expect_column_values_to_not_be_null": {"en": "must not be empty", "ru": "не должно быть пустым"},
    "expect_column_values_to_be_unique": {"en": "must be unique", "ru": "должно быть уникальным"},
    "expect_column_values_to_be_in_set": {
        "en": "must be one of the allowed values",
        "ru": "должно быть одним из допустимых значений",
    },
    "expect_column_values_to_be_between": {
        "en": "must lie within the allowed range",
        "ru": "должно быть в допустимых пределах",
    },
    "not_null": {"en": "must not be empty", "ru": "не должно быть пустым"},
    "not_all_null": {"en": "empty in every row", "ru": "пусто во всех строках"},
    "table_not_empty": {"en": "the table must not be empty", "ru": "таблица не должна быть пустой"},
    "column_in_view": {"en": "column missing from the view", "ru": "столбца нет в представлении"},
    "parsable_time": {"en": "must be a readable time", "ru": "должно быть читаемым временем"},
    "parsable_number": {"en": "must be a number", "ru": "должно быть числом"},
    "times_readable": {"en": "times must be readable", "ru": "время должно читаться"},
    "not_in_future": {"en": "must not lie in the future", "ru": "не должно быть в будущем"},
    "zero_date_as_null": {
        "en": "MySQL zero date (read as missing)",
        "ru": "нулевая дата MySQL (считается пустой)",
    },
    "created_at_known": {"en": "registration time missing", "ru": "нет времени регистрации"},
    "plausible_age": {"en": "age must be plausible", "ru": "возраст должен быть правдоподобным"},
    "language_known": {
        "en": "a language the templates have",
        "ru": "язык, на котором есть шаблоны",
    },
    "language_normalised": {"en": "language code tidied up", "ru": "код языка приведён к виду"},
    "currency_known": {"en": "a known currency", "ru": "известная валюта"},
    "status_history_in_order": {
        "en": "status changes must be in time order",
        "ru": "смены статуса должны идти по времени",
    },
    "orders_fresh": {"en": "orders must be recent (not a stale copy)", "ru": "заказы должны быть свежими"},
    "text_length": {"en": "text must fit its column", "ru": "текст должен помещаться в поле"},
    "valid_address": {"en": "must be a valid e-mail address", "ru": "должен быть правильный адрес почты"},
    "valid_link": {"en": "must be a safe link", "ru": "должна быть безопасная ссылка"},
    "references": {"en": "refers to a row missing from", "ru": "ссылается на отсутствующую строку в"},
}

# what a failed check does to the row (CheckResult.severity)
SEVERITIES: dict[str, Phrase] = {
    "critical": {"en": "the run stops", "ru": "запуск останавливается"},
    "quarantine": {"en": "row set aside, never mailed", "ru": "строка отложена, письма нет"},
    "unknown": {"en": "value treated as missing", "ru": "значение считается пустым"},
}

# labels the reports put around the phrases
LABELS: dict[str, Phrase] = {
    "measure": {"en": "measure", "ru": "показатель"},
    "count": {"en": "count", "ru": "количество"},
    "skipped_because": {"en": "skipped", "ru": "пропущено"},
    "variant": {"en": "variant", "ru": "вариант"},
    "reason": {"en": "reason", "ru": "причина"},
    "approve": {"en": "Approve", "ru": "Одобрить"},
    "why_approval": {"en": "Why this needs approval", "ru": "Почему нужно одобрение"},
    "sample_mail": {"en": "Sample mail", "ru": "Пример письма"},
    "subject": {"en": "Subject", "ru": "Тема"},
    "preheader": {"en": "Preheader", "ru": "Прехедер"},
    "full_mail": {"en": "Full mail", "ru": "Письмо целиком"},
    "full_mail_later": {
        "en": "the full mail (HTML) is in the run's artifact `{key}` and `shopmail preview {campaign}`",
        "ru": "письмо целиком (HTML) в артефакте запуска `{key}` и в `shopmail preview {campaign}`",
    },
    # the data-check table's columns and verdicts (checks_table)
    "table": {"en": "table", "ru": "таблица"},
    "column": {"en": "column", "ru": "столбец"},
    "check": {"en": "check", "ru": "проверка"},
    "when_found": {"en": "when it finds rows", "ru": "если нашлись строки"},
    "rows": {"en": "rows", "ru": "строк"},
    "rows_found": {"en": "rows found", "ru": "найдено"},
    "result": {"en": "result", "ru": "итог"},
    "check_ok": {"en": "ok", "ru": "ок"},
    "check_failed": {"en": "**FAILED**", "ru": "**НЕ ПРОЙДЕНА**"},
}

# why a run sends nothing, one sentence each (shopmail/run/zero_reason.py fills the {values})
ZERO: dict[str, Phrase] = {
    "sale_ended": {
        "en": "the sale ended on {ends_on}: nothing is sent after its last day (a new sale needs a new "
        "`sale_id` and `ends_on` in config/campaigns/sale.toml)",
        "ru": "распродажа закончилась {ends_on}: после её последнего дня письма не отправляются (для новой "
        "распродажи задайте новые `sale_id` и `ends_on` в config/campaigns/sale.toml)",
    },
    "sale_no_products": {
        "en": "fewer than {min_products} sale products are in stock on {day}, so there is nothing to show",
        "ru": "на {day} в наличии меньше {min_products} товаров распродажи: показать нечего",
    },
    "no_birthday": {"en": "no customer has a birthday on {day}", "ru": "{day} ни у кого нет дня рождения"},
    "no_name_day": {"en": "no customer has a name day on {day}", "ru": "{day} ни у кого нет именин"},
    "no_holiday": {
        "en": "no holiday in the calendar greets customers on {day}",
        "ru": "{day} в календаре нет праздника для поздравления",
    },
    "no_match": {
        "en": "no customer matches the campaign's rule on {day}",
        "ru": "{day} ни один покупатель не подходит под правило кампании",
    },
    "segment_empty": {
        "en": "none of the {audience} customers of the campaign's audience is in the segment {segment}",
        "ru": "ни один из {audience} покупателей аудитории кампании не входит в сегмент {segment}",
    },
    "already_sent": {
        "en": "everyone in the audience ({count}) already got this mail",
        "ru": "все покупатели аудитории ({count}) уже получили это письмо",
    },
    "frequency_cap": {
        "en": "all {count} customers are held by the frequency cap: they got enough mails lately",
        "ru": "все {count} покупателей задержаны ограничением частоты: они недавно получили достаточно писем",
    },
    "no_consent": {
        "en": "none of the {count} customers consented to marketing mail",
        "ru": "ни один из {count} покупателей не дал согласия на рекламные письма",
    },
    "holdout": {
        "en": "all {count} customers are in the comparison group, which gets no mail on purpose",
        "ru": "все {count} покупателей в контрольной группе, которая намеренно не получает писем",
    },
    "one_reason": {
        "en": "none of the {count} customers of the audience can get it: {reason}",
        "ru": "ни один из {count} покупателей аудитории не может получить письмо: {reason}",
    },
    "mixed": {
        "en": "none of the {count} customers of the audience can get it ({reasons})",
        "ru": "ни один из {count} покупателей аудитории не может получить письмо ({reasons})",
    },
    "limit": {"en": "the run's limit is 0", "ru": "ограничение запуска равно 0"},
    "nothing": {"en": "Nothing to send", "ru": "Отправлять нечего"},
    "nothing_sent": {"en": "Nothing sent", "ru": "Ничего не отправлено"},
}

GROUPS: dict[str, dict[str, Phrase]] = {
    "reason": REASONS,
    "outcome": OUTCOMES,
    "count": COUNTS,
    "status": STATUSES,
    "variant": VARIANTS,
    "label": LABELS,
    "zero": ZERO,
    "check": CHECKS,
    "severity": SEVERITIES,
}
Kind = Literal["reason", "outcome", "count", "status", "variant", "label", "zero", "check", "severity"]
SNAKE = re.compile(r"\b[a-z]+(?:_[a-z0-9]+)+\b")


def report_language() -> Language:
    """The language of reports, dialogs and logs: SHOPMAIL_REPORT_LANGUAGE (en, default / ru)."""
    value = os.environ.get("SHOPMAIL_REPORT_LANGUAGE", "en").strip().lower()[:2]
    return "ru" if value == "ru" else "en"


def words(code: object, kind: Kind = "reason", lang: Language | None = None) -> str:
    """The phrase for `code` (a reason, outcome, count, status, variant or label) in `lang` (default:
    the report language). A code not in the table (an A/B test's own variant name) is shown as it is,
    its underscores as spaces: never a snake_case code."""
    text = str(getattr(code, "value", code))
    phrase = GROUPS[kind].get(text)
    if phrase is None:
        return text.replace("_", " ")
    return phrase[lang or report_language()]


def check_words(check: str, lang: Language | None = None) -> str:
    """A data check's name in words ("must not be empty"; `references_orders`: "refers to a row
    missing from orders")."""
    target = check.removeprefix("references_")
    if target != check:
        return f"{words('references', 'check', lang)} {target}"
    return words(check, "check", lang)


def checks_table(results: Iterable[Any], lang: Language | None = None) -> str:
    """The data checks of a run as a Markdown table in words (each check's name, what a failure does,
    rows checked and found, the result)."""
    columns = ("table", "column", "check", "when_found", "rows", "rows_found", "result")
    head = "| " + " | ".join(words(c, "label", lang) for c in columns) + " |"
    lines = [head, "|---|---|---|---|---:|---:|---|"]
    for r in results:
        verdict = words("check_ok" if r.success else "check_failed", "label", lang)
        lines.append(
            f"| {r.dataset} | {r.column} | {check_words(r.check, lang)} "
            f"| {words(r.severity, 'severity', lang)} "
            f"| {r.rows:,} | {r.unexpected:,} | {verdict} |"
        )
    return "\n".join(lines)


def counts_sentence(counts: Mapping[str, int], kind: Kind = "outcome", lang: Language | None = None) -> str:
    """Nonzero counts as words, e.g. "40 sent, 4 refused by the mail provider" ("nothing" if none)."""
    parts = [f"{int(v):,} {words(k, kind, lang)}" for k, v in counts.items() if v]
    return ", ".join(parts) or ("ничего" if (lang or report_language()) == "ru" else "nothing")


def snake_codes(text: str) -> list[str]:
    """The snake_case words of `text` (what a marketer should never read), outside `code` spans,
    links and file paths."""
    plain = re.sub(r"`[^`]*`|https?://\S+|(?<!\w)/\S+", "", text)
    return SNAKE.findall(plain)
