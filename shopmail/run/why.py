"""Why a customer got (or did not get) a run's mail: the run's segment snapshot, traced on the
customer's values as they were, plus the customer's rows in the send ledger."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select

from segments.rules import parse_segments, trace
from segments.segment_snapshot import read_snapshot_member, read_snapshot_meta, row_features
from shopmail.run.vocabulary import words
from shopmail.state.schema import run_summaries, send_ledger


@dataclass
class Explanation:
    """Why a customer got (or did not get) a run's mail."""

    customer_id: int
    run_id: str
    campaign: str | None = None
    as_of: str | None = None
    segment: str | None = None
    segment_title: str | None = None
    snapshot_found: bool = False
    member: bool = False
    outcome: str | None = None
    rule_trace: list[str] = field(default_factory=list)
    ledger: list[dict[str, Any]] = field(default_factory=list)
    dry_run: bool | None = None
    started_at: datetime | None = None

    def run_label(self) -> str:
        """The run as a person names it (campaign, shop day, mode, start), never its id."""
        if not self.campaign:
            return "a run Shopmail has no record of"
        mode = "" if self.dry_run is None else " (dry run)" if self.dry_run else " (send)"
        started = f", started {self.started_at:%Y-%m-%d %H:%M} UTC" if self.started_at else ""
        return f"the {self.campaign} run for {self.as_of}{mode}{started}"

    def lines(self) -> list[str]:
        out = [f"Customer {self.customer_id}, {self.run_label()}"]
        if self.campaign:
            out.append(f"Campaign: {self.campaign}, as of {self.as_of}")
        if not self.snapshot_found:
            out.append("No snapshot of this run (written by the campaign flow after selection).")
        elif self.segment:
            out.append(f"Segment: {self.segment} ({self.segment_title})")
        else:
            out.append("Segment: none (the campaign's whole audience)")
        if self.snapshot_found and not self.member:
            out.append(
                "Not in the run's audience: the campaign's audience rule"
                + (" or the segment" if self.segment else "")
                + " did not select this customer."
            )
        if self.member:
            out.append(f"In the audience; outcome: {words(self.outcome or 'unknown')}")
        if self.rule_trace:
            out.append("Rule, with this customer's values at run time:")
            out.extend("  " + line for line in self.rule_trace)
        if self.ledger:
            out.append("Ledger:")
            for r in self.ledger:
                here = " (this run)" if r["run_id"] == self.run_id else ""
                status = words(r["status"], "outcome")
                out.append(
                    f"  {status}: {r['occasion_key']} at {r['updated_at']:%Y-%m-%d %H:%M} UTC{here}"
                    + (f", provider id {r['provider_message_id']}" if r.get("provider_message_id") else "")
                )
        elif self.snapshot_found or self.campaign:
            out.append("Ledger: no mail recorded for this customer in this campaign.")
        return out

    def text(self) -> str:
        return "\n".join(self.lines())


def _ledger_rows(state: Engine, customer_id: int, campaign: str | None, run_id: str) -> list[dict[str, Any]]:
    ledger = send_ledger
    where = [ledger.c.customer_id == int(customer_id)]
    where.append(ledger.c.campaign == campaign if campaign else ledger.c.run_id == run_id)
    query = (
        select(
            ledger.c.run_id,
            ledger.c.campaign,
            ledger.c.occasion_key,
            ledger.c.status,
            ledger.c.provider_message_id,
            ledger.c.updated_at,
        )
        .where(*where)
        .order_by(ledger.c.updated_at.desc())
        .limit(10)
    )
    with state.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(query)]


def _run_summary(state: Engine, run_id: str) -> dict[str, Any] | None:
    runs = run_summaries
    with state.connect() as conn:
        row = conn.execute(
            select(runs.c.campaign, runs.c.as_of, runs.c.dry_run, runs.c.started_at).where(
                runs.c.run_id == run_id
            )
        ).first()
    return dict(row._mapping) if row else None


def run_of_day(state: Engine, customer_id: int, campaign: str, day: date) -> str | None:
    """The run of `campaign` for the shop day `day` to explain for `customer_id`: the one that holds
    the customer's mail, else the latest real send of that day, else its latest dry run."""
    for row in _ledger_rows(state, customer_id, campaign, ""):
        summary = _run_summary(state, row["run_id"]) if row["run_id"] else None
        if summary and summary["as_of"] == day:
            return str(row["run_id"])
    runs = run_summaries
    query = (
        select(runs.c.run_id)
        .where(runs.c.campaign == campaign, runs.c.as_of == day)
        .order_by(runs.c.dry_run.asc(), runs.c.started_at.desc())
        .limit(1)
    )
    with state.connect() as conn:
        found = conn.execute(query).scalar()
    return str(found) if found else None


def latest_run_for(state: Engine, customer_id: int, campaign: str) -> str | None:
    """The run id of the customer's most recent ledger row in `campaign`."""
    rows = _ledger_rows(state, customer_id, campaign, "")
    return next((r["run_id"] for r in rows if r["run_id"]), None)


def explain(
    customer_id: int, run_id: str, *, data_dir: Path | str, state: Engine | None = None
) -> Explanation:
    """Why `customer_id` got (or did not get) the mail of run `run_id`: the run's snapshot (segment
    rule traced on the customer's values as they were) and the ledger rows (if `state` is given)."""
    result = Explanation(int(customer_id), str(run_id))
    meta = read_snapshot_meta(data_dir, run_id)
    summary = _run_summary(state, run_id) if state is not None else None
    if summary:
        result.campaign, result.as_of = summary["campaign"], str(summary["as_of"])
        result.dry_run, result.started_at = bool(summary["dry_run"]), summary["started_at"]
    if meta is not None:
        result.snapshot_found = True
        result.campaign, result.as_of, result.segment = meta["campaign"], meta["as_of"], meta["segment"]
        row = read_snapshot_member(data_dir, run_id, customer_id)
        if row is not None:
            result.member = True
            result.outcome = row.get("outcome") or None
        if result.segment:
            result.segment_title = meta["definitions"][result.segment]["title"]
            if row is not None:
                catalogue = parse_segments({"segments": meta["definitions"]}, f"snapshot {run_id}")
                features = row_features(meta, row)
                result.rule_trace = trace({"segment": result.segment}, features, catalogue)
    if state is not None and (result.campaign or meta is None):
        result.ledger = _ledger_rows(state, customer_id, result.campaign, run_id)
        if result.campaign is None and result.ledger:
            result.campaign = result.ledger[0]["campaign"]
    return result
