"""An A/B test variant's subject and preheader as a template folder of its own.

A variant that changes the subject or the preheader renders from a virtual folder
`<template>@<variant>-<digest>`: its `subject.j2` / `preheader.j2` are the variant's texts (per
language), every other part is the campaign's own. So the renderer, the render-once grouping (what
the templates read) and the preheader logic of the layouts work for a variant exactly as for the
campaign itself. The digest changes with the texts, so an edited campaign file never renders from a
stale cache.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from jinja2 import BaseLoader, Environment

from shopmail.mail.rendering import LANGUAGES, Renderer, renderer_for

PREHEADER_PART = "preheader.j2"  # the layouts' per-campaign preheader template (issue 26's name)


class VariantLoader(BaseLoader):
    """Serves the variant's own parts under `virtual`, the campaign's (`template`) for the rest."""

    def __init__(self, base: BaseLoader, template: str, virtual: str, sources: dict[str, str]) -> None:
        self.base, self.template, self.virtual, self.sources = base, template, virtual, sources

    def get_source(self, environment: Environment, name: str) -> tuple[str, str | None, Callable[[], bool]]:
        if name in self.sources:
            return self.sources[name], None, lambda: True
        if name.startswith(self.virtual + "/"):
            name = self.template + name[len(self.virtual) :]
        return self.base.get_source(environment, name)


def variant_sources(template: str, variant: Any) -> dict[str, str]:
    """part name (relative to the virtual folder) -> the variant's text, per language."""
    sources = {}
    for part, file in (("subject", "subject.j2"), ("preheader", PREHEADER_PART)):
        for language in LANGUAGES:
            text = variant.text(part, language)
            if text is not None:
                sources[f"{language}/{file}"] = text
    return sources


def variant_renderer(
    base: Renderer, variant: Any, folder: Path, default_language: str, currency: str
) -> Renderer:
    """The renderer of `variant` (a `TestVariant`) over the campaign renderer `base`: `base` itself when
    the variant changes neither subject nor preheader."""
    relative = variant_sources(base.template, variant)
    if not relative:
        return base
    digest = hashlib.sha256(repr(sorted(relative.items())).encode()).hexdigest()[:10]
    virtual = f"{base.template}@{variant.name}-{digest}"
    renderer = renderer_for(virtual, folder, default_language, currency)
    if not isinstance(renderer.env.loader, VariantLoader):
        assert renderer.env.loader is not None
        sources = {f"{virtual}/{name}": text for name, text in relative.items()}
        renderer.env.loader = VariantLoader(renderer.env.loader, base.template, virtual, sources)
    return renderer
