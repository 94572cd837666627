"""The README stays short and true, and the documentation site is complete.

- README.md: under 200 lines; every `make <target>` it names is a Makefile target; every link into
  the repository (docs/ pages, files) resolves.
- The generated reference pages name every setting, campaign-file key and command, and never print
  a secret's value.
- `mkdocs build --strict` fails on a broken link (so `make docs`, run by `make test`, guards the site),
  and the optional `series-and-send-time.md` page joins the nav only when its file exists.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote

import pytest
import yaml

from config.settings import DEMO_COUPON_SECRET, DEMO_UNSUBSCRIBE_SECRET, Settings
from mkdocs_hooks import typer_command, with_optional_pages  # the docs build's entry point, at the root
from shopmail.campaigns import Campaign
from shopmail.devtools.docs_reference import campaign_file_markdown, cli_markdown, settings_markdown

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
MKDOCS = ROOT / ".venv" / "bin" / "mkdocs"


def _makefile_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text(encoding="utf-8")
    return {m.group(1) for m in re.finditer(r"^([A-Za-z][\w-]*)\s*:(?!=)", text, re.M)}


def _local_links(markdown: str) -> list[str]:
    """Targets of Markdown links that point into the repository (not URLs, not bare anchors)."""
    links = re.findall(r"\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)", markdown)
    return [link for link in links if not re.match(r"^[a-z][a-z0-9+.-]*:", link) and not link.startswith("#")]


def test_readme_is_short() -> None:
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) < 200, f"README.md has {len(lines)} lines: move the detail into docs/"


def test_every_make_target_the_readme_names_exists() -> None:
    named = set(re.findall(r"\bmake ([a-z][\w-]*)", README.read_text(encoding="utf-8")))
    assert {"demo", "test", "docs"} <= named
    missing = named - _makefile_targets()
    assert not missing, f"README names make targets the Makefile lacks: {sorted(missing)}"


def test_readme_links_into_the_repository_resolve() -> None:
    links = _local_links(README.read_text(encoding="utf-8"))
    assert any(link.startswith("docs/") for link in links)
    broken = [link for link in links if not (ROOT / unquote(link.split("#")[0])).exists()]
    assert not broken, f"README links to files that do not exist: {broken}"


def test_the_link_checks_catch_a_missing_target_and_a_missing_make_target() -> None:
    """The checks above can fail: a made-up link and a made-up target are found."""
    links = _local_links("[a](docs/nowhere.md) [b](https://x.example/y.md) [c](#top)")
    assert links == ["docs/nowhere.md"] and not (ROOT / links[0]).exists()
    assert "demo" in _makefile_targets() and "publish-everything" not in _makefile_targets()


def test_settings_reference_names_every_setting_and_no_secret_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHOPMAIL_SENDGRID_API_KEY", "SG.never-on-a-page-4711")
    monkeypatch.setenv("SHOPMAIL_SHOP_DB_URL", "postgresql+psycopg://shop:pw-never-shown-4711@db/shop")
    page = settings_markdown()
    for name in Settings.model_fields:
        assert f"`SHOPMAIL_{name.upper()}`" in page, name
    secrets = ("SG.never-on-a-page-4711", "pw-never-shown-4711", DEMO_COUPON_SECRET, DEMO_UNSUBSCRIBE_SECRET)
    for value in secrets:
        assert value not in page
    row = next(line for line in page.splitlines() if line.startswith("| `SHOPMAIL_SENDGRID_API_KEY`"))
    assert "**secret**" in row and "not set" in row
    row = next(line for line in page.splitlines() if line.startswith("| `SHOPMAIL_SEND_BATCH_SIZE`"))
    assert "`1000`" in row and "Recipients per send task" in row


def test_campaign_file_reference_names_every_key() -> None:
    page = campaign_file_markdown()
    for name, field in Campaign.model_fields.items():
        internal = isinstance(field.json_schema_extra, dict) and field.json_schema_extra.get("internal")
        assert (f"| `{name}` |" in page) != bool(internal), name
    assert "`test_variant`" not in page  # set by the A/B step on a copy, never in a file
    assert "| `coupon.percent` |" in page and "| `ab_test.variants[].subject` |" in page


def test_cli_reference_names_every_command_and_option() -> None:
    import typer

    from shopmail.cli import app

    group = typer.main.get_command(app)
    page = cli_markdown(typer_command())
    for name, command in group.commands.items():  # type: ignore[attr-defined]
        assert f"`shopmail {name}`" in page, name
        for param in command.params:
            if getattr(param, "hidden", False):  # kept for operators, not documented
                assert f"`{param.opts[0]}`" not in page, (name, param.opts)
                continue
            for opt in getattr(param, "opts", []):
                if opt.startswith("--"):
                    assert f"`{opt}`" in page, (name, opt)
    assert "| `--dry-run` | flag |" in page


def test_the_optional_page_joins_the_nav_only_when_its_file_exists(tmp_path: Path) -> None:
    nav = [{"Home": "index.md"}, {"Marketer's guide": [{"Campaigns": "marketer/campaigns.md"}]}]
    assert with_optional_pages([dict(item) for item in nav], tmp_path) == nav
    (tmp_path / "series-and-send-time.md").write_text("# Series\n", encoding="utf-8")
    fresh = [{"Home": "index.md"}, {"Marketer's guide": [{"Campaigns": "c.md"}]}]
    grown = with_optional_pages(fresh, tmp_path)
    assert grown[1]["Marketer's guide"][-1] == {"Series and send time": "series-and-send-time.md"}
    again = with_optional_pages(grown, tmp_path)  # already named: not added twice
    assert sum(1 for e in again[1]["Marketer's guide"] if "series-and-send-time.md" in e.values()) == 1


@pytest.mark.skipif(not MKDOCS.exists(), reason="mkdocs is a dev extra: `make venv`")
def test_a_broken_link_fails_the_strict_build(tmp_path: Path) -> None:
    """The site with one broken link does not build (`make docs` builds the real one, strictly)."""
    docs = tmp_path / "docs"
    shutil.copytree(ROOT / "docs", docs)
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    config["docs_dir"] = str(docs)
    config["hooks"] = [str(ROOT / hook) for hook in config["hooks"]]
    (tmp_path / "mkdocs.yml").write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    command = [str(MKDOCS), "build", "--strict", "-f", str(tmp_path / "mkdocs.yml")]
    command += ["-d", str(tmp_path / "site")]


    page = docs / "operating" / "deploy.md"
    page.write_text(page.read_text(encoding="utf-8") + "\n[gone](no-such-page.md)\n", encoding="utf-8")
    broken = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert broken.returncode != 0 and "no-such-page.md" in broken.stderr


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
