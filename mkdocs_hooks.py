"""MkDocs hooks of the documentation site (`hooks:` in mkdocs.yml): the docs build's entry point.

- `on_config`: pages that exist only sometimes get their nav entry only when their file is there
  (`OPTIONAL_PAGES`), so `mkdocs build --strict` never fails on a nav entry without a file.
- `on_files`: the reference pages (settings, campaign file, CLI) are generated from the code by
  `shopmail.devtools.docs_reference` and added to the build; nothing is written into docs/.

`python mkdocs_hooks.py DIR` writes the generated pages into DIR, to read them without the site.
It lives at the repository root, beside mkdocs.yml, because it imports the `shopmail` command (the
typer app) for the CLI page, which no room of the package may (tests/test_import_directions.py).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any


def typer_command() -> Any:
    """The click command of the `shopmail` typer app."""
    import typer

    from shopmail.cli import app

    return typer.main.get_command(app)


def generated_pages() -> dict[str, str]:
    """The reference pages, path under docs/ -> Markdown."""
    from shopmail.devtools.docs_reference import reference_pages

    return reference_pages(typer_command())


# file under docs/ -> (nav section it joins, its title in the nav)
OPTIONAL_PAGES = {"series-and-send-time.md": ("Marketer's guide", "Series and send time")}


def _nav_files(nav: list[Any]) -> set[str]:
    """Every file a nav names, at any depth."""
    found: set[str] = set()
    for item in nav:
        value = next(iter(item.values())) if isinstance(item, dict) else item
        if isinstance(value, list):
            found |= _nav_files(value)
        elif isinstance(value, str):
            found.add(value)
    return found


def with_optional_pages(nav: list[Any], docs_dir: Path) -> list[Any]:
    """The nav plus an entry for each optional page whose file exists and the nav does not name yet."""
    named = _nav_files(nav)
    for path, (section, title) in OPTIONAL_PAGES.items():
        if path in named or not (docs_dir / path).is_file():
            continue
        for item in nav:
            if isinstance(item, dict) and section in item and isinstance(item[section], list):
                item[section].append({title: path})
                break
        else:
            nav.append({title: path})
    return nav


def on_config(config: Any) -> Any:
    if config.nav:
        config.nav = with_optional_pages(config.nav, Path(config.docs_dir))
    return config


def on_files(files: Any, config: Any) -> Any:
    from mkdocs.structure.files import File

    for path, markdown in generated_pages().items():
        files.append(File.generated(config, path, content=markdown))
    return files


def main(argv: list[str]) -> int:
    """Write the generated pages under the folder given (default: site-reference)."""
    out = Path(argv[0] if argv else "site-reference")
    for path, markdown in generated_pages().items():
        target = out / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(markdown, encoding="utf-8")
        print(target)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
