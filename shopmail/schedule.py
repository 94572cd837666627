"""Campaign schedules: cron expressions in the shop time zone."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from cronsim import CronSim

from shopmail.campaigns import Campaign


def fire_times(expr: str, day: date, tz: ZoneInfo) -> list[datetime]:
    """The local times on `day` at which `expr` fires."""
    start = datetime.combine(day, time.min, tzinfo=tz) - timedelta(seconds=1)
    times = []
    for moment in CronSim(expr, start):
        if moment.date() != day:
            break
        times.append(moment)
    return times


def due_on(campaign: Campaign, day: date, tz: ZoneInfo) -> bool:
    """Does the campaign's schedule fire on `day`? Polled service mails run every day."""
    if campaign.polled:
        return True
    return bool(campaign.schedule) and bool(fire_times(campaign.schedule, day, tz))
