"""Quiet hours: a daily local-time interval without marketing mail (parsed from settings)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, time, timedelta

_SPEC = re.compile(r"^\s*(\d{1,2})(?::(\d{2}))?\s*-\s*(\d{1,2})(?::(\d{2}))?\s*$")
_OFF = frozenset({"", "off", "none", "no"})


@dataclass(frozen=True, slots=True)
class QuietHours:
    """A daily local-time interval [start, end) without marketing mail; wraps midnight if start > end."""

    start: time
    end: time

    @classmethod
    def parse(cls, spec: str | None) -> QuietHours | None:
        """'21-9', '22:30-08:00' -> QuietHours; '', 'off' or None -> None (no quiet hours)."""
        if spec is None or spec.strip().lower() in _OFF:
            return None
        match = _SPEC.match(spec)
        if not match:
            raise ValueError(f"quiet hours must look like '21-9' or '22:30-8:00', got {spec!r}")
        h1, m1, h2, m2 = (int(g) if g else 0 for g in match.groups())
        if h1 > 23 or h2 > 23 or m1 > 59 or m2 > 59:
            raise ValueError(f"quiet hours out of range: {spec!r}")
        start, end = time(h1, m1), time(h2, m2)
        if start == end:
            raise ValueError(f"quiet hours start and end must differ: {spec!r}")
        return cls(start, end)

    def contains(self, local: time) -> bool:
        """Is this local wall-clock time inside the quiet hours?"""
        local = local.replace(tzinfo=None)
        if self.start < self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end

    def next_allowed(self, local: datetime) -> datetime | None:
        """The end of the quiet hours `local` (an aware datetime) is in, or None if it is not in them."""
        if not self.contains(local.timetz()):
            return None
        candidate = datetime.combine(local.date(), self.end, tzinfo=local.tzinfo)
        if candidate <= local:
            candidate = datetime.combine(local.date() + timedelta(days=1), self.end, tzinfo=local.tzinfo)
        return candidate
