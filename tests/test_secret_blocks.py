"""Deployed workers read secrets from Prefect Secret blocks; the environment still wins."""

from __future__ import annotations

import pytest

from config.secrets import block_name
from config.settings import Settings, get_settings


def test_secrets_come_from_blocks_when_asked(
    prefect_harness, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect.blocks.system import Secret

    Secret(value="SG.from-block").save(block_name("sendgrid_api_key"), overwrite=True)
    Secret(value="coupon-from-block").save(block_name("coupon_secret"), overwrite=True)
    monkeypatch.setenv("SHOPMAIL_COUPON_SECRET", "coupon-from-env")

    get_settings.cache_clear()
    assert get_settings().sendgrid_api_key is None  # off by default: nothing is read

    monkeypatch.setenv("SHOPMAIL_SECRET_BLOCKS", "true")
    get_settings.cache_clear()
    loaded = get_settings()
    assert loaded.sendgrid_api_key.get_secret_value() == "SG.from-block"
    assert loaded.coupon_secret.get_secret_value() == "coupon-from-env"  # the environment wins
    assert loaded.state_db_url is None  # no block: the default stays
    assert "SG.from-block" not in repr(loaded)
