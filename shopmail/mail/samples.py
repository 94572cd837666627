"""Sample data of every mail: what a campaign's audience gives its templates, without a shop database.

Each template folder has a `sample.toml` (one `[[mail]]` table per variant worth seeing: the values
its audience columns give the templates, product lists as ids); `_samples/common.toml` holds the
customer and the products they share: the longest names and highest prices the demo shop can produce.
The gallery (`shopmail gallery`), the browser test and the length check of subjects and preheaders
render these samples through the real composer.
"""

from __future__ import annotations

import tomllib
from functools import lru_cache
from pathlib import Path
from typing import Any

SAMPLE_FILE = "sample.toml"
COMMON_FILE = Path("_samples") / "common.toml"


class SampleError(ValueError):
    """A template folder's sample data is missing or does not fit its products."""


@lru_cache(maxsize=8)
def _common(folder: Path) -> dict[str, Any]:
    path = folder / COMMON_FILE
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise SampleError(f"{path}: {exc}") from exc


def sample_products(folder: Path) -> dict[int, dict[str, Any]]:
    """Product id -> the fields templates use, as `pipeline.product_lookup` gives them."""
    return {int(p["id"]): dict(p) for p in _common(Path(folder)).get("product", [])}


def sample_rows(template: str, folder: Path) -> list[dict[str, Any]]:
    """The sample rows of `template` (audience rows as `MailComposer.compose` takes them, without a
    language): the common customer, then the folder's values; keys named in `none` are NULL."""
    folder = Path(folder)
    path = folder / template / SAMPLE_FILE
    try:
        mails = tomllib.loads(path.read_text(encoding="utf-8")).get("mail", [])
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise SampleError(f"{path}: {exc}") from exc
    if not mails:
        raise SampleError(f"{path}: no [[mail]] table")
    customer = _common(folder)["customer"]
    products = sample_products(folder)
    rows = []
    for number, values in enumerate(mails, 1):
        row = {**customer, **{k: v for k, v in values.items() if k != "none"}}
        row.update(dict.fromkeys(values.get("none", ())))
        for key, value in row.items():
            if isinstance(value, list) and value and isinstance(value[0], dict):
                row[key] = tuple(value)  # records (order lines, coupons...) come as tuples of dicts
            elif isinstance(value, list) and any(v not in products for v in value):
                raise SampleError(f"{path}: [[mail]] {number}: {key} names a product not in {COMMON_FILE}")
        row.setdefault("message_key", f"sample:{template}:{number}")
        row.setdefault("occasion_key", f"sample:{number}")
        rows.append(row)
    return rows
