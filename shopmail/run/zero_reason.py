"""Every zero explained: when a run would send (or sent) nothing, one sentence says why, in the
vocabulary's words (shopmail/run/vocabulary.py `ZERO`)."""

from __future__ import annotations

from collections.abc import Mapping

from shopmail.run.vocabulary import Language, report_language, words

# skip reasons that have a sentence of their own when they took everyone
OWN_SENTENCE = ("already_sent", "frequency_cap", "no_consent", "holdout")


def _say(code: str, lang: Language, **values: object) -> str:
    return words(code, "zero", lang).format(**{k: str(v) for k, v in values.items()})


def zero_reason(
    *,
    audience: int,
    skipped: Mapping[str, int],
    holdout: int = 0,
    empty: tuple[str, dict[str, str]] | None = None,
    limit: int | None = None,
    dry_run: bool = True,
    lang: Language | None = None,
) -> str:
    """Why a run sends nothing, as one sentence ("Nothing to send: the sale ended on 2026-11-30.").

    `empty`: why the audience is empty (segments/audiences/empty_reasons.py), `("segment_empty", ...)`
    when the segment removed everyone; `skipped`: skip reason -> count (the claim's too, on a real run);
    `holdout`: customers put in the comparison group."""
    lang = lang or report_language()
    lead = words("nothing" if dry_run else "nothing_sent", "zero", lang)
    if audience == 0:
        code, values = empty or ("no_match", {"day": "?"})
        return f"{lead}: {_say(code, lang, **values)}."
    if limit == 0:
        return f"{lead}: {_say('limit', lang)}."
    held = {k: int(v) for k, v in skipped.items() if v}
    if holdout:
        held["holdout"] = held.get("holdout", 0) + int(holdout)
    total = sum(held.values()) or audience
    if len(held) == 1:
        ((reason, count),) = held.items()
        if reason in OWN_SENTENCE:
            return f"{lead}: {_say(reason, lang, count=f'{count:,}')}."
        return f"{lead}: {_say('one_reason', lang, count=f'{count:,}', reason=words(reason, lang=lang))}."
    ranked = sorted(held.items(), key=lambda kv: (-kv[1], kv[0]))
    reasons = "; ".join(f"{words(k, lang=lang)}: {v:,}" for k, v in ranked)
    return f"{lead}: {_say('mixed', lang, count=f'{total:,}', reasons=reasons)}."
