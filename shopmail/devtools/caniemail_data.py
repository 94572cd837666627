"""Refresh `shopmail/mail/caniemail_support.json` (the support data the template lint uses) from a local
checkout of caniemail (https://github.com/hteumeuleu/caniemail, MIT licence, © Rémi Parmentier):

    python -m shopmail.devtools.caniemail_data /path/to/caniemail [--commit <hash>]

Keeps, for the features the lint knows (`email_lint.FEATURES`) and the clients it checks
(`email_lint.CLIENTS`), the support caniemail records for each client's latest tested version ("y",
"n", "a" partial, "u" unknown) with the notes it cites. Nothing is downloaded at run time.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from shopmail.mail.email_lint import CLIENTS, DATA_FILE, FEATURES


def _value(text: str, i: int) -> tuple[object, int]:
    """Parse the JSON-like value at `text[i]` (objects with bare or quoted keys, trailing commas,
    strings, bare words): (value, index after it)."""
    while text[i] in " \t\r\n":
        i += 1
    if text[i] == "{":
        found: dict[str, object] = {}
        i += 1
        while True:
            while text[i] in " \t\r\n,":
                i += 1
            if text[i] == "}":
                return found, i + 1
            key, i = _value(text, i)
            i = text.index(":", i) + 1
            found[str(key)], i = _value(text, i)
    if text[i] == '"':
        end = i + 1
        while text[end] != '"':
            end += 2 if text[end] == "\\" else 1
        return json.loads(text[i : end + 1]), end + 1
    word = re.match(r"[^,:}\s]+", text[i:])
    assert word is not None, text[i : i + 40]
    return word.group(0), i + word.end()


def _block(front: str, key: str) -> dict:
    """The `key: { ... }` block of a feature's front matter."""
    start = front.find(f"\n{key}:")
    if start < 0:
        return {}
    value, _ = _value(front, front.index("{", start))
    return value  # type: ignore[return-value]


def _front_matter(text: str) -> dict:
    found = re.match(r"---\r?\n(.*?)\r?\n---\r?\n", text, re.S)  # the lines between two `---` lines
    if found is None:
        raise ValueError("no front matter")
    front = "\n" + found.group(1)
    fields = dict(re.findall(r'\n(title|last_test_date):\s*"?(.*?)"?\s*(?=\n)', front))
    return {**fields, "stats": _block(front, "stats"), "notes_by_num": _block(front, "notes_by_num")}


def _latest(versions: dict) -> tuple[str, list[str]]:
    """Support of the last listed version: ('y'|'n'|'a'|'u', note numbers)."""
    value = str(list(versions.values())[-1]).strip()
    return value[:1], re.findall(r"#(\d+)", value)


def extract(checkout: Path, commit: str) -> dict:
    features = {}
    for slug in sorted({feature.slug for feature in FEATURES}):
        meta = _front_matter((checkout / "_features" / f"{slug}.md").read_text(encoding="utf-8"))
        notes = {str(k): str(v) for k, v in (meta.get("notes_by_num") or {}).items()}
        support = {}
        for client in CLIENTS:
            family, platform = client.split(".")
            versions = (meta["stats"].get(family) or {}).get(platform)
            if not versions:
                support[client] = {"support": "u"}
                continue
            value, numbers = _latest(versions)
            entry = {"support": value}
            if numbers:
                entry["notes"] = [notes.get(n, f"note {n}") for n in numbers]
            support[client] = entry
        features[slug] = {
            "title": meta["title"],
            "last_test_date": str(meta.get("last_test_date")),
            **{"clients": support},
        }
    return {
        "source": "https://github.com/hteumeuleu/caniemail (_features/*.md), MIT licence, © Rémi Parmentier",
        "commit": commit,
        "features": features,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkout", type=Path)
    parser.add_argument("--commit", default="unknown")
    args = parser.parse_args(argv)
    data = extract(args.checkout, args.commit)
    DATA_FILE.write_text(json.dumps(data, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(f"{len(data['features'])} features written to {DATA_FILE}")


if __name__ == "__main__":
    main()
