"""A/B test groups: who is in the test group and which variant each customer gets, stable per
customer (the same draw on every run and machine: a crashed run that resumes splits alike).

- `in_test_group(campaign, test_key, ids, share)`: the test group of one test (`test_key`, e.g. the
  occasion `sale:black_friday_2026`): a fresh random group per test, independent of the holdout;
- `variant_index(seed_text, ids, shares)`: each customer's variant by its share (the test group
  splits evenly; a continuous split by the campaign file's shares, seeded by the campaign only, so a
  customer always gets the same variant of a trigger).

Hash: `segments.holdout.unit_bucket` (SHA-256-seeded splitmix64) with the seed texts
`shopmail-ab:<campaign>:<test key>:test`, `...:variant` and `shopmail-ab:<campaign>:split`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from segments.holdout import unit_bucket


def group_seed(campaign: str, test_key: str) -> str:
    return f"shopmail-ab:{campaign}:{test_key}"


def split_seed(campaign: str) -> str:
    return f"shopmail-ab:{campaign}:split"


def in_test_group(
    campaign: str, test_key: str, customer_ids: pd.Series | np.ndarray, share: float
) -> np.ndarray:
    """Boolean mask: the customers in the test group of `share` (0 < share < 1)."""
    return unit_bucket(f"{group_seed(campaign, test_key)}:test", np.asarray(customer_ids)) < share


def variant_index(seed_text: str, customer_ids: pd.Series | np.ndarray, shares: list[float]) -> np.ndarray:
    """Each customer's variant (0-based) by the cumulative `shares` (they add up to 1)."""
    position = unit_bucket(f"{seed_text}:variant", np.asarray(customer_ids))
    edges = np.cumsum(np.asarray(shares, dtype=float))
    edges[-1] = 1.0  # rounding never leaves anyone out
    return np.searchsorted(edges, position, side="right")
