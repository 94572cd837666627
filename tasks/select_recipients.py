"""Segment + arbitrate task: who gets the mail, who is skipped and why."""

from __future__ import annotations

from datetime import date, datetime

import pandas as pd
from prefect import task
from prefect.cache_policies import NONE

from config.settings import get_settings
from shopmail.campaigns import Campaign
from shopmail.run.pipeline import Selection, select_recipients
from shopmail.state import state_db


@task(name="select-recipients", retries=2, retry_delay_seconds=5, cache_policy=NONE)
def select_recipients_task(
    campaign: Campaign,
    frames: dict[str, pd.DataFrame],
    as_of: date,
    quarantined_ids: set[int],
    segment: str | None = None,
    window: tuple[datetime, datetime] | None = None,
) -> Selection:
    """Audience rule (within `segment`; polled mails within `window`), consent, quarantine,
    suppressions and the already-sent ledger."""
    settings = get_settings()
    state = state_db.upgrade(settings.state_url_resolved)
    return select_recipients(
        campaign, frames, as_of, settings, state, quarantined_ids, window, segment=segment
    )
