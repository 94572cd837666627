"""The template lint against caniemail's support data: the shipped templates pass (every finding is an
allowed graceful degradation), a template with what Outlook, Gmail or Yahoo cannot show fails, and the
data extraction reads caniemail's feature files as they are written."""

from __future__ import annotations

from pathlib import Path

from shopmail.devtools.caniemail_data import _front_matter
from shopmail.mail.email_lint import (
    CLIENTS,
    FEATURES,
    lint_templates,
    load_allow_list,
    main,
    support_data,
    template_features,
)
from shopmail.mail.rendering import TEMPLATES_DIR


def test_the_shipped_templates_pass_with_every_finding_allowed_for_a_reason(capsys) -> None:
    report = lint_templates(TEMPLATES_DIR)
    assert report.templates >= 40 and report.findings  # the lint looked, and found degradations
    assert report.failures == [], [(f.template, f.feature, f.client) for f in report.failures[:10]]
    assert main([str(TEMPLATES_DIR)]) == 0
    printed = capsys.readouterr().out
    assert "0 failing" in printed and "caniemail" in printed
    used = {(f.feature, f.client) for f in report.findings}
    stale = set(load_allow_list(TEMPLATES_DIR)) - used
    assert not {feature for feature, _ in stale} - {f for f, _ in used}, "allow entries no template needs"


def test_what_clients_cannot_show_fails(tmp_path: Path) -> None:
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "body.html.j2").write_text(
        '<body style="background:#eee"><div style="display:flex;position:absolute;'
        'background-image:url(https://shop.example/bg.png);border-radius:4px">{{ name }}</div>'
        '<svg width="10" height="10"></svg></body>',
        encoding="utf-8",
    )
    report = lint_templates(tmp_path)  # no allow list in this folder
    failing = {(f.feature, f.client) for f in report.failures}
    assert ("css-display-flex", "outlook.windows") in failing
    assert ("css-position", "gmail.desktop-webmail") in failing
    assert ("css-background-image", "outlook.windows") in failing
    assert ("html-svg", "gmail.desktop-webmail") in failing
    assert ("html-body", "yahoo.ios") in failing
    assert main([str(tmp_path)]) == 1


def test_jinja_and_outlook_conditional_comments_are_not_read_as_html() -> None:
    source = (
        '{% if x %}<p style="color:{{ c }};">a</p>{% endif %}{# <svg> #}'
        '<!--[if mso]><table style="position:absolute"><![endif]-->'
    )
    assert template_features(source) == {"html-p"}


def test_the_data_covers_every_feature_and_client_and_names_its_source() -> None:
    data = support_data()
    assert "caniemail" in data["source"] and len(data["commit"]) == 40
    for feature in FEATURES:
        clients = data["features"][feature.slug]["clients"]
        assert set(clients) == set(CLIENTS), feature.slug
        assert all(entry["support"] in "ynau" for entry in clients.values())


def test_the_extraction_reads_caniemail_front_matter_as_written() -> None:
    text = (
        '---\ntitle: "border-radius"\nlast_test_date: "2021-03-09"\nstats: {\n    outlook: {\n'
        '        windows: {\n            "2016":"n #1",\n\t\t\t"2019":"a #1 #2",\n        },\n    },\n}\n'
        'notes_by_num: {\n    "1": "See [x](https://a.example/w---v) {not a brace}",\n'
        '\t"2": "Partial. \\"quoted\\"",\n}\n---\n# body\n'
    )
    meta = _front_matter(text)
    assert meta["title"] == "border-radius" and meta["last_test_date"] == "2021-03-09"
    assert meta["stats"] == {"outlook": {"windows": {"2016": "n #1", "2019": "a #1 #2"}}}
    assert meta["notes_by_num"]["2"] == 'Partial. "quoted"'
