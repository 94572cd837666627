"""Secrets from Prefect Secret blocks when deployed (`SHOPMAIL_SECRET_BLOCKS=true`).

Locally every secret comes from its `SHOPMAIL_*` environment variable (or `.env`). On a deployed
worker the same settings can instead be read from Prefect Secret blocks named `shopmail-<field>`,
e.g. `shopmail-sendgrid-api-key`; an environment variable, when set, still wins.
"""

from __future__ import annotations

from typing import Any

SECRET_FIELDS = (
    "sendgrid_api_key",
    "shop_db_url",
    "state_db_url",
    "unsubscribe_secret",
    "coupon_secret",
    "sendgrid_webhook_public_key",
)


def block_name(field: str) -> str:
    return "shopmail-" + field.replace("_", "-")


def load_secret_blocks(missing: list[str]) -> dict[str, Any]:
    """Values of the Secret blocks for the `missing` fields that exist on the Prefect server."""
    from prefect.blocks.system import Secret

    found: dict[str, Any] = {}
    for field in missing:
        try:
            found[field] = Secret.load(block_name(field)).get()
        except ValueError:  # no such block: keep the default
            continue
    return found
