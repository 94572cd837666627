"""Who and what of the mails a run is about to send, for the results (`mail_results`).

`record_send_facts` is called by the send step just before the batches go out (after the holdout
is recorded): one row per mail with its campaign, customer, content variant (the audience's
`variant` column), A/B test variant and phase (`test_variant`, `test_phase`, set by flows/ab_test.py),
language, the run's segment and the run. The webhook then fills in what became of each mail, and
`settle_sent` the time the ledger says it was sent.
"""

from __future__ import annotations

import pandas as pd
from sqlalchemy import Engine

from shopmail.state.engagement import record_mails

_COLUMNS = ("variant", "test_variant", "test_phase", "language")


def _texts(frame: pd.DataFrame, column: str, size: int) -> list[str | None]:
    if column not in frame.columns:
        return [None] * len(frame)
    return [None if v is None or v != v else str(v)[:size] for v in frame[column].tolist()]  # NaN != NaN


def send_facts(
    campaign: str, eligible: pd.DataFrame, segment: str | None, run_id: str | None = None
) -> list[dict[str, object]]:
    """The `mail_results` facts of the eligible rows (`message_key`, `customer_id`, optional columns)."""
    sizes = {"variant": 64, "test_variant": 32, "test_phase": 8, "language": 8}
    columns = {name: _texts(eligible, name, sizes[name]) for name in _COLUMNS}
    keys, customers = eligible["message_key"].tolist(), eligible["customer_id"].tolist()
    label = (segment or None) if segment != "all" else None
    return [
        {
            "message_key": str(key),
            "campaign": campaign,
            "customer_id": int(customer),
            "segment": label,
            "run_id": run_id,
            **{name: columns[name][i] for name in _COLUMNS},
        }
        for i, (key, customer) in enumerate(zip(keys, customers, strict=True))
    ]


def record_send_facts(
    state: Engine,
    campaign: str,
    eligible: pd.DataFrame,
    segment: str | None,
    limit: int | None = None,
    run_id: str | None = None,
) -> int:
    """Record the facts of the mails about to be sent (the first `limit` eligible rows) by `run_id`."""
    rows = eligible.head(limit) if limit else eligible
    return record_mails(state, send_facts(campaign, rows, segment, run_id)) if len(rows) else 0
