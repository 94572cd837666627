"""Preview of a segment on the shop's data: definition, size, share of the base, a PII-light sample."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from segments.customer_features import customer_features
from segments.rules import SegmentCatalogue, describe, load_segments

SAMPLE_COLUMNS = ["customer_id", "first_name", "city", "total_spend", "rfm_label"]


@dataclass
class SegmentPreview:
    name: str
    title: str
    description: str
    definition: list[str]  # the rule as indented lines
    size: int
    base: int  # customers in the shop
    subscribed: int  # members with marketing consent
    sample: pd.DataFrame  # SAMPLE_COLUMNS (no e-mail addresses)

    @property
    def share(self) -> float:
        return self.size / self.base if self.base else 0.0


def preview_segment(
    name: str,
    frames: dict[str, pd.DataFrame],
    as_of: date,
    tz: ZoneInfo,
    sample: int = 10,
    catalogue: SegmentCatalogue | None = None,
    seed: int = 0,
) -> SegmentPreview:
    """Evaluate segment `name` over `frames` (customers, and the orders, items and products its rule
    needs) as of `as_of`; `sample` random members (reproducible with `seed`), by customer id."""
    catalogue = catalogue or load_segments(strict=False)
    segment = catalogue.get(name)
    features = customer_features(frames, as_of, tz)
    mask = catalogue.mask(name, features)
    table = features.table
    members = np.flatnonzero(mask)
    picked = np.sort(np.random.default_rng(seed).choice(members, min(sample, members.size), replace=False))
    shown = pd.DataFrame({"customer_id": table["customer_id"].to_numpy()[picked]})
    customers = frames["customers"].set_index("id")
    shown["first_name"] = customers["first_name"].reindex(shown["customer_id"]).fillna("").to_numpy()
    shown["city"] = table["city"].to_numpy()[picked]
    for column in ("total_spend", "rfm_label"):
        shown[column] = table[column].to_numpy()[picked] if column in table else None
    return SegmentPreview(
        name=name,
        title=segment.title,
        description=segment.description,
        definition=describe(segment.rule),
        size=int(members.size),
        base=len(table),
        subscribed=int((mask & table["marketing_consent"].to_numpy(dtype=bool)).sum()),
        sample=shown,
    )
