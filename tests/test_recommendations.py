"""Recommendations on crafted data: bought together, accessory map, sell-off, complementary picks."""

from __future__ import annotations

from collections import Counter
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from segments.recommendations import (
    AccessoryMapError,
    _sorted_picks,
    complementary_products,
    frequently_bought_together,
    load_accessory_map,
    parse_accessory_map,
    ranked_catalogue,
    sell_off,
    top_not_owned,
)
from shopmail.devtools.demo_shop import CATEGORIES


def _items(orders: dict[int, list[int]]) -> pd.DataFrame:
    rows = [(order, product) for order, products in orders.items() for product in products]
    frame = pd.DataFrame(rows, columns=["order_id", "product_id"])
    frame["qty"], frame["price"] = 1, 1.0
    return frame


def _pairs(fbt: pd.DataFrame) -> dict[tuple[int, int], int]:
    columns = (fbt["product_id"], fbt["other_id"], fbt["support"])
    return {(int(a), int(b)): int(s) for a, b, s in zip(*columns, strict=True)}


# --- frequently bought together ------------------------------------------------------------------


def test_fbt_counts_orders_holding_both_products_in_both_directions() -> None:
    items = _items({1: [10, 20, 30], 2: [10, 20], 3: [20, 10], 4: [10], 5: [30, 20, 20]})
    fbt = frequently_bought_together(items, min_support=1)
    assert _pairs(fbt) == {
        (10, 20): 3, (20, 10): 3,  # orders 1, 2, 3
        (20, 30): 2, (30, 20): 2,  # orders 1, 5 (20 twice in order 5 counts once)
        (10, 30): 1, (30, 10): 1,
    }  # fmt: skip
    ranked = fbt[fbt["product_id"] == 10].sort_values("rank")
    assert ranked["other_id"].tolist() == [20, 30] and ranked["rank"].tolist() == [1, 2]
    # confidence: orders with both / orders with product 10 (orders 1-4)
    assert fbt.set_index(["product_id", "other_id"]).loc[(10, 20), "confidence"] == pytest.approx(0.75)


def test_fbt_min_support_top_k_and_ties_by_product_id() -> None:
    items = _items({1: [1, 2], 2: [1, 2], 3: [1, 3], 4: [1, 3], 5: [1, 4], 6: [1, 5], 7: [1, 5]})
    fbt = frequently_bought_together(items, min_support=2, top_k=2)
    mine = fbt[fbt["product_id"] == 1].sort_values("rank")
    assert mine["other_id"].tolist() == [2, 3]  # 2, 3, 5 all have support 2: lowest ids first, k = 2
    assert 4 not in set(fbt["other_id"]) and 4 not in set(fbt["product_id"])  # support 1 < 2
    assert fbt[fbt["product_id"] == 5]["other_id"].tolist() == [1]


def test_fbt_ignores_cancelled_orders_and_oversized_orders() -> None:
    items = _items({1: [1, 2], 2: [1, 2], 3: [1, 2], 4: list(range(100, 160)) + [1, 2]})
    status = ["delivered", "cancelled", "delivered", "delivered"]
    orders = pd.DataFrame({"id": [1, 2, 3, 4], "status": status})
    fbt = frequently_bought_together(items, orders, min_support=1, max_order_size=50)
    assert _pairs(fbt) == {(1, 2): 2, (2, 1): 2}  # order 2 cancelled, order 4 has 62 products


def test_fbt_matches_a_brute_force_count_on_random_orders() -> None:
    rng = np.random.default_rng(7)
    orders = {o: rng.choice(40, rng.integers(1, 7), replace=True).tolist() for o in range(1, 800)}
    expected: Counter[tuple[int, int]] = Counter()
    for products in orders.values():
        for a, b in combinations(sorted(set(products)), 2):
            expected[(a, b)] += 1
            expected[(b, a)] += 1
    fbt = frequently_bought_together(_items(orders), min_support=3, top_k=1000)
    assert _pairs(fbt) == {pair: n for pair, n in expected.items() if n >= 3}


def test_fbt_on_no_pairs_is_an_empty_frame_with_the_columns() -> None:
    fbt = frequently_bought_together(_items({1: [1], 2: [2]}))
    assert fbt.empty and {"product_id", "other_id", "support", "rank"} <= set(fbt.columns)
    assert frequently_bought_together(_items({})).empty


# --- accessory map ---------------------------------------------------------------------------------


def test_accessory_map_parses_and_drops_self_references() -> None:
    mapping = parse_accessory_map('[accessories]\n"phones" = ["cases", "phones", "chargers", "cases"]\n')
    assert mapping == {"phones": ("cases", "chargers")}


@pytest.mark.parametrize(
    "text",
    ['[accessories]\nphones = "cases"\n', "[accessories]\nphones = [1]\n", '[other]\na = ["b"]\n', "x ="],
)
def test_invalid_accessory_map_is_a_clear_error(text: str) -> None:
    with pytest.raises(AccessoryMapError, match="acc.toml"):
        parse_accessory_map(text, source="acc.toml")


def test_missing_accessory_map_is_empty_and_relative_paths_start_at_the_project_root(tmp_path: Path) -> None:
    assert load_accessory_map(tmp_path / "none.toml") == {}
    assert load_accessory_map("config/accessories.toml") == load_accessory_map()


def test_shipped_accessory_map_names_only_demo_shop_categories() -> None:
    known = {c.name for c in CATEGORIES}
    mapping = load_accessory_map()
    assert set(mapping) == known  # every demo category has accessories
    assert all(set(targets) <= known and targets for targets in mapping.values())


# --- catalogue, sell-off, complementary picks -------------------------------------------------------


def _products() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": [1, 2, 3, 4, 5, 6, 7, 8, 9],
            "category": ["phones", "phones", "cases", "cases", "cases"]
            + ["chargers", "chargers", "books", "cases"],
            "brand": list("ABCDEFGHI"),
            "in_stock": [True, True, True, True, True, True, True, True, False],
            "overstock": [False, True, False, True, False, True, False, False, True],
        }
    )


SOLD = pd.Series({1: 100, 2: 90, 3: 80, 4: 70, 5: 60, 6: 50, 7: 40, 8: 30, 9: 500})
ACCESSORIES = {"phones": ("cases", "chargers"), "books": ("phones",)}


def test_ranked_catalogue_keeps_overstock_and_sell_off_lists_in_stock_overstock_best_first() -> None:
    catalogue = ranked_catalogue(_products(), SOLD)
    assert catalogue["id"].tolist() == [1, 2, 3, 4, 5, 6, 7, 8]  # 9 out of stock
    assert sell_off(catalogue, 5) == [2, 4, 6]  # 9 is overstock but out of stock
    assert sell_off(catalogue, 2) == [2, 4]
    plain = ranked_catalogue(_products().drop(columns="overstock"), SOLD)
    assert "overstock" not in plain.columns and sell_off(plain, 3) == []


def _complementary(bought: dict, owned: dict, fbt: pd.DataFrame | None, limit: int = 4) -> pd.Series:
    def frame(mapping: dict) -> pd.DataFrame:
        rows = [(k, p) for k, ps in mapping.items() for p in ps]
        return pd.DataFrame(rows, columns=["key", "product_id"])

    products = _products()
    catalogue = ranked_catalogue(products, SOLD)
    return complementary_products(frame(bought), products, catalogue, frame(owned), fbt, ACCESSORIES, limit)


def test_complementary_accessories_interleave_categories_in_map_order() -> None:
    picks = _complementary({100: [1]}, {100: [1]}, None, limit=5)
    # phone -> cases (3, 4, 5 by sales), chargers (6, 7): first of each, then second of each, ...
    assert picks.loc[100] == [3, 6, 4, 7, 5]


def test_complementary_puts_frequently_bought_together_first_then_accessories() -> None:
    items = _items({1: [1, 8], 2: [1, 8], 3: [1, 7], 4: [1, 7], 5: [1, 7]})
    fbt = frequently_bought_together(items, min_support=2)
    picks = _complementary({100: [1]}, {100: [1]}, fbt, limit=4)
    assert picks.loc[100] == [7, 8, 3, 6]  # FBT by support (7: 3 orders, 8: 2), then accessories


def test_complementary_never_offers_bought_owned_or_out_of_stock_products() -> None:
    items = _items({1: [1, 9], 2: [1, 9], 3: [1, 9], 4: [1, 2], 5: [1, 2]})  # 9: out of stock
    fbt = frequently_bought_together(items, min_support=2)
    picks = _complementary({100: [1], 200: [1]}, {100: [1, 3, 2], 200: [1]}, fbt, limit=10)
    assert picks.loc[100] == [6, 4, 7, 5]  # 2 and 3 owned, 9 out of stock
    assert picks.loc[200] == [2, 3, 6, 4, 7, 5]
    assert all(len(p) == len(set(p)) for p in picks)  # no repeats


def test_complementary_sums_support_over_the_bought_products_and_skips_keys_without_picks() -> None:
    items = _items({1: [1, 8, 6], 2: [2, 8], 3: [1, 6], 4: [1, 6], 5: [2, 8], 6: [2, 8]})
    fbt = frequently_bought_together(items, min_support=1)
    picks = _complementary({100: [1, 2], 300: [5]}, {}, fbt, limit=2)
    # 8: 1 order with product 1 + 3 with product 2 = 4 > 6: 3 orders (with 1 only)
    assert picks.loc[100] == [8, 6]
    assert 300 not in picks.index  # a case: no FBT, no accessories for cases in this map


def test_complementary_in_chunks_of_keys_gives_the_same_picks() -> None:
    items = _items({1: [1, 8], 2: [1, 8], 3: [2, 7], 4: [2, 7], 5: [8, 6], 6: [8, 6]})
    fbt = frequently_bought_together(items, min_support=2)
    products = _products()
    catalogue = ranked_catalogue(products, SOLD)
    bought = pd.DataFrame({"key": [1, 1, 2, 3, 4, 5], "product_id": [1, 8, 2, 8, 3, 9]})
    owned = pd.DataFrame({"key": [1, 2, 3, 9], "product_id": [3, 7, 6, 1]})
    whole = complementary_products(bought, products, catalogue, owned, fbt, ACCESSORIES, 3)
    chunked = complementary_products(bought, products, catalogue, owned, fbt, ACCESSORIES, 3, chunk_keys=2)
    assert chunked.to_dict() == whole.to_dict() and set(whole.index) == {1, 2, 3}


def test_complementary_with_huge_product_ids_and_text_keys() -> None:
    big = 10**12
    products = _products().assign(id=lambda f: f["id"] + big)
    catalogue = ranked_catalogue(products, SOLD.rename(lambda i: i + big))
    items = _items({1: [1 + big, 8 + big], 2: [1 + big, 8 + big]})
    fbt = frequently_bought_together(items, min_support=2)
    bought = pd.DataFrame({"key": ["a", "b"], "product_id": [1 + big, 77]})  # 77: unknown product
    owned = pd.DataFrame({"key": ["a"], "product_id": [3 + big]})
    picks = complementary_products(bought, products, catalogue, owned, fbt, ACCESSORIES, 3)
    assert picks.to_dict() == {"a": [8 + big, 6 + big, 4 + big]}  # case 3 owned: charger 6 next


@pytest.mark.parametrize("scale", [1, 2**40])  # packed into one int64 / too wide: lexsort
def test_sorted_picks_orders_by_key_first_second_then_product(scale: int) -> None:
    rng = np.random.default_rng(3)
    pairs = rng.choice(50 * 40, 600, replace=False)
    key, product = pairs // 40 * scale, pairs % 40 * scale
    first = rng.integers(-5, 5, 600).astype(float)
    second = rng.choice([-2.5, 0.0, 1.0, 3.25], 600)
    order = np.lexsort((product, second, first, key))
    got_key, got_product = _sorted_picks(key, first, second, product)
    assert got_key.tolist() == key[order].tolist() and got_product.tolist() == product[order].tolist()


def test_complementary_on_an_empty_input_is_empty() -> None:
    assert _complementary({}, {}, None).empty


def test_top_not_owned_takes_the_shared_pool_minus_what_each_key_owns() -> None:
    owned = pd.DataFrame({"key": [1, 1, 2], "product_id": [5, 6, 7]})
    picks = top_not_owned(pd.Series([1, 2, 3]), [5, 6, 7, 8, 9], owned, 2)
    assert picks.to_dict() == {1: [7, 8], 2: [5, 6], 3: [5, 6]}
    assert top_not_owned(pd.Series([1]), [5], owned, 2).empty  # key 1 owns the whole pool
