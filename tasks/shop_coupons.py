"""Shop-coupons task: put back the coupons a campaign mailed that the shop no longer has."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NONE

from config.settings import get_settings
from shopmail.campaigns import Campaign
from shopmail.db import get_engine
from shopmail.state import state_db
from shopmail.state.coupons import restore_missing_coupons
from tasks.extract import read_shop


@task(name="restore-shop-coupons", cache_policy=NONE)
def restore_shop_coupons(campaign: Campaign) -> int:
    """Before a real run of a campaign with a coupon policy: its issued, unexpired coupons missing from
    the shop (a restored backup, deleted rows) are inserted again; how many, also as a warning."""
    if campaign.coupon is None:
        return 0
    settings = get_settings()
    shop = get_engine(settings.shop_url_resolved)
    state = state_db.upgrade(settings.state_url_resolved)
    restored = read_shop(lambda: restore_missing_coupons(shop, state, campaign))
    if restored:
        get_run_logger().warning(
            "%s: %d coupon(s) mailed earlier were missing from the shop's %s table and were inserted again "
            "(a restored backup or deleted rows?)",
            campaign.name,
            len(restored),
            settings.coupon_table,
        )
    return len(restored)
