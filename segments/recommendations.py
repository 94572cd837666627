"""Product recommendations over DataFrames (pure pandas, no Prefect)."""

from __future__ import annotations

from datetime import datetime

import pandas as pd


def popularity(orders: pd.DataFrame, order_items: pd.DataFrame, since: datetime) -> pd.Series:
    """Units sold per product in orders created since `since` (cancelled orders excluded)."""
    recent = orders.loc[(orders["created_at"] >= since) & (orders["status"] != "cancelled"), ["id"]]
    items = order_items.merge(recent, left_on="order_id", right_on="id")
    return items.groupby("product_id")["qty"].sum().rename("sold")


def ranked_catalogue(products: pd.DataFrame, sold: pd.Series) -> pd.DataFrame:
    """In-stock products with a popularity score, best first."""
    catalogue = products.loc[products["in_stock"], ["id", "category", "brand"]].copy()
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
