"""Restrict a campaign's audience to a segment, and keep a per-run snapshot that explains it.

`restrict_to_segment` computes the features the segment needs, keeps the audience rows of its members
and returns a `SegmentSnapshot`: the segment's definition (with the segments it refers to, as they
were at run time) and, for every audience customer, the feature values the rule read (for `brands` /
`categories` conditions: one yes/no column per value tested, e.g. `categories[Косметика]`) and the
run's outcome (`eligible` or the skip reason). `write_segment_snapshot` stores it under
`<data_dir>/snapshots/<run_id>.json` (definition, metadata) + `<run_id>.csv.gz` (members; pyarrow is
not a dependency, so no parquet). `explain` answers "why did customer X get this mail": the ledger rows
of the run, the customer's outcome and the rule traced on their stored values.

Runs without a segment are snapshotted too (customer ids and outcomes only), so `explain` can answer
for every run whose snapshot was written. No Prefect here: the flow calls these functions.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from segments.customer_features import FIELDS, CustomerFeatures, customer_features
from segments.rules import (
    ALL,
    SegmentCatalogue,
    SegmentError,
    load_segments,
    set_members,
)

SNAPSHOT_DIR = "snapshots"
RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
ANY_VALUE = "(other values)"  # shown when the customer bought only values the rule did not test


def segment_choice(segment: str | None) -> str | None:
    """The segment to apply: None for no segment ('' and 'all' mean the whole audience)."""
    if segment is None:
        return None
    name = str(getattr(segment, "value", segment)).strip()
    return None if name in ("", ALL) else name


@dataclass
class SegmentSnapshot:
    """Who a run's audience was and what the segment rule saw (see the module docstring)."""

    campaign: str
    as_of: date
    timezone: str
    segment: str | None
    definitions: dict[str, dict[str, Any]]
    columns: dict[str, str]  # member column -> kind (number, text, bool, datetime, set_value, set_any)
    members: pd.DataFrame  # customer_id + `columns`, one row per audience customer
    outcomes: np.ndarray | None = field(default=None, repr=False)  # aligned with `members`

    def with_outcomes(self, eligible_ids: pd.Series, skipped: pd.DataFrame) -> SegmentSnapshot:
        """Record each member's outcome: `eligible` if any of their audience rows is, else the first
        skip reason (`no_customer_row`: the audience named a customer the extract does not have)."""
        ids = self.members["customer_id"].to_numpy()
        outcome = np.full(len(ids), "no_customer_row", dtype=object)
        if not skipped.empty:
            first = skipped.drop_duplicates("customer_id")
            pos = pd.Index(ids).get_indexer(first["customer_id"].to_numpy())
            found = pos >= 0
            outcome[pos[found]] = first["reason"].astype(str).to_numpy()[found]
        outcome[np.isin(ids, np.asarray(eligible_ids))] = "eligible"
        self.outcomes = outcome
        return self

    def frame(self) -> pd.DataFrame:
        """The members with their outcome (the snapshot's CSV)."""
        members = self.members.reset_index(drop=True)
        if self.outcomes is not None:
            members.insert(1, "outcome", self.outcomes)
        return members

    def metadata(self, run_id: str) -> dict[str, Any]:
        return {
            "run_id": run_id,
            "campaign": self.campaign,
            "as_of": self.as_of.isoformat(),
            "timezone": self.timezone,
            "segment": self.segment,
            "definitions": self.definitions,
            "columns": self.columns,
            "members": len(self.members),
            "written_at": datetime.now().astimezone().isoformat(timespec="seconds"),
        }


def _member_columns(
    catalogue: SegmentCatalogue, name: str, features: CustomerFeatures, rows: np.ndarray
) -> tuple[dict[str, Any], dict[str, str]]:
    """The values the segment's rule reads, for the customers at `rows` of `features.table`."""
    values: dict[str, Any] = {}
    kinds: dict[str, str] = {}
    for feature in catalogue.fields(name):
        spec = FIELDS[feature]
        if spec.kind != "set":
            values[feature] = features.table[feature].to_numpy()[rows]
            kinds[feature] = spec.kind
            continue
        tested = [
            v
            for node in catalogue.conditions(name)
            if node["field"] == feature
            for op, vs in node.items()
            if op in ("contains_any", "contains_all")
            for v in vs
        ]
        long = features.sets[feature]
        bought = np.zeros(len(features), dtype=bool)
        bought[long["pos"].to_numpy()] = True
        values[f"{feature}[]"] = bought[rows]
        kinds[f"{feature}[]"] = "set_any"
        for value in dict.fromkeys(tested):
            values[f"{feature}[{value}]"] = set_members(features, feature, [value])[rows]
            kinds[f"{feature}[{value}]"] = "set_value"
    return values, kinds


def restrict_to_segment(
    campaign: str,
    campaign_datasets: tuple[str, ...] | list[str],
    segment: str | None,
    frames: dict[str, pd.DataFrame],
    audience: pd.DataFrame,
    as_of: date,
    tz: ZoneInfo,
    catalogue: SegmentCatalogue | None = None,
) -> tuple[pd.DataFrame, SegmentSnapshot]:
    """The audience rows of the segment's members (all rows when `segment` is None / '' / 'all'),
    and the run's snapshot (outcomes are added after eligibility with `with_outcomes`).

    Raises `SegmentError` for an unknown segment, or when the campaign does not declare the datasets the
    segment's features need (e.g. a spend rule needs `orders`)."""
    name = segment_choice(segment)
    ids = pd.unique(audience["customer_id"].to_numpy()) if len(audience) else np.array([], dtype=np.int64)
    if name is None:
        snapshot = SegmentSnapshot(
            campaign, as_of, str(tz), None, {}, {}, pd.DataFrame({"customer_id": ids.astype(np.int64)})
        )
        return audience, snapshot
    catalogue = catalogue or load_segments(strict=False)  # a bad segment disables only itself
    catalogue.get(name)
    needed = catalogue.datasets(name)
    missing = [d for d in needed if d not in campaign_datasets]
    if missing:
        raise SegmentError(
            f"campaign '{campaign}' cannot use segment '{name}': its rule reads {catalogue.fields(name)}, "
            f"computed from datasets {needed}; add {missing} to `datasets` in "
            f"config/campaigns/{campaign}.toml"
        )
    absent = [d for d in needed if d not in frames]
    if absent:
        raise SegmentError(f"segment '{name}' needs datasets {absent}, which were not extracted")
    features = customer_features({d: frames[d] for d in needed}, as_of, tz)
    inside = catalogue.mask(name, features)
    member_ids = features.table["customer_id"].to_numpy()[inside]
    restricted = audience[audience["customer_id"].isin(member_ids)].reset_index(drop=True)
    kept = pd.unique(restricted["customer_id"].to_numpy()) if len(restricted) else ids[:0]
    rows = pd.Index(features.table["customer_id"]).get_indexer(kept)
    values, kinds = _member_columns(catalogue, name, features, rows)
    members = pd.DataFrame({"customer_id": np.asarray(kept, dtype=np.int64), **values})
    snapshot = SegmentSnapshot(campaign, as_of, str(tz), name, catalogue.definitions(name), kinds, members)
    return restricted, snapshot


# --- files ----------------------------------------------------------------------------------------


def _paths(data_dir: Path | str, run_id: str) -> tuple[Path, Path]:
    if not RUN_ID.match(str(run_id)):
        raise ValueError(f"not a run id: {run_id!r}")
    folder = Path(data_dir) / SNAPSHOT_DIR
    return folder / f"{run_id}.json", folder / f"{run_id}.csv.gz"


def write_segment_snapshot(
    data_dir: Path | str, run_id: str, snapshot: SegmentSnapshot | None
) -> Path | None:
    """Write the run's snapshot (`<data_dir>/snapshots/<run_id>.json` + `.csv.gz`); returns the
    members file, or None when there is no snapshot. Rewriting the same run replaces it."""
    if snapshot is None:
        return None
    meta_path, members_path = _paths(data_dir, run_id)
    meta_path.parent.mkdir(parents=True, exist_ok=True)
    partial = members_path.with_name(members_path.name + ".partial")
    snapshot.frame().to_csv(
        partial, index=False, compression={"method": "gzip", "compresslevel": 1, "mtime": 0}
    )
    os.replace(partial, members_path)
    meta_path.write_text(
        json.dumps(snapshot.metadata(run_id), ensure_ascii=False, indent=1), encoding="utf-8"
    )
    return members_path


def read_snapshot_meta(data_dir: Path | str, run_id: str) -> dict[str, Any] | None:
    meta_path, _ = _paths(data_dir, run_id)
    if not meta_path.is_file():
        return None
    return json.loads(meta_path.read_text(encoding="utf-8"))


def read_snapshot_member(data_dir: Path | str, run_id: str, customer_id: int) -> dict[str, Any] | None:
    """One customer's row of a run's snapshot (values as text; None if not a member)."""
    _, members_path = _paths(data_dir, run_id)
    if not members_path.is_file():
        return None
    wanted = str(int(customer_id))
    for chunk in pd.read_csv(members_path, dtype=str, chunksize=250_000, keep_default_na=False):
        hit = chunk[chunk["customer_id"] == wanted]
        if not hit.empty:
            return hit.iloc[0].to_dict()
    return None


def prune_snapshots(data_dir: Path | str, keep_days: int) -> int:
    """Delete snapshots written more than `keep_days` days ago; returns how many files went."""
    folder = Path(data_dir) / SNAPSHOT_DIR
    if not folder.is_dir():
        return 0
    cutoff = time.time() - keep_days * 86_400
    gone = 0
    for path in folder.iterdir():
        if path.is_file() and path.stat().st_mtime < cutoff:
            path.unlink()
            gone += 1
    return gone


def row_features(meta: dict[str, Any], row: dict[str, str]) -> CustomerFeatures:
    """A one-customer `CustomerFeatures` rebuilt from a snapshot row (only the stored fields)."""
    table: dict[str, Any] = {"customer_id": [int(row["customer_id"])]}
    sets: dict[str, list[str]] = {}
    for column, kind in meta["columns"].items():
        text = row.get(column, "")
        if kind in ("set_value", "set_any"):
            feature, value = column.split("[", 1)
            sets.setdefault(feature, [])
            if text == "True" and kind == "set_value":
                sets[feature].append(value[:-1])
            elif text == "True" and not sets[feature]:
                sets[feature].append(ANY_VALUE)
        elif kind == "number":
            table[column] = [float(text) if text else np.nan]
        elif kind == "bool":
            table[column] = [text == "True" if text else None]
        elif kind == "datetime":
            table[column] = [pd.Timestamp(text) if text else pd.NaT]
        else:
            table[column] = pd.Categorical([text or None])
    for feature in sets:  # "(other)" only when none of the tested values was bought
        if len(sets[feature]) > 1 and ANY_VALUE in sets[feature]:
            sets[feature].remove(ANY_VALUE)
    long = {
        f: pd.DataFrame({"pos": np.zeros(len(v), dtype=np.int32), "value": pd.Categorical(v)})
        for f, v in sets.items()
    }
    frame = pd.DataFrame(table)
    as_of = date.fromisoformat(meta["as_of"])
    return CustomerFeatures(
        frame, long, as_of, ZoneInfo(meta["timezone"]), frozenset(frame.columns) | set(long)
    )


__all__ = [
    "SegmentError",
    "SegmentSnapshot",
    "prune_snapshots",
    "restrict_to_segment",
    "segment_choice",
    "write_segment_snapshot",
]
