"""The name-day audience and the name-day table on crafted data (no Prefect, no DB)."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest

from segments.audiences.name_day import (
    NameDayTableError,
    load_name_days,
    name_day_audience,
    normalise_name,
    parse_name_days,
)
from shopmail.devtools.demo_shop import _name_pools

MSK = ZoneInfo("Europe/Moscow")
TABLE = """
[days]
"09-08" = ["Наталья", "Адриан"]
"01-25" = ["Татьяна"]
"07-12" = ["Пётр", "Павел"]
"10-07" = ["Фёкла"]
"02-29" = ["Касьян"]
"05-06" = ["Георгий"]

[variants]
"Наталия" = "Наталья"
"Юрий" = "Георгий"
"Егор" = "Юрий"
"""


@pytest.fixture
def table(tmp_path: Path) -> Path:
    path = tmp_path / "name_days.toml"
    path.write_text(TABLE, encoding="utf-8")
    return path


def _customers(rows: list[tuple[int, str | None, str | None]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["id", "first_name", "birth_date"])
    frame["birth_date"] = pd.to_datetime(frame["birth_date"])
    return frame


def _frames(customers: pd.DataFrame, orders: list[tuple] = (), items: list[tuple] = ()) -> dict:
    order_frame = pd.DataFrame(list(orders), columns=["id", "customer_id", "status", "created_at"])
    order_frame["created_at"] = pd.to_datetime(order_frame["created_at"])
    item_frame = pd.DataFrame(list(items), columns=["order_id", "product_id", "qty"])
    item_frame["price"] = 1.0
    products = pd.DataFrame(
        {
            "id": [1, 2, 3, 4, 5],
            "category": ["books", "books", "shoes", "shoes", "toys"],
            "brand": list("ABCDE"),
            "in_stock": [True, True, True, True, False],
        }
    )
    return {"customers": customers, "orders": order_frame, "order_items": item_frame, "products": products}


def test_name_variants_case_spaces_and_yo_match(table: Path) -> None:
    customers = _customers(
        [
            (1, "Наталья", None),
            (2, "Наталия", None),  # variant
            (3, "  наталья ", None),  # case and spaces
            (4, "Натали", None),  # not a listed variant
            (5, None, None),  # no first name
            (6, "Адриан", None),
            (7, "Татьяна", None),  # other day
        ]
    )
    audience = name_day_audience(_frames(customers), date(2026, 9, 8), MSK, calendar=table)
    assert sorted(audience["customer_id"]) == [1, 2, 3, 6]
    assert set(audience["name_day"]) == {"09-08"} and set(audience["year"]) == {2026}


def test_yo_and_e_are_the_same_letter_both_ways(table: Path) -> None:
    customers = _customers([(1, "Петр", None), (2, "Пётр", None), (3, "ПАВЕЛ", None), (4, "Фекла", None)])
    july = name_day_audience(_frames(customers), date(2026, 7, 12), MSK, calendar=table)
    assert sorted(july["customer_id"]) == [1, 2, 3]
    october = name_day_audience(_frames(customers), date(2026, 10, 7), MSK, calendar=table)
    assert october["customer_id"].tolist() == [4]
    assert normalise_name(" ФЁКЛА ") == "фекла" and normalise_name(None) == ""


def test_variant_chains_resolve_to_the_listed_name(table: Path) -> None:
    customers = _customers([(1, "Егор", None), (2, "Юрий", None), (3, "Георгий", None)])
    audience = name_day_audience(_frames(customers), date(2026, 5, 6), MSK, calendar=table)
    assert sorted(audience["customer_id"]) == [1, 2, 3]


def test_birthday_on_the_name_day_gets_the_birthday_mail_instead(table: Path) -> None:
    customers = _customers(
        [
            (1, "Татьяна", "1990-01-25"),  # birthday today: skipped
            (2, "Татьяна", "1990-01-24"),
            (3, "Татьяна", None),
        ]
    )
    audience = name_day_audience(_frames(customers), date(2027, 1, 25), MSK, calendar=table)
    assert sorted(audience["customer_id"]) == [2, 3]
    assert audience["year"].tolist() == [2027, 2027]


def test_29_february_name_day_falls_on_28_february_in_other_years(table: Path) -> None:
    customers = _customers([(1, "Касьян", None), (2, "Касьян", "1980-02-29")])
    assert name_day_audience(_frames(customers), date(2027, 2, 28), MSK, calendar=table)[
        "customer_id"
    ].tolist() == [1]  # customer 2's birthday is celebrated on 28 February too: birthday mail
    assert name_day_audience(_frames(customers), date(2028, 2, 28), MSK, calendar=table).empty
    leap = name_day_audience(_frames(customers), date(2028, 2, 29), MSK, calendar=table)
    assert leap["customer_id"].tolist() == [1] and leap["name_day"].tolist() == ["02-29"]


def test_missing_or_empty_table_gives_an_empty_audience(tmp_path: Path) -> None:
    customers = _customers([(1, "Наталья", None)])
    missing = name_day_audience(_frames(customers), date(2026, 9, 8), MSK, calendar=tmp_path / "none.toml")
    assert missing.empty and {"customer_id", "year", "name_day", "products"} <= set(missing.columns)
    empty = tmp_path / "empty.toml"
    empty.write_text("# nothing yet\n[days]\n", encoding="utf-8")
    assert name_day_audience(_frames(customers), date(2026, 9, 8), MSK, calendar=empty).empty


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('[days]\n"13-01" = ["Анна"]\n', "MM-DD"),
        ('[days]\n"9-8" = ["Анна"]\n', "MM-DD"),
        ('[days]\n"09-08" = "Анна"\n', "list of names"),
        ('[days]\n"09-08" = [""]\n', "list of names"),
        ('[variants]\n"Наталия" = 3\n', "variants"),
        ('[variants]\n"А" = "Б"\n"Б" = "А"\n', "itself"),
        ('[names]\n"09-08" = ["Анна"]\n', "unknown tables"),
        ("[days", "not valid TOML"),
    ],
)
def test_invalid_table_is_a_clear_error(text: str, problem: str) -> None:
    with pytest.raises(NameDayTableError, match=problem) as error:
        parse_name_days(text, source="nd.toml")
    assert "nd.toml" in str(error.value)


def test_recommendations_favourite_category_first_never_owned_nor_out_of_stock(table: Path) -> None:
    customers = _customers([(1, "Наталья", None), (2, "Наталья", None)])
    orders = [(10, 1, "delivered", "2026-08-20"), (11, 9, "delivered", "2026-08-21")]
    items = [(10, 1, 1), (11, 3, 10), (11, 4, 5), (11, 2, 2), (11, 5, 50)]
    audience = name_day_audience(
        _frames(customers, orders, items), date(2026, 9, 8), MSK, calendar=table, limit=3
    ).set_index("customer_id")
    assert audience.loc[1, "favourite_category"] == "books"
    assert audience.loc[1, "products"] == [2, 3, 4]  # book 2 (book 1 owned), then best sellers
    assert audience.loc[2, "favourite_category"] == ""
    assert audience.loc[2, "products"] == [3, 4, 2]  # 5 is out of stock


# --- the shipped table ---------------------------------------------------------------------------------

# Faker ru_RU names without a saint in the Russian Orthodox calendar (no name day to celebrate)
NO_NAME_DAY = {
    "Алина", "Анжела", "Анжелика", "Лора", "Наина", "Нинель", "Октябрина", "Регина", "Элеонора", "Милица",
    "Велимир", "Вышеслав", "Светозар", "Доброслав", "Лучезар", "Тимур", "Станимир", "Олимпий",
}  # fmt: skip


def test_shipped_table_covers_the_demo_shops_most_common_first_names() -> None:
    shipped = load_name_days()
    pools = _name_pools(42)  # the demo shop's default seed
    for sex in (0, 1):
        names, weights = pools.first[sex], pools.first_weights[sex]
        common = [str(n) for n in names[np.argsort(-weights)[:40]]]
        celebrated = {n for n in common if shipped.canonical(n) in set().union(*shipped.days.values())}
        assert set(common) - celebrated <= NO_NAME_DAY, set(common) - celebrated - NO_NAME_DAY
        assert len(celebrated) >= 30


def test_shipped_table_has_the_well_known_name_days() -> None:
    shipped = load_name_days()
    expect = {
        date(2026, 1, 25): "Татьяна",
        date(2026, 9, 30): "Вера",
        date(2026, 9, 8): "Наталия",
        date(2026, 7, 12): "Петр",
        date(2026, 12, 19): "Николай",
        date(2026, 5, 6): "Егор",
        date(2026, 11, 8): "Дмитрий",
        date(2026, 7, 24): "Ольга",
        date(2026, 2, 6): "Оксана",
    }
    for day, name in expect.items():
        assert shipped.canonical(name) in shipped.names_on(day), (day, name)
    targets = set(shipped.variants.values())
    assert targets <= set().union(*shipped.days.values())  # every variant points at a listed name
