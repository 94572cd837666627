"""Typography per language, applied to the literal text of templates when they are compiled (a Jinja2
extension, so every mail pays nothing for it and personal values are never touched) and, through the
`typography` filter, to text a campaign file supplies (headlines, greetings).

Russian: a no-break space after one- and two-letter prepositions, conjunctions and particles
("в магазине", "и скидки"), before a dash (" —"), after "№" and between a number and "%"; English:
no space between a number and "%" ("50%").
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from jinja2.ext import Extension
from jinja2.lexer import Token, TokenStream

NBSP = "\u00a0"
_SHORT_WORDS = "а|и|в|к|с|у|о|я|во|ко|со|об|на|по|за|до|от|из|не|ни|но|же|ли|бы|для|без|при|про|над|под"
_SHORT = re.compile(rf"(?<![\w\-])((?i:{_SHORT_WORDS})) +(?=\w)")
_SHORT_AT_END = re.compile(rf"(?<![\w\-])((?i:{_SHORT_WORDS})) +$")
_DASH = re.compile(r"(?<=\w) +(?=—)")
_NUMERO = re.compile(r"№ +(?=\w)")
_PERCENT = re.compile(r"(?<=\d)[ \u00a0\u202f]+%")


def typography(text: str, language: str) -> str:
    """`text` with the no-break spaces (or the missing spaces) the language's typography wants."""
    if not text:
        return text
    if language == "ru":
        text = _SHORT.sub(lambda m: m.group(1) + NBSP, text)
        text = _DASH.sub(NBSP, text)
        text = _NUMERO.sub("№" + NBSP, text)
        return _PERCENT.sub(NBSP + "%", text)
    if language == "en":
        text = _DASH.sub(NBSP, text)
        return _PERCENT.sub("%", text)
    return text


def template_language(name: str | None) -> str | None:
    """The language of a campaign template from its path (`<campaign>/<language>/<part>`); None for
    layouts and partials, which hold both languages."""
    parts = (name or "").split("/")
    return parts[1] if len(parts) == 3 and parts[1] in ("ru", "en") else None


class TypographyExtension(Extension):
    """Applies `typography` to the literal text of each template at compile time: the template's own
    language for `<campaign>/<language>/...` files; for shared layouts and partials only the rules
    that cannot be wrong in either language (those that need Cyrillic words, dashes and "№")."""

    def filter_stream(self, stream: TokenStream) -> Iterator[Token]:
        language = template_language(stream.name) or "shared"
        tokens = list(stream)
        for i, token in enumerate(tokens):
            if token.type != "data":
                yield token
                continue
            text = typography(token.value, language) if language != "shared" else _shared(token.value)
            if i + 1 < len(tokens) and tokens[i + 1].type == "variable_begin":
                text = _SHORT_AT_END.sub(lambda m: m.group(1) + NBSP, text)  # "до {{ day }}"
            yield Token(token.lineno, "data", text)


def _shared(text: str) -> str:
    """The rules of layouts and partials: the short words are Cyrillic, so English text is untouched."""
    text = _SHORT.sub(lambda m: m.group(1) + NBSP, text)
    text = _DASH.sub(NBSP, text)
    return _NUMERO.sub("№" + NBSP, text)
