"""Product recommendations over DataFrames (pure pandas / numpy, no Prefect).

- popularity, `ranked_catalogue` (in-stock products, best sellers first), `bestsellers`,
  `category_bestsellers`, `related_products` (same category or brand), `pick_products`;
- `frequently_bought_together`: co-occurrence counts per product pair over order items, top k per
  product, with a minimum support (vectorised: millions of order items in seconds);
- the accessory map (`config/accessories.toml`: category -> accessory / complementary categories);
- `sell_off`: in-stock `overstock` products; `top_not_owned`: a shared block minus what each key has;
- `complementary_products`: for keys (e.g. orders) and what they bought, products bought together
  with it first, then accessories by the map, never what the customer has nor out-of-stock items.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd


def popularity(orders: pd.DataFrame, order_items: pd.DataFrame, since: datetime) -> pd.Series:
    """Units sold per product in orders created since `since` (cancelled orders excluded)."""
    recent = orders.loc[(orders["created_at"] >= since) & (orders["status"] != "cancelled"), ["id"]]
    items = order_items.merge(recent, left_on="order_id", right_on="id")
    return items.groupby("product_id")["qty"].sum().rename("sold")


def ranked_catalogue(products: pd.DataFrame, sold: pd.Series) -> pd.DataFrame:
    """In-stock products with a popularity score, best first (with `overstock` when products have it)."""
    columns = ["id", "category", "brand"] + (["overstock"] if "overstock" in products.columns else [])
    catalogue = products.loc[products["in_stock"], columns].copy()
    if "overstock" in catalogue.columns:
        catalogue["overstock"] = catalogue["overstock"].fillna(False).astype(bool)
    catalogue["score"] = catalogue["id"].map(sold).fillna(0.0)
    return catalogue.sort_values(["score", "id"], ascending=[False, True], kind="stable")


def bestsellers(catalogue: pd.DataFrame, limit: int) -> list[int]:
    """Top in-stock products overall."""
    return catalogue["id"].head(limit).astype(int).tolist()


def related_products(
    bought: pd.DataFrame, catalogue: pd.DataFrame, owned: pd.DataFrame, limit: int
) -> pd.Series:
    """Per key, up to `limit` popular in-stock products sharing a category or brand with `bought`.

    `bought` has columns key, product_id (what the mail is about); `owned` has key, product_id
    (everything the customer already has, never recommended). Returns key -> list of product ids.
    """
    if bought.empty:
        return pd.Series(dtype=object)
    depth = limit * 4
    bought = bought.merge(
        catalogue[["id", "category", "brand"]].rename(columns={"id": "product_id"}),
        on="product_id",
        how="left",
    )
    candidates = []
    for attribute, weight in (("category", 2.0), ("brand", 1.0)):
        top = catalogue.dropna(subset=[attribute]).groupby(attribute, sort=False).head(depth)
        wanted = bought[["key", attribute]].dropna().drop_duplicates()
        pairs = wanted.merge(top[["id", attribute, "score"]], on=attribute)
        pairs["rank"] = weight * (1.0 + pairs["score"])
        candidates.append(pairs[["key", "id", "rank"]])
    pool = pd.concat(candidates, ignore_index=True).rename(columns={"id": "product_id"})
    pool = pool.groupby(["key", "product_id"], as_index=False)["rank"].sum()
    exclude = owned[["key", "product_id"]].drop_duplicates().assign(_owned=True)
    pool = pool.merge(exclude, on=["key", "product_id"], how="left")
    pool = pool[pool["_owned"].isna()]
    pool = pool.sort_values(["key", "rank", "product_id"], ascending=[True, False, True])
    top = pool.groupby("key", sort=False).head(limit)
    return top.groupby("key", sort=False)["product_id"].agg(lambda ids: [int(i) for i in ids])


def category_bestsellers(catalogue: pd.DataFrame, category: str, limit: int) -> list[int]:
    """Top in-stock products of one category (from a `ranked_catalogue`)."""
    return catalogue.loc[catalogue["category"] == category, "id"].head(limit).astype(int).tolist()


def pick_products(preferred: list[int], fallback: list[int], exclude: set[int], limit: int) -> list[int]:
    """`preferred` first, topped up from `fallback`; nothing from `exclude`, no repeats, at most `limit`."""
    picked: list[int] = []
    for product_id in (*preferred, *fallback):
        if product_id not in exclude and product_id not in picked:
            picked.append(product_id)
            if len(picked) == limit:
                break
    return picked


# --------------------------------------------------------------------------------------------
# Frequently bought together, accessories, sell-off, complementary picks

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_ACCESSORIES = REPO_ROOT / "config" / "accessories.toml"
FBT_COLUMNS = ["product_id", "other_id", "support", "confidence", "rank"]


def _sorted_unique(values: np.ndarray) -> np.ndarray:
    """np.unique by sorting (numpy's hash-based unique is several times slower on millions of int64)."""
    values = np.sort(values)
    return values[np.r_[True, values[1:] != values[:-1]]] if values.size else values


def frequently_bought_together(
    order_items: pd.DataFrame,
    orders: pd.DataFrame | None = None,
    *,
    min_support: int = 2,
    top_k: int = 10,
    max_order_size: int = 50,
) -> pd.DataFrame:
    """Products bought together in the same order: co-occurrence counts per product pair, top-k per product.

    `support` is the number of orders holding both products (each order counts once, whatever the
    quantities); pairs below `min_support` are dropped. `confidence` = support / orders holding
    `product_id`. With `orders`, cancelled orders do not count. Orders with more than `max_order_size`
    distinct products (wholesale, data errors) are ignored: their pairs would swamp the counts and grow
    quadratically. Vectorised (numpy): one pass per item position, never per order.

    Returns one row per (product_id, other_id) in both directions, ranked 1..top_k per product_id by
    support (ties: the other product id).
    """
    items = order_items[["order_id", "product_id"]].dropna()
    if orders is not None and "status" in orders.columns:
        valid = orders.loc[orders["status"] != "cancelled", "id"]
        items = items[items["order_id"].isin(valid)]
    empty = pd.DataFrame({c: pd.Series(dtype="int64") for c in FBT_COLUMNS}).astype({"confidence": float})
    if items.empty:
        return empty
    order_codes = pd.factorize(items["order_id"])[0].astype(np.int64)
    product_codes, product_ids = pd.factorize(items["product_id"], sort=True)
    n_products = np.int64(len(product_ids))
    # one entry per (order, product), sorted by order then product
    keys = _sorted_unique(order_codes * n_products + product_codes.astype(np.int64))
    order, product = keys // n_products, keys % n_products
    starts = np.flatnonzero(np.r_[True, order[1:] != order[:-1]])
    sizes = np.diff(np.r_[starts, order.size])
    orders_with = np.bincount(product, minlength=int(n_products))
    keep = np.repeat(sizes <= max_order_size, sizes)
    # items left after each one in its order; pairs (i, i + k) for every offset k
    remaining = (np.repeat(starts + sizes, sizes) - np.arange(order.size) - 1)[keep]
    position = np.flatnonzero(keep)
    firsts, seconds = [], []
    offset = 1
    while position.size:
        position, remaining = position[remaining >= offset], remaining[remaining >= offset]
        firsts.append(product[position])
        seconds.append(product[position + offset])
        offset += 1
    first, second = np.concatenate(firsts), np.concatenate(seconds)  # first < second (sorted)
    if first.size == 0:
        return empty
    pair_keys = np.sort(first * n_products + second)
    bounds = np.flatnonzero(np.r_[True, pair_keys[1:] != pair_keys[:-1]])
    pair_keys, support = pair_keys[bounds], np.diff(np.r_[bounds, pair_keys.size])
    strong = support >= min_support
    pair_keys, support = pair_keys[strong], support[strong]
    a, b = pair_keys // n_products, pair_keys % n_products
    source = np.concatenate([a, b])
    target = np.concatenate([b, a])
    support = np.concatenate([support, support])
    by = np.lexsort((target, -support, source))
    source, target, support = source[by], target[by], support[by]
    group_start = np.flatnonzero(np.r_[True, source[1:] != source[:-1]]) if source.size else np.array([], int)
    rank = np.arange(source.size) - np.repeat(group_start, np.diff(np.r_[group_start, source.size])) + 1
    top = rank <= top_k
    values = np.asarray(product_ids)
    return pd.DataFrame(
        {
            "product_id": values[source[top]].astype(np.int64),
            "other_id": values[target[top]].astype(np.int64),
            "support": support[top].astype(np.int64),
            "confidence": support[top] / orders_with[source[top]],
            "rank": rank[top].astype(np.int64),
        }
    )


class AccessoryMapError(ValueError):
    """The accessory map file is invalid; the message names the file and the entry."""


def parse_accessory_map(text: str, source: str = "accessories.toml") -> dict[str, tuple[str, ...]]:
    """Parse `[accessories]` TOML text: category -> accessory / complementary categories, best first."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise AccessoryMapError(f"{source}: not valid TOML: {exc}") from exc
    unknown = set(data) - {"accessories"}
    if unknown:
        raise AccessoryMapError(f"{source}: unknown tables {sorted(unknown)}; expected [accessories]")
    table = data.get("accessories", {})
    if not isinstance(table, dict):
        raise AccessoryMapError(f"{source}: [accessories] must be a table: category = [categories]")
    mapping: dict[str, tuple[str, ...]] = {}
    for category, targets in table.items():
        if not isinstance(targets, list) or not all(isinstance(t, str) and t.strip() for t in targets):
            raise AccessoryMapError(f"{source}: {category!r} must be a list of category names")
        cleaned = [t.strip() for t in targets if t.strip() != category.strip()]
        mapping[category.strip()] = tuple(dict.fromkeys(cleaned))
    return mapping


def load_accessory_map(path: str | Path | None = None) -> dict[str, tuple[str, ...]]:
    """Read the accessory map (default `config/accessories.toml`; relative paths from the project root).

    A missing file is an empty map (no accessory recommendations), not an error.
    """
    file = DEFAULT_ACCESSORIES if path is None else Path(path)
    file = file if file.is_absolute() else REPO_ROOT / file
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    return parse_accessory_map(text, source=file.name)


def sell_off(catalogue: pd.DataFrame, limit: int) -> list[int]:
    """Products to sell off: in stock and flagged `overstock`, best sellers first.

    `catalogue` is a `ranked_catalogue` of products with an `overstock` column.
    """
    if "overstock" not in catalogue.columns:
        return []
    return catalogue.loc[catalogue["overstock"], "id"].head(limit).astype(int).tolist()


def _id_lists(frame: pd.DataFrame) -> pd.Series:
    """key -> list of product ids, from rows already sorted by key then rank."""
    if frame.empty:
        return pd.Series(dtype=object)
    keys = frame["key"].to_numpy()
    flat = frame["product_id"].to_numpy(dtype=np.int64).tolist()
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    ends = np.r_[starts[1:], len(flat)].tolist()
    lists = [flat[a:b] for a, b in zip(starts.tolist(), ends, strict=True)]
    return pd.Series(lists, index=keys[starts], dtype=object)


def _join_sorted(left: np.ndarray, right_sorted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inner equi-join: index pairs (i, j) with left[i] == right_sorted[j] (right_sorted ascending)."""
    lo = np.searchsorted(right_sorted, left, "left")
    counts = np.searchsorted(right_sorted, left, "right") - lo
    i = np.repeat(np.arange(left.size), counts)
    j = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts) + np.repeat(lo, counts)
    return i, j


def _in_sorted(values: np.ndarray, sorted_values: np.ndarray) -> np.ndarray:
    """Boolean mask: values[i] is in `sorted_values` (ascending)."""
    if not sorted_values.size:
        return np.zeros(values.size, dtype=bool)
    at = np.minimum(np.searchsorted(sorted_values, values), sorted_values.size - 1)
    return sorted_values[at] == values


def _group_starts(sorted_keys: np.ndarray) -> np.ndarray:
    if not sorted_keys.size:
        return sorted_keys
    return np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])


def _dense(values: np.ndarray) -> tuple[np.ndarray, int]:
    """Order-preserving non-negative int64 codes of `values` and their count bound."""
    if values.size and np.array_equal(values, np.round(values)):
        low = int(values.min())
        codes = values.astype(np.int64) - low
        return codes, int(codes.max()) + 1
    unique, codes = np.unique(values, return_inverse=True)
    return codes.astype(np.int64), max(len(unique), 1)


def _sorted_picks(
    key: np.ndarray, first: np.ndarray, second: np.ndarray, product: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(key, product) sorted by key, first, second, product; key and product are int64 codes and
    (key, product) pairs are unique.

    Packs the four into one int64 when their ranges allow (one sort, several times faster than
    `np.lexsort` on millions of rows); otherwise lexsort.
    """
    if not key.size:
        return key, product
    key_low, product_low = int(key.min()), int(product.min())
    key_size, product_size = int(key.max()) - key_low + 1, int(product.max()) - product_low + 1
    (first_codes, first_size), (second_codes, second_size) = _dense(first), _dense(second)
    if float(key_size) * first_size * second_size * product_size < 2.0**62:
        packed = ((key - key_low) * first_size + first_codes) * second_size + second_codes
        packed = packed * product_size + (product - product_low)
        packed.sort()
        key = packed // (first_size * second_size * product_size) + key_low
        return key, packed % product_size + product_low
    order = np.lexsort((product, second, first, key))
    return key[order], product[order]


@dataclass(frozen=True)
class _Complements:
    """Lookup arrays shared by every chunk of keys: bought-together pairs and accessory candidates."""

    products: pd.Index  # product id <-> product code (position); pairs are key code * width + code
    fbt_product: np.ndarray  # sorted
    fbt_other: np.ndarray
    fbt_support: np.ndarray
    fbt_score: np.ndarray  # popularity of fbt_other
    category_of: np.ndarray  # product code -> category code (-1: none)
    n_categories: int
    acc_category: np.ndarray  # sorted: category of the bought product
    acc_candidate: np.ndarray  # a best seller (product code) of one of its accessory categories
    acc_place: np.ndarray  # its place among the best sellers of that category (0 = best)
    acc_position: np.ndarray  # the accessory category's position in the map entry


def complementary_products(
    bought: pd.DataFrame,
    products: pd.DataFrame,
    catalogue: pd.DataFrame,
    owned: pd.DataFrame,
    fbt: pd.DataFrame | None,
    accessory_map: Mapping[str, Sequence[str]],
    limit: int,
    accessory_depth: int | None = None,
    chunk_keys: int = 200_000,
) -> pd.Series:
    """Per key, up to `limit` complementary in-stock products for what was bought.

    `bought` has columns key, product_id (e.g. the items of one order); `products` is the product
    table (categories of what was bought, even if it is out of stock now); `catalogue` a
    `ranked_catalogue` (in-stock products, best sellers first); `owned` has key, product_id (everything
    the customer already has: never recommended); `fbt` comes from `frequently_bought_together`.

    Order: products frequently bought together with the key's products first (support summed over
    the bought products, then popularity), then accessories by `accessory_map` (category -> accessory
    categories): the best sellers of each accessory category, interleaved in the map's order (first
    of each category, then second of each, ...; `accessory_depth` best sellers per category, default
    limit + 4). Bought, owned and out-of-stock products never appear, nor does a product twice.
    Returns key -> list of product ids (keys without any pick are absent). Vectorised (numpy joins
    on sorted arrays); keys are processed `chunk_keys` at a time to bound memory.
    """
    if bought.empty or limit <= 0:
        return pd.Series(dtype=object)
    bought = bought[["key", "product_id"]].drop_duplicates()
    owned = owned[["key", "product_id"]]
    tables = _complements(products, catalogue, fbt, accessory_map, accessory_depth or limit + 4)
    if tables is None:
        return pd.Series(dtype=object)
    keys = pd.Index(bought["key"].unique())
    bought_codes = keys.get_indexer(bought["key"]).astype(np.int64)
    owned_codes = keys.get_indexer(owned["key"]).astype(np.int64)
    bought_ids = tables.products.get_indexer(bought["product_id"]).astype(np.int64)  # -1: unknown
    owned_ids = tables.products.get_indexer(owned["product_id"]).astype(np.int64)
    parts = []
    for first in range(0, len(keys), chunk_keys):
        last = first + chunk_keys
        in_bought = (bought_codes >= first) & (bought_codes < last)
        in_owned = (owned_codes >= first) & (owned_codes < last)
        part = _complementary_chunk(
            tables,
            bought_codes[in_bought],
            bought_ids[in_bought],
            owned_codes[in_owned],
            owned_ids[in_owned],
            limit,
        )
        if part[0].size:
            parts.append(part)
    if not parts:
        return pd.Series(dtype=object)
    key_codes, ids = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    starts = _group_starts(key_codes)
    flat = tables.products.to_numpy(np.int64)[ids].tolist()
    ends = np.r_[starts[1:], len(flat)].tolist()
    lists = [flat[a:b] for a, b in zip(starts.tolist(), ends, strict=True)]
    return pd.Series(lists, index=keys[key_codes[starts]], dtype=object)


def _complements(
    products: pd.DataFrame,
    catalogue: pd.DataFrame,
    fbt: pd.DataFrame | None,
    accessory_map: Mapping[str, Sequence[str]],
    depth: int,
) -> _Complements | None:
    """The lookup arrays of `complementary_products` (None: nothing could ever be recommended)."""
    score = catalogue.set_index("id")["score"]
    if fbt is not None and not fbt.empty:
        together = fbt[fbt["other_id"].isin(score.index)].sort_values("product_id", kind="stable")
    else:
        together = pd.DataFrame({"product_id": [], "other_id": [], "support": []})
    links = pd.DataFrame(
        [(c, t, i) for c, targets in accessory_map.items() for i, t in enumerate(targets)],
        columns=["category", "target", "position"],
    )
    top = catalogue.dropna(subset=["category"]).groupby("category", sort=False).head(depth)
    top = top.assign(place=top.groupby("category", sort=False).cumcount())
    top = top[["id", "category", "place"]].rename(columns={"id": "candidate", "category": "target"})
    candidates = links.merge(top, on="target")
    if together.empty and candidates.empty:
        return None
    named = products.dropna(subset=["category"])
    all_categories = pd.concat([named["category"], candidates["category"]], ignore_index=True)
    codes, categories = pd.factorize(all_categories)
    ids = pd.Index(pd.concat([products["id"], together["product_id"]], ignore_index=True).astype(np.int64))
    ids = pd.Index(np.sort(ids.unique()))  # sorted: code order = id order; other_id: among products
    category_of = np.full(len(ids), -1, dtype=np.int64)
    category_of[ids.get_indexer(named["id"])] = codes[: len(named)]
    candidates = candidates.assign(code=codes[len(named) :]).sort_values("code", kind="stable")
    return _Complements(
        products=ids,
        fbt_product=ids.get_indexer(together["product_id"]).astype(np.int64),
        fbt_other=ids.get_indexer(together["other_id"]).astype(np.int64),
        fbt_support=together["support"].to_numpy(np.float64),
        fbt_score=together["other_id"].map(score).to_numpy(np.float64),
        category_of=category_of,
        n_categories=max(len(categories), 1),
        acc_category=candidates["code"].to_numpy(np.int64),
        acc_candidate=ids.get_indexer(candidates["candidate"]).astype(np.int64),
        acc_place=candidates["place"].to_numpy(np.float64),
        acc_position=candidates["position"].to_numpy(np.float64),
    )


def _complementary_chunk(
    t: _Complements,
    bought_keys: np.ndarray,
    bought_ids: np.ndarray,
    owned_keys: np.ndarray,
    owned_ids: np.ndarray,
    limit: int,
) -> tuple[np.ndarray, np.ndarray]:
    """(key codes, product codes) of the picks of one chunk of keys, by key then rank."""
    width = max(len(t.products), 1)
    known = bought_ids >= 0
    bought_keys, bought_ids = bought_keys[known], bought_ids[known]
    # bought together: one row per (key, other product), support summed over the key's products
    i, j = _join_sorted(bought_ids, t.fbt_product)
    pair = bought_keys[i] * width + t.fbt_other[j]
    order = np.argsort(pair, kind="stable")
    pair, support, score = pair[order], t.fbt_support[j][order], t.fbt_score[j][order]
    starts = _group_starts(pair)
    fbt_pair = pair[starts]
    fbt_first = -np.add.reduceat(support, starts) if starts.size else support
    fbt_second = -score[starts]
    # accessories: one row per (key, candidate): best place and map position over the bought categories
    category = t.category_of[bought_ids]
    with_category = category >= 0
    key_category = _sorted_unique(bought_keys[with_category] * t.n_categories + category[with_category])
    i, j = _join_sorted(key_category % t.n_categories, t.acc_category)
    pair = key_category[i] // t.n_categories * width + t.acc_candidate[j]
    order = np.argsort(pair, kind="stable")
    pair, place, position = pair[order], t.acc_place[j][order], t.acc_position[j][order]
    starts = _group_starts(pair)
    acc_pair = pair[starts]
    acc_first = np.minimum.reduceat(place, starts) if starts.size else place
    acc_second = np.minimum.reduceat(position, starts) if starts.size else position
    fresh = ~_in_sorted(acc_pair, fbt_pair)  # bought together already: keep that rank
    # together, minus what the key bought or owns
    pair = np.concatenate([fbt_pair, acc_pair[fresh]])
    first = np.concatenate([fbt_first, acc_first[fresh]])  # -support <= -1 < 0 <= place: FBT first
    second = np.concatenate([fbt_second, acc_second[fresh]])
    known = owned_ids >= 0
    excluded = _sorted_unique(
        np.concatenate([owned_keys[known] * width + owned_ids[known], bought_keys * width + bought_ids])
    )
    keep = ~_in_sorted(pair, excluded)
    pair, first, second = pair[keep], first[keep], second[keep]
    key, product = _sorted_picks(pair // width, first, second, pair % width)
    starts = _group_starts(key)
    rank = np.arange(key.size) - np.repeat(starts, np.diff(np.r_[starts, key.size]))
    return key[rank < limit], product[rank < limit]


def top_not_owned(keys: pd.Series, pool: Sequence[int], owned: pd.DataFrame, limit: int) -> pd.Series:
    """Per key, the first `limit` products of a shared `pool` (best first) the key does not own.

    `owned` has columns key, product_id. Returns key -> list of product ids (keys left with nothing
    are absent). Vectorised: one row per key and pool product.
    """
    keys = pd.Series(keys).drop_duplicates().to_numpy()
    pool = list(dict.fromkeys(int(p) for p in pool))
    if not len(keys) or not pool or limit <= 0:
        return pd.Series(dtype=object)
    grid = pd.DataFrame(
        {
            "key": np.repeat(keys, len(pool)),
            "product_id": np.tile(np.asarray(pool, dtype=np.int64), len(keys)),
        }
    )
    exclude = owned[["key", "product_id"]].drop_duplicates().assign(_owned=True)
    grid = grid.merge(exclude, on=["key", "product_id"], how="left")
    grid = grid[grid["_owned"].isna()]
    return _id_lists(grid.groupby("key", sort=False).head(limit))
