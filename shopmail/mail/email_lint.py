"""A lint of the HTML templates against what mail clients support, from caniemail's data.

Every `*.html.j2` under the templates folder (Jinja tags removed, conditional comments for Outlook
skipped) is scanned for the HTML elements and attributes, CSS properties, values, units, selectors
and at-rules it uses; each is looked up in `caniemail_support.json` (caniemail's records, encoded in
the repo by `shopmail.devtools.caniemail_data`, source and commit named in the file) for Gmail, Apple
Mail, Outlook (Windows, Outlook.com), Yahoo and Mail.ru. What a client does not support ("n") or
supports in part ("a") is a finding; the allow list (`email_templates/_lint_allow.toml`) accepts the
graceful degradations the layout is built for, each with its reason. Anything else fails.

Run it: `python -m shopmail.mail.email_lint [templates folder]` (exit status 1 on a failure).
"""

from __future__ import annotations

import json
import re
import sys
import tomllib
from collections import Counter
from dataclasses import dataclass, field
from functools import cache
from html.parser import HTMLParser
from pathlib import Path

DATA_FILE = Path(__file__).with_name("caniemail_support.json")
ALLOW_FILE = "_lint_allow.toml"
CLIENTS = (
    "gmail.desktop-webmail",
    "gmail.ios",
    "gmail.android",
    "gmail.mobile-webmail",
    "apple-mail.macos",
    "apple-mail.ios",
    "outlook.windows",
    "outlook.outlook-com",
    "yahoo.desktop-webmail",
    "yahoo.ios",
    "yahoo.android",
    "mail-ru.desktop-webmail",
)


@dataclass(frozen=True, slots=True)
class Feature:
    slug: str  # caniemail's feature name (its _features/<slug>.md)


_CSS_PROPERTIES = {
    p: f"css-{p}"
    for p in (
        "background",
        "background-color",
        "background-image",
        "background-position",
        "background-repeat",
        "background-size",
        "border",
        "border-collapse",
        "border-radius",
        "border-spacing",
        "box-shadow",
        "box-sizing",
        "color-scheme",
        "direction",
        "display",
        "float",
        "font",
        "font-size",
        "font-weight",
        "height",
        "letter-spacing",
        "line-height",
        "margin",
        "max-height",
        "max-width",
        "min-height",
        "min-width",
        "opacity",
        "overflow",
        "overflow-wrap",
        "padding",
        "position",
        "text-align",
        "text-decoration",
        "text-overflow",
        "text-shadow",
        "text-transform",
        "transform",
        "vertical-align",
        "visibility",
        "white-space",
        "width",
        "word-break",
        "word-spacing",
        "word-wrap",
        "z-index",
    )
}
_CSS_PREFIXES = {"border-": "css-border", "margin-": "css-margin", "padding-": "css-padding"}
_CSS_DISPLAY = {"none": "css-display-none", "flex": "css-display-flex", "grid": "css-display-grid"}
_UNITS = {
    "px": "css-unit-px",
    "%": "css-unit-percent",
    "em": "css-unit-em",
    "rem": "css-unit-rem",
    "vw": "css-unit-vw",
    "vh": "css-unit-vh",
    "pt": "css-unit-pt",
}
_VALUE_FEATURES = {
    "linear-gradient(": "css-linear-gradient",
    "radial-gradient(": "css-radial-gradient",
    "rgba(": "css-rgba",
    "calc(": "css-unit-calc",
    "var(": "css-variables",
}
_ELEMENTS = {
    "table": "html-table",
    "div": "html-div",
    "p": "html-p",
    "span": "html-span",
    "img": "html-img",
    "code": "html-code",
    "strong": "html-strong",
    "style": "html-style",
    "svg": "html-svg",
    "form": "html-form",
    "video": "html-video",
    "audio": "html-audio",
    "picture": "html-picture",
    "pre": "html-pre",
    "hr": "html-hr",
    "blockquote": "html-blockquote",
    "ul": "html-lists",
    "ol": "html-lists",
    **{f"h{i}": "html-h1-h6" for i in range(1, 7)},
}
_ATTRIBUTES = {
    "lang": "html-lang",
    "role": "html-role",
    "align": "html-align",
    "valign": "html-valign",
    "width": "html-width",
    "height": "html-height",
    "cellpadding": "html-cellpadding",
    "cellspacing": "html-cellspacing",
    "target": "html-target",
    "dir": "html-dir",
    "background": "html-background",
    "aria-label": "html-aria-label",
    "aria-hidden": "html-aria-hidden",
    "srcset": "html-srcset",
    "loading": "html-loading-attribute",
    "hidden": "html-hidden",
}
FEATURES = tuple(
    Feature(slug)
    for slug in sorted(
        {
            *_CSS_PROPERTIES.values(),
            *_CSS_PREFIXES.values(),
            *_CSS_DISPLAY.values(),
            *_UNITS.values(),
            *_VALUE_FEATURES.values(),
            *_ELEMENTS.values(),
            *_ATTRIBUTES.values(),
            "css-important",
            "css-at-media",
            "css-at-media-prefers-color-scheme",
            "css-at-import",
            "css-at-font-face",
            "css-selector-class",
            "html-body",
            "html-doctype",
            "html-mailto-links",
            "html-meta-color-scheme",
        }
    )
)

_JINJA = re.compile(r"\{#.*?#\}|\{%.*?%\}", re.S)
_JINJA_VALUE = re.compile(r"\{\{.*?\}\}", re.S)
_DECLARATION = re.compile(r"([a-zA-Z-]+)\s*:\s*([^;{}]+)")
_RULE = re.compile(r"([^{}]+)\{([^{}]*)\}")


def _css_features(declarations: str) -> set[str]:
    found: set[str] = set()
    for prop, value in _DECLARATION.findall(declarations):
        prop, value = prop.strip().lower(), value.strip().lower()
        if prop.startswith("mso-") or prop.startswith("-"):
            continue  # Outlook's own and vendor properties: ignored by everyone else
        if prop in _CSS_PROPERTIES:
            found.add(_CSS_PROPERTIES[prop])
        else:
            found |= {slug for prefix, slug in _CSS_PREFIXES.items() if prop.startswith(prefix)}
        if prop == "display" and value.replace("!important", "").strip() in _CSS_DISPLAY:
            found.add(_CSS_DISPLAY[value.replace("!important", "").strip()])
        if "!important" in value:
            found.add("css-important")
        for number_unit in re.findall(r"\d(px|%|r?em|vw|vh|pt)\b|\d(%)", value):
            unit = number_unit[0] or number_unit[1]
            found.add(_UNITS[unit])
        found |= {slug for token, slug in _VALUE_FEATURES.items() if token in value}
    return found


def _stylesheet_features(css: str) -> set[str]:
    css = re.sub(r"/\*.*?\*/", "", css, flags=re.S)
    found: set[str] = set()
    if "@media" in css:
        found.add("css-at-media")
    if "prefers-color-scheme" in css:
        found.add("css-at-media-prefers-color-scheme")
    if "@import" in css:
        found.add("css-at-import")
    if "@font-face" in css:
        found.add("css-at-font-face")
    for selectors, declarations in _RULE.findall(css):
        if re.search(r"\.[A-Za-z_-]", selectors.split("@")[-1]):
            found.add("css-selector-class")
        found |= _css_features(declarations)
    return found


class _Scanner(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.features: set[str] = set()
        self._in_style = False

    def handle_decl(self, decl: str) -> None:
        if decl.lower().startswith("doctype"):
            self.features.add("html-doctype")

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        if tag in _ELEMENTS:
            self.features.add(_ELEMENTS[tag])
        if tag == "body" and ("style" in values or "class" in values):
            self.features.add("html-body")  # its styles and classes are dropped by some clients
        if tag == "meta" and values.get("name", "").lower() == "color-scheme":
            self.features.add("html-meta-color-scheme")
        if tag == "a" and values.get("href", "").lower().startswith("mailto:"):
            self.features.add("html-mailto-links")
        for name in values:
            if name in _ATTRIBUTES and not (tag == "html" and name == "lang"):
                self.features.add(_ATTRIBUTES[name])
        if "style" in values:
            self.features |= _css_features(values["style"])
        self._in_style = tag == "style"

    def handle_endtag(self, tag: str) -> None:
        if tag == "style":
            self._in_style = False

    def handle_data(self, data: str) -> None:
        if self._in_style:
            self.features |= _stylesheet_features(data)


def template_features(source: str) -> set[str]:
    """The caniemail features a template's HTML uses (Jinja removed; Outlook's conditional comments,
    read by Outlook for Windows alone, are comments to the parser and not scanned)."""
    scanner = _Scanner()
    scanner.feed(_JINJA_VALUE.sub("x", _JINJA.sub("", source)))
    scanner.close()
    return scanner.features


@cache
def support_data() -> dict:
    return json.loads(DATA_FILE.read_text(encoding="utf-8"))


@dataclass(frozen=True, slots=True)
class Finding:
    template: str
    feature: str
    client: str
    support: str  # "n" not supported, "a" partly
    notes: tuple[str, ...]
    allowed: str | None  # the allow list's reason, None: a failure


@dataclass
class LintReport:
    templates: int = 0
    features: set[str] = field(default_factory=set)
    checks: int = 0  # (template, feature, client) look-ups
    findings: list[Finding] = field(default_factory=list)

    @property
    def failures(self) -> list[Finding]:
        return [f for f in self.findings if f.allowed is None]

    def summary(self) -> str:
        by_support = Counter(f.support for f in self.findings)
        allowed = len(self.findings) - len(self.failures)
        return (
            f"{self.templates} templates, {len(self.features)} caniemail features used, {self.checks} checks "
            f"against {len(CLIENTS)} clients: {by_support['n']} unsupported and {by_support['a']} partly "
            f"supported uses, {allowed} of them allowed as graceful degradations, "
            f"{len(self.failures)} failing"
        )


def load_allow_list(folder: Path) -> dict[tuple[str, str], str]:
    """(feature, client) -> why it is accepted, from `<folder>/_lint_allow.toml`."""
    path = folder / ALLOW_FILE
    if not path.is_file():
        return {}
    allowed = {}
    for entry in tomllib.loads(path.read_text(encoding="utf-8")).get("allow", []):
        for client in entry.get("clients", CLIENTS):
            allowed[(entry["feature"], client)] = entry["reason"]
    return allowed


def lint_templates(folder: Path) -> LintReport:
    """Lint every HTML template under `folder`."""
    data = support_data()["features"]
    allowed = load_allow_list(folder)
    report = LintReport()
    for path in sorted(folder.rglob("*.html.j2")):
        name = path.relative_to(folder).as_posix()
        used = template_features(path.read_text(encoding="utf-8"))
        report.templates += 1
        report.features |= used
        for slug in sorted(used):
            clients = data.get(slug, {}).get("clients", {})
            for client in CLIENTS:
                report.checks += 1
                entry = clients.get(client, {"support": "u"})
                if entry["support"] in ("n", "a"):
                    report.findings.append(
                        Finding(
                            name,
                            slug,
                            client,
                            entry["support"],
                            tuple(entry.get("notes", ())),
                            allowed.get((slug, client)),
                        )
                    )
    return report


def main(argv: list[str] | None = None) -> int:
    from shopmail.mail.rendering import TEMPLATES_DIR

    args = sys.argv[1:] if argv is None else argv
    folder = Path(args[0]) if args else TEMPLATES_DIR
    report = lint_templates(folder)
    for finding in report.failures:
        notes = f" ({'; '.join(finding.notes)})" if finding.notes else ""
        word = "does not support" if finding.support == "n" else "partly supports"
        print(f"{finding.template}: {finding.client} {word} {finding.feature}{notes}")
    print(report.summary())
    print(f"caniemail data: {support_data()['source']}, commit {support_data()['commit']}")
    return 1 if report.failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
