"""The run forms a marketer fills in the Prefect UI: choices shown by their titles, plain fields.

Prefect's UI (3.9, both UIs) shows an enum's values as they are and renders `anyOf`/`oneOf` as a
type switch, so a dropdown that reads well must carry the titles themselves: the form offers the
titles of campaigns and segments, and the flows map a title (or the id, as the CLI and API callers
pass it) back to the id with `campaign_id` / `segment_id`. Optional fields are plain (`string` with
`format: date`, `integer` with bounds): empty means "the default", never a "None" type to pick.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from pydantic import WithJsonSchema

from segments.rules import SegmentError, load_segments
from shopmail.campaigns import CampaignError, campaigns_folder, registry

ALL_SEGMENTS = "all"
ALL_SEGMENTS_TITLE = "Все, кого выбирает кампания (без сегмента)"

FIELD_TITLES = {
    "campaign": "Campaign",
    "as_of": "Shop day",
    "dry_run": "Dry run: send nothing",
    "limit": "At most this many mails",
    "segment": "Segment",
    "preapproved": "Approved in advance (no pause)",
    "customer_id": "Customer id",
    "sample": "Sample size",
    "runs": "Runs to compare",
    "since": "From shop day",
    "until": "Until shop day",
    "window_days": "Orders within days after the mail",
    "include_service": "Also service mails",
    "watch_minutes": "Keep watching (minutes)",
    "every_seconds": "Look every (seconds)",
    "group_by": "One row per",
    "with_machine_opens": "Count machine opens (Apple Mail) as opens",
}


@cache
def segment_titles() -> dict[str, str]:
    """Segment id -> title, `all` (no segment) first; a broken segment is left out (it disables only
    itself: the other segments, and campaigns without a segment, still run)."""
    catalogue = load_segments(strict=False)
    return {ALL_SEGMENTS: ALL_SEGMENTS_TITLE} | {n: catalogue.get(n).title for n in catalogue.names()}


def campaign_titles(*, marketing_only: bool = False) -> dict[str, str]:
    """Campaign id -> title of the campaigns folder the settings name now (marketing campaigns only
    when asked)."""
    return _campaign_titles(campaigns_folder(), marketing_only)


@cache
def _campaign_titles(folder: Path, marketing_only: bool) -> dict[str, str]:
    return {n: c.title for n, c in registry(folder).items() if c.marketing or not marketing_only}


campaign_titles.cache_clear = _campaign_titles.cache_clear  # type: ignore[attr-defined]


def _to_id(value: Any, titles: dict[str, str]) -> str | None:
    """The id of `value` (an id or a title), or None when it is neither."""
    value = str(getattr(value, "value", value)).strip()
    if value in titles:
        return value
    return {title: name for name, title in titles.items()}.get(value)


def campaign_id(value: Any) -> str:
    """A campaign as its id, from its id or its title (the form shows titles); `CampaignError` (a
    `ValueError`) names the known ones otherwise."""
    titles = campaign_titles()
    found = _to_id(value, titles)
    if found is None:
        raise CampaignError(f"unknown campaign '{_plain(value)}': choose one of {', '.join(titles)}")
    return found


def campaign_name_for_run(params: dict[str, Any]) -> str:
    """The run's campaign id for a run name (the raw value if it is not a known campaign)."""
    try:
        return campaign_id(params.get("campaign"))
    except ValueError:
        return str(params.get("campaign"))


def segment_id(value: Any) -> str | None:
    """A segment as its id (`all`: no segment), from its id or title; None or '' -> None (the
    campaign's default). `SegmentError` (a `ValueError`) for an unknown segment, and for a broken one
    with what is wrong with it."""
    if value is None or _plain(value) == "":
        return None
    titles = segment_titles()
    found = _to_id(value, titles)
    if found is not None:
        return found
    broken = load_segments(strict=False).broken
    if _plain(value) in broken:
        raise SegmentError(f"segment '{_plain(value)}' is disabled: {broken[_plain(value)]}")
    raise SegmentError(f"unknown segment '{_plain(value)}': choose one of {', '.join(titles)}")


def _plain(value: Any) -> str:
    return str(getattr(value, "value", value)).strip()


def campaign_dropdown(*, marketing_only: bool = False) -> WithJsonSchema:
    return WithJsonSchema(
        {"type": "string", "enum": list(campaign_titles(marketing_only=marketing_only).values())}
    )


def series_dropdown() -> WithJsonSchema:
    """The campaigns that are series (files with `[[steps]]`), by title."""
    series = {n for n, c in registry(campaigns_folder()).items() if c.is_series}
    return WithJsonSchema(
        {"type": "string", "enum": [t for n, t in campaign_titles().items() if n in series]}
    )


def segment_dropdown(*, include_all: bool = True) -> WithJsonSchema:
    titles = [t for n, t in segment_titles().items() if include_all or n != ALL_SEGMENTS]
    return WithJsonSchema({"type": "string", "enum": titles})


DATE_FIELD = WithJsonSchema({"type": "string", "format": "date"})
# set by the recovery step only: not in a marketer's form (see INTERNAL_FIELDS)
RESUME_FIELD = WithJsonSchema({"type": "string", "title": "Resume a stopped run"})
INTERNAL_FIELDS = frozenset({"resume_of"})


def bounded_int(low: int, high: int) -> WithJsonSchema:
    return WithJsonSchema({"type": "integer", "minimum": low, "maximum": high})


def shape_form(
    schema: dict[str, Any], *, fixed: dict[str, Any] | None = None, notes: dict[str, str] | None = None
) -> dict[str, Any]:
    """A flow's parameter schema made into a marketer's form: human field titles, no `null`
    defaults (an empty field means the default), the parameters in `fixed` (set by the deployment,
    e.g. its campaign) left out of the form, and `notes` appended to field descriptions."""
    fixed, notes = fixed or {}, notes or {}
    shaped = dict(schema)
    properties = {}
    for name, prop in schema.get("properties", {}).items():
        if name in fixed or name in INTERNAL_FIELDS:
            continue
        prop = {k: v for k, v in prop.items() if not (k == "default" and v is None)}
        prop["title"] = FIELD_TITLES.get(name, prop.get("title", name))
        if name in notes:
            prop["description"] = f"{prop.get('description', '').rstrip()} {notes[name]}".strip()
        properties[name] = prop
    shaped["properties"] = properties
    shaped["required"] = [r for r in schema.get("required", []) if r not in fixed]
    return shaped
