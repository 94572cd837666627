"""One row of features per customer, as of the run day: what segment rules and RFM look at.

Pure pandas / numpy over the extracted frames (no Prefect, no DB). Built for a full base: 1M customers,
2.5M orders and 5M order items take a few seconds (vectorised: positional joins with
`Index.get_indexer`, `np.bincount`, hashing `pd.unique` for the bought brand / category pairs).

What is counted
- Orders created before the end of `as_of` (shop-local day) and not cancelled (`status` is
  "cancelled" or the order has a `cancelled_at` time). Only the orders the extract holds count: the
  campaign's `history_days` is the window of spend, order count, recency and RFM (a customer whose
  last order is older than that is a customer without orders here).
- `age` in whole years on `as_of`; people born on 29 February turn a year older on 28 February in
  other years (as the birthday mail congratulates them). Missing or future birth dates give no age.
- Day counts (`recency_days`, `first_order_days`, `registered_days`) are differences of shop-local
  calendar dates: an order placed any time on `as_of` has recency 0.

RFM: among customers with at least one counted order, each of R (recency, more recent is better),
F (order count) and M (total spend) scores 1-5 by quintile: score = 1 + floor(5 x share of buyers with
a strictly worse value). Ties always share a score, so 1 is the worst group and heavily tied values
can leave a score unused (when 40 % of buyers have one order, two orders already score F = 3).
Customers without counted orders score 0 on all three. The label (`rfm_label`) maps (R, F, M):

| label | rule (first match) |
|---|---|
| champions | R >= 4, F >= 4, M >= 4 |
| loyal | R >= 3, F >= 3 |
| new | R >= 4, F = 1 (bought recently, once) |
| promising | R >= 4, F = 2 |
| need_attention | R = 3, F <= 2 |
| at_risk | R <= 2, F >= 3 (used to buy often, not lately) |
| hibernating | R <= 2, F <= 2 |
| no_orders | no counted order |
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from segments.local_time import local_to_utc

Kind = Literal["number", "text", "bool", "datetime", "set"]

RFM_LABELS = (
    "champions",
    "loyal",
    "new",
    "promising",
    "need_attention",
    "at_risk",
    "hibernating",
    "no_orders",
)
GENDERS = ("f", "m")

CUSTOMERS = ("customers",)
ORDERS = ("customers", "orders")
ITEMS = ("customers", "orders", "order_items", "products")
FEATURE_DATASETS = ITEMS  # every feature


@dataclass(frozen=True)
class FeatureField:
    """A field rules may use: its kind (which operators apply), the datasets it needs, its meaning."""

    kind: Kind
    datasets: tuple[str, ...]
    description: str
    values: tuple[str, ...] = ()  # the only values a text field takes (checked in rules)


FIELDS: dict[str, FeatureField] = {
    "customer_id": FeatureField("number", CUSTOMERS, "Customer id."),
    "gender": FeatureField("text", CUSTOMERS, "'f', 'm' or empty (unknown).", GENDERS),
    "age": FeatureField("number", CUSTOMERS, "Whole years on the run day; empty without a birth date."),
    "city": FeatureField("text", CUSTOMERS, "City as the shop stores it (e.g. 'Москва')."),
    "language": FeatureField("text", CUSTOMERS, "'ru', 'en', ... or empty."),
    "has_card": FeatureField("bool", CUSTOMERS, "Has a discount card."),
    "marketing_consent": FeatureField("bool", CUSTOMERS, "Agreed to marketing mail."),
    "registered_days": FeatureField("number", CUSTOMERS, "Days since registration (0 = on the run day)."),
    "order_count": FeatureField("number", ORDERS, "Orders in the history window, cancelled excluded."),
    "total_spend": FeatureField("number", ORDERS, "Sum of those orders' totals (RUB)."),
    "avg_order_value": FeatureField("number", ORDERS, "total_spend / order_count; empty without orders."),
    "cancelled_orders": FeatureField("number", ORDERS, "Cancelled orders in the history window."),
    "first_order_at": FeatureField("datetime", ORDERS, "First counted order (compare with a date)."),
    "last_order_at": FeatureField("datetime", ORDERS, "Last counted order (compare with a date)."),
    "first_order_days": FeatureField("number", ORDERS, "Days since the first counted order; empty if none."),
    "recency_days": FeatureField("number", ORDERS, "Days since the last counted order; empty if none."),
    "r_score": FeatureField("number", ORDERS, "RFM recency score 1-5 (0 = no orders)."),
    "f_score": FeatureField("number", ORDERS, "RFM frequency score 1-5 (0 = no orders)."),
    "m_score": FeatureField("number", ORDERS, "RFM monetary score 1-5 (0 = no orders)."),
    "rfm": FeatureField("text", ORDERS, "The three scores as text, e.g. '545' ('000' = no orders)."),
    "rfm_label": FeatureField(
        "text", ORDERS, "RFM segment name (see segments/customer_features.py).", RFM_LABELS
    ),
    "brands": FeatureField("set", ITEMS, "Brands of the products bought (counted orders)."),
    "categories": FeatureField("set", ITEMS, "Categories of the products bought (counted orders)."),
}
_RFM_TEXT = [f"{i:03d}" for i in range(556)]  # "000" .. "555" by their number
SET_FIELDS = tuple(name for name, f in FIELDS.items() if f.kind == "set")


@dataclass
class CustomerFeatures:
    """Features of every customer.

    `table`: one row per customer (column `customer_id`, RangeIndex, shop order); text columns are
    categoricals. `sets`: for each set field, a long table of distinct (pos, value) pairs, `pos` being
    the customer's row in `table` and `value` a categorical; memory stays linear in what was bought.
    `fields`: the fields computed (order fields need the orders, set fields the items and products).
    """

    table: pd.DataFrame
    sets: dict[str, pd.DataFrame]
    as_of: date
    tz: ZoneInfo
    fields: frozenset[str] = field(default_factory=frozenset)

    def __len__(self) -> int:
        return len(self.table)

    def set_values(self, name: str, positions: np.ndarray | None = None) -> pd.Series:
        """pos -> sorted list of values of set field `name` (for display; only `positions` if given)."""
        long = self.sets[name]
        if positions is not None:
            long = long[np.isin(long["pos"].to_numpy(), positions)]
        return long.groupby("pos")["value"].agg(lambda v: sorted(map(str, v)))


def _normalised(values: np.ndarray, lower: bool) -> np.ndarray:
    """Object array of text -> numpy StringDType array, stripped (and lower-cased), vectorised."""
    text = np.strings.strip(values.astype(np.dtypes.StringDType()))
    return np.strings.lower(text) if lower else text


def _categorical(values: pd.Series, lower: bool = False) -> pd.Series:
    """Text -> categorical without surrounding spaces, blank values missing (optionally lower-cased).

    Normalises the distinct values only (a city column of 1M rows has a few hundred)."""
    codes, uniques = pd.factorize(values.to_numpy(dtype=object), use_na_sentinel=True)
    names = _normalised(np.asarray(uniques, dtype=object), lower).tolist()
    categories = list(dict.fromkeys(n for n in names if n))
    where = {name: i for i, name in enumerate(categories)}
    remap = np.array([where.get(n, -1) for n in names] + [-1], dtype=np.int32)  # [-1]: NA sentinel
    return pd.Series(pd.Categorical.from_codes(remap[codes], categories), index=values.index)


def _present(values: pd.Series) -> np.ndarray:
    """Mask of non-missing, non-blank text values."""
    raw = values.to_numpy(dtype=object)
    present = pd.notna(raw)
    present[present] = np.strings.str_len(_normalised(raw[present], False)) > 0
    return present


def _positions(ids: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Row of each key in `ids` (unique integers), -1 where absent. A lookup table when the ids are
    dense enough (shop ids usually are), a hash index otherwise."""
    ids = np.asarray(ids, dtype=np.int64)
    keys = np.asarray(keys, dtype=np.int64)
    if ids.size and ids.min() >= 0 and ids.max() < 4 * ids.size + 1_000_000:
        table = np.full(int(ids.max()) + 1, -1, dtype=np.int64)
        table[ids] = np.arange(ids.size)
        inside = (keys >= 0) & (keys < table.size)
        return np.where(inside, table[np.where(inside, keys, 0)], -1)
    return pd.Index(ids).get_indexer(keys)


def _local_days_ago(stamps: pd.Series, as_of: date, tz: ZoneInfo) -> pd.Series:
    """Naive-UTC timestamps -> whole shop-local calendar days before `as_of` (nullable Int32)."""
    local = stamps.dt.tz_localize("UTC").dt.tz_convert(tz).dt.tz_localize(None).dt.normalize()
    days = (pd.Timestamp(as_of) - local).dt.days
    return days.astype("Int32")


def ages(birth_dates: pd.Series, as_of: date) -> pd.Series:
    """Whole years on `as_of` (nullable Int16); 29 February birthdays count on 28 February in other
    years; missing or future birth dates give NA."""
    born = pd.to_datetime(birth_dates, errors="coerce")
    leap = as_of.year % 4 == 0 and (as_of.year % 100 != 0 or as_of.year % 400 == 0)
    month_day = born.dt.month * 100 + born.dt.day
    if not leap:
        month_day = month_day.mask(month_day == 229, 228)
    had_birthday = month_day <= as_of.month * 100 + as_of.day
    years = as_of.year - born.dt.year - (~had_birthday).astype("float64")
    years = years.where(born.notna() & (years >= 0))
    return years.astype("Int16")


def quintile_scores(values: np.ndarray) -> np.ndarray:
    """Score 1-5 per value: 1 + floor(5 x share of values strictly lower); ties share a score."""
    values = np.asarray(values)
    if values.size == 0:
        return np.zeros(0, dtype=np.int8)
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    starts = np.ones(values.size, dtype=bool)
    starts[1:] = ordered[1:] != ordered[:-1]
    first_of_run = np.maximum.accumulate(np.where(starts, np.arange(values.size), 0))
    below = np.empty(values.size, dtype=np.int64)
    below[order] = first_of_run  # how many values are strictly lower
    return (1 + (5 * below) // values.size).astype(np.int8)


def rfm_codes(r: np.ndarray, f: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Index into RFM_LABELS per customer (see the module docstring); score 0 = no orders."""
    conditions = [
        r == 0,
        (r >= 4) & (f >= 4) & (m >= 4),
        (r >= 3) & (f >= 3),
        (r >= 4) & (f == 1),
        r >= 4,
        r == 3,
        f >= 3,
    ]
    labels = ["no_orders", "champions", "loyal", "new", "promising", "need_attention", "at_risk"]
    choices = [RFM_LABELS.index(label) for label in labels]
    return np.select(conditions, choices, default=RFM_LABELS.index("hibernating")).astype(np.int8)


def rfm_labels(r: np.ndarray, f: np.ndarray, m: np.ndarray) -> np.ndarray:
    """RFM label per customer, as strings."""
    return np.array(RFM_LABELS, dtype=object)[rfm_codes(r, f, m)]


def _customer_table(customers: pd.DataFrame, as_of: date, tz: ZoneInfo) -> pd.DataFrame:
    customers = customers.reset_index(drop=True)
    gender = _categorical(customers["gender"], lower=True)
    return pd.DataFrame(
        {
            "customer_id": customers["id"].astype("int64"),
            "gender": gender.where(gender.isin(GENDERS)).astype(pd.CategoricalDtype(list(GENDERS))),
            "age": ages(customers["birth_date"], as_of),
            "city": _categorical(customers["city"]),
            "language": _categorical(customers["language"], lower=True),
            "has_card": _present(customers["discount_card"]),
            "marketing_consent": customers["marketing_consent"].fillna(False).astype(bool),
            "registered_days": _local_days_ago(pd.to_datetime(customers["registered_at"]), as_of, tz),
        }
    )


def _counted_orders(orders: pd.DataFrame, as_of: date, tz: ZoneInfo) -> tuple[pd.DataFrame, np.ndarray]:
    """Orders created before the end of `as_of`, and a mask of the cancelled ones."""
    until = local_to_utc(as_of + timedelta(days=1), tz)
    orders = orders[orders["created_at"] < until]
    cancelled = orders["status"].to_numpy(dtype=object) == "cancelled"
    if "cancelled_at" in orders.columns:
        cancelled |= (orders["cancelled_at"] < until).fillna(False).to_numpy(dtype=bool)
    return orders, cancelled


def _order_features(
    table: pd.DataFrame, orders: pd.DataFrame, cancelled: np.ndarray, as_of: date, tz: ZoneInfo
) -> np.ndarray:
    """Adds the order and RFM columns to `table`; returns each order's customer row (-1: counted
    out or unknown customer)."""
    n = len(table)
    pos = _positions(table["customer_id"].to_numpy(), orders["customer_id"].to_numpy())
    known = pos >= 0
    counted = known & ~cancelled
    order_pos = np.where(counted, pos, -1)
    p = pos[counted]
    count = np.bincount(p, minlength=n)
    spend = np.bincount(p, weights=orders["total"].to_numpy(dtype="float64")[counted], minlength=n)
    table["order_count"] = count.astype(np.int32)
    table["total_spend"] = spend.round(2)
    table["avg_order_value"] = np.where(count > 0, spend / np.maximum(count, 1), np.nan).round(2)
    table["cancelled_orders"] = np.bincount(pos[known & cancelled], minlength=n).astype(np.int32)

    created = orders["created_at"].to_numpy()[counted]
    stamps = created.view(np.int64)
    lowest, highest = np.iinfo(np.int64).max, np.iinfo(np.int64).min
    first_int = np.full(n, lowest, dtype=np.int64)
    last_int = np.full(n, highest, dtype=np.int64)
    np.minimum.at(first_int, p, stamps)
    np.maximum.at(last_int, p, stamps)
    nat = np.datetime64("NaT").astype(created.dtype).view(np.int64)
    first = np.where(count > 0, first_int, nat).view(created.dtype)
    last = np.where(count > 0, last_int, nat).view(created.dtype)
    table["first_order_at"] = first
    table["last_order_at"] = last
    table["first_order_days"] = _local_days_ago(table["first_order_at"], as_of, tz)
    table["recency_days"] = _local_days_ago(table["last_order_at"], as_of, tz)

    buyers = count > 0
    r = np.zeros(n, dtype=np.int8)
    f, m = r.copy(), r.copy()
    recency = table["recency_days"].to_numpy(dtype="float64", na_value=np.nan)
    r[buyers] = quintile_scores(-recency[buyers])
    f[buyers] = quintile_scores(count[buyers])
    m[buyers] = quintile_scores(spend[buyers])
    table["r_score"], table["f_score"], table["m_score"] = r, f, m
    rfm_text = (r.astype(np.int32) * 100 + f.astype(np.int32) * 10 + m).astype(np.int32)
    table["rfm"] = pd.Categorical.from_codes(rfm_text, _RFM_TEXT).remove_unused_categories()
    table["rfm_label"] = pd.Categorical.from_codes(rfm_codes(r, f, m), list(RFM_LABELS))
    return order_pos


def _distinct_pairs(rows: np.ndarray, codes: np.ndarray, width: int) -> np.ndarray:
    """Sorted distinct keys row * width + code (a sort beats hashing on millions of int64 keys)."""
    keys = np.sort(rows.astype(np.int64) * width + codes)
    if keys.size:
        keys = keys[np.concatenate(([True], keys[1:] != keys[:-1]))]
    return keys


def _bought_sets(
    order_pos: np.ndarray, orders: pd.DataFrame, items: pd.DataFrame, products: pd.DataFrame
) -> dict[str, pd.DataFrame]:
    """Distinct (customer row, brand) and (customer row, category) pairs of the counted orders."""
    order_row = _positions(orders["id"].to_numpy(), items["order_id"].to_numpy())
    customer_row = np.where(order_row >= 0, order_pos[order_row], -1)
    product_row = _positions(products["id"].to_numpy(), items["product_id"].to_numpy())
    keep = (customer_row >= 0) & (product_row >= 0)
    customer_row, product_row = customer_row[keep], product_row[keep]
    sets: dict[str, pd.DataFrame] = {}
    for name, column in (("brands", "brand"), ("categories", "category")):
        values = _categorical(products[column])
        codes = values.cat.codes.to_numpy()[product_row].astype(np.int64)
        has = codes >= 0
        width = max(len(values.cat.categories), 1)
        pairs = _distinct_pairs(customer_row[has], codes[has], width)
        sets[name] = pd.DataFrame(
            {
                "pos": (pairs // width).astype(np.int32),
                "value": pd.Categorical.from_codes((pairs % width).astype(np.int32), values.cat.categories),
            }
        )
    return sets


def customer_features(frames: dict[str, pd.DataFrame], as_of: date, tz: ZoneInfo) -> CustomerFeatures:
    """Features of every customer in `frames["customers"]` as of the end of `as_of` (see the module
    docstring). Order fields need `orders`; brands and categories also `order_items` and `products`;
    fields whose datasets are missing are simply not computed (`CustomerFeatures.fields`)."""
    table = _customer_table(frames["customers"], as_of, tz)
    sets: dict[str, pd.DataFrame] = {}
    have = {name for name in frames}
    if "orders" in have:
        orders, cancelled = _counted_orders(frames["orders"], as_of, tz)
        order_pos = _order_features(table, orders, cancelled, as_of, tz)
        if {"order_items", "products"} <= have:
            sets = _bought_sets(order_pos, orders, frames["order_items"], frames["products"])
    computed = frozenset(table.columns) | frozenset(sets)
    return CustomerFeatures(table, sets, as_of, tz, computed)


def missing_datasets(fields: set[str] | frozenset[str], available: set[str] | frozenset[str]) -> list[str]:
    """Datasets the given fields need that are not in `available` (in contract order)."""
    needed = {d for f in fields for d in FIELDS[f].datasets}
    return [d for d in FEATURE_DATASETS if d in needed and d not in available]
