"""The segment rule language on crafted customer features."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest

from segments.customer_features import FIELDS, customer_features
from segments.rules import (
    SegmentError,
    check_rule,
    describe,
    evaluate,
    load_segments,
    parse_segments,
    segment_names,
    trace,
)

MSK = ZoneInfo("Europe/Moscow")
AS_OF = date(2026, 11, 23)


@pytest.fixture(scope="module")
def features():
    """Customers 1-6; 1 and 2 bought, 6 only had a cancelled order."""
    customers = pd.DataFrame(
        {
            "id": [1, 2, 3, 4, 5, 6],
            "gender": ["f", "m", None, "f", "m", "f"],
            "birth_date": pd.to_datetime(
                ["2000-01-01", "1970-06-01", None, "2007-11-23", "1990-01-01", None]
            ),
            "city": ["Москва", "Санкт-Петербург", "Казань", " москва", None, "Москва"],
            "registered_at": pd.to_datetime(["2026-11-20"] * 3 + ["2020-01-01"] * 3),
            "marketing_consent": [True, True, False, True, True, True],
            "discount_card": ["DC1", None, None, "DC4", None, None],
            "language": ["ru", "ru", "en", "ru", None, "ru"],
        }
    )
    orders = pd.DataFrame(
        {
            "id": [10, 11, 12, 13],
            "customer_id": [1, 1, 2, 6],
            "status": ["delivered", "delivered", "delivered", "cancelled"],
            "created_at": pd.to_datetime(["2026-11-20", "2026-01-10", "2026-05-01", "2026-11-01"]),
            "total": [40000.0, 20000.0, 3000.0, 99000.0],
        }
    )
    items = pd.DataFrame(
        {
            "order_id": [10, 10, 11, 12, 13],
            "product_id": [100, 101, 102, 102, 100],
            "qty": 1,
            "price": 1.0,
        }
    )
    products = pd.DataFrame(
        {
            "id": [100, 101, 102],
            "brand": ["Chanel", "L'Oréal Paris", "Apple"],
            "category": ["Парфюмерия", "Косметика", "Смартфоны"],
        }
    )
    frames = {"customers": customers, "orders": orders, "order_items": items, "products": products}
    return customer_features(frames, AS_OF, MSK)


def ids(features, rule, catalogue=None) -> list[int]:
    check_rule(rule, "test", set(catalogue.names()) if catalogue else set())
    mask = evaluate(rule, features, catalogue)
    assert mask.dtype == bool and mask.shape == (len(features),)
    return features.table["customer_id"].to_numpy()[mask].tolist()


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ({"field": "gender", "eq": "f"}, [1, 4, 6]),
        ({"field": "gender", "eq": "F"}, [1, 4, 6]),  # text ignores case
        ({"field": "gender", "ne": "f"}, [2, 3, 5]),  # unknown gender is "not f"
        ({"field": "city", "eq": "Москва"}, [1, 4, 6]),  # " москва" matches: case and spaces ignored
        ({"field": "city", "in": ["Казань", "Санкт-Петербург"]}, [2, 3]),
        ({"field": "city", "not_in": ["Москва"]}, [2, 3, 5]),  # no city counts as not in
        ({"field": "city", "eq": "Тверь"}, []),  # a city nobody has
        ({"field": "age", "gt": 26}, [2, 5]),
        ({"field": "age", "gte": 26}, [1, 2, 5]),
        ({"field": "age", "lt": 26}, [4]),
        ({"field": "age", "lte": 19}, [4]),  # born 23 Nov 2007: 19 today
        ({"field": "age", "between": [18, 26]}, [1, 4]),
        ({"field": "age", "eq": 56}, [2]),
        ({"field": "age", "in": [19, 36]}, [4, 5]),
        ({"field": "age", "is_null": True}, [3, 6]),
        ({"field": "age", "is_null": False}, [1, 2, 4, 5]),
        ({"field": "age", "ne": 56}, [1, 3, 4, 5, 6]),
        ({"field": "has_card", "eq": True}, [1, 4]),
        ({"field": "has_card", "ne": True}, [2, 3, 5, 6]),
        ({"field": "marketing_consent", "eq": False}, [3]),
        ({"field": "total_spend", "gte": 50000}, [1]),
        ({"field": "order_count", "eq": 0}, [3, 4, 5, 6]),  # 6's only order was cancelled
        ({"field": "recency_days", "lte": 30}, [1]),
        ({"field": "recency_days", "gte": 90}, [2]),
        ({"field": "last_order_at", "gte": "2026-05-01"}, [1, 2]),
        ({"field": "last_order_at", "gt": date(2026, 5, 1)}, [1]),
        ({"field": "first_order_at", "between": ["2026-01-01", "2026-01-31"]}, [1]),
        ({"field": "first_order_at", "is_null": True}, [3, 4, 5, 6]),
        ({"field": "rfm_label", "eq": "no_orders"}, [3, 4, 5, 6]),
        ({"field": "categories", "contains_any": ["Косметика", "смартфоны"]}, [1, 2]),
        ({"field": "categories", "contains_all": ["Косметика", "Парфюмерия"]}, [1]),
        ({"field": "categories", "contains_all": ["Косметика", "Книги"]}, []),
        ({"field": "brands", "contains_any": ["Apple"]}, [1, 2]),
        ({"field": "brands", "is_null": True}, [3, 4, 5, 6]),
        ({"field": "brands", "is_null": False}, [1, 2]),
    ],
)
def test_each_operator(features, rule, expected) -> None:
    assert ids(features, rule) == expected


def test_all_any_not_and_nesting(features) -> None:
    women = {"field": "gender", "eq": "f"}
    moscow = {"field": "city", "eq": "Москва"}
    buyer = {"field": "order_count", "gte": 1}
    assert ids(features, {"all": [women, moscow]}) == [1, 4, 6]
    assert ids(features, {"any": [{"field": "gender", "eq": "m"}, {"field": "age", "is_null": True}]}) == [
        2,
        3,
        5,
        6,
    ]
    assert ids(features, {"not": women}) == [2, 3, 5]
    nested = {"all": [moscow, {"not": {"any": [buyer, {"field": "age", "lt": 20}]}}]}
    assert ids(features, nested) == [6]
    assert ids(features, {"not": {"not": women}}) == [1, 4, 6]


def _catalogue(segments: dict) -> object:
    return parse_segments({"segments": segments})


def test_segment_references_are_resolved_and_shared(features) -> None:
    catalogue = _catalogue(
        {
            "women": {"title": "Women", "rule": {"field": "gender", "eq": "f"}},
            "buyers": {"title": "Buyers", "rule": {"field": "order_count", "gte": 1}},
            "women_buyers": {"title": "W+B", "rule": {"all": [{"segment": "women"}, {"segment": "buyers"}]}},
            "others": {"title": "Others", "rule": {"not": {"segment": "women_buyers"}}},
        }
    )
    assert ids(features, {"segment": "women_buyers"}, catalogue) == [1]
    assert features.table["customer_id"].to_numpy()[catalogue.mask("others", features)].tolist() == [
        2,
        3,
        4,
        5,
        6,
    ]
    assert catalogue.references("others") == ["others", "women_buyers", "women", "buyers"]
    assert catalogue.fields("others") == ["gender", "order_count"]
    assert catalogue.datasets("women") == ["customers"]
    assert catalogue.datasets("others") == ["customers", "orders"]
    assert set(catalogue.definitions("women_buyers")) == {"women_buyers", "women", "buyers"}


@pytest.mark.parametrize(
    ("segments", "message"),
    [
        (
            {"aa": {"rule": {"segment": "aa"}}},
            r"segment 'aa': rule.segment: segment reference cycle aa -> aa",
        ),
        (
            {
                "aa": {"rule": {"any": [{"field": "age", "gt": 1}, {"segment": "bb"}]}},
                "bb": {"rule": {"all": [{"segment": "cc"}]}},
                "cc": {"rule": {"not": {"segment": "aa"}}},
            },
            r"segment 'cc': rule.not.segment: segment reference cycle aa -> bb -> cc -> aa",
        ),
        (
            {
                "aa": {"rule": {"segment": "bb"}},
                "bb": {"rule": {"all": [{"field": "age", "gt": 1}, {"segment": "bb"}]}},
            },
            r"segment 'bb': rule.all\[1\].segment: segment reference cycle bb -> bb",
        ),
    ],
)
def test_reference_cycles_are_an_error(segments, message) -> None:
    with pytest.raises(SegmentError, match=message):
        _catalogue(segments)


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        (
            {"field": "total_spent", "gte": 1},
            r"segment 'vip': rule: unknown field 'total_spent'; known: .*total_spend",
        ),
        (
            {"all": [{"field": "age", "gte": 1}, {"field": "age", "more": 1}]},
            r"rule.all\[1\]: unknown operator 'more'",
        ),
        ({"field": "age", "gte": 1, "lte": 3}, r"rule: a condition on 'age' needs exactly one operator"),
        ({"field": "age"}, r"needs exactly one operator, got none"),
        ({"field": "age", "gte": "18"}, r"rule: 'age' is a number; got '18'"),
        ({"field": "age", "gte": True}, r"'age' is a number; got True"),
        ({"field": "age", "between": [30, 18]}, r"'between' needs low <= high"),
        ({"field": "age", "between": [18]}, r"'between' takes \[low, high\]"),
        ({"field": "city", "in": "Москва"}, r"'in' takes a non-empty list"),
        ({"field": "city", "in": []}, r"'in' takes a non-empty list"),
        ({"field": "city", "gt": "A"}, r"operator 'gt' does not apply to 'city' \(text\)"),
        ({"field": "gender", "eq": "female"}, r"'gender' is one of \['f', 'm'\]; got 'female'"),
        ({"field": "rfm_label", "eq": "champion"}, r"'rfm_label' is one of .*champions"),
        ({"field": "has_card", "eq": "yes"}, r"'has_card' is true or false"),
        ({"field": "categories", "eq": "Книги"}, r"operator 'eq' does not apply to 'categories' \(set\)"),
        ({"field": "categories", "contains_any": [1]}, r"'categories' is text; got 1"),
        ({"field": "last_order_at", "gte": "yesterday"}, r"compared with a date"),
        ({"field": "age", "is_null": "yes"}, r"is_null takes true or false"),
        ({"any": []}, r"rule.any: takes a non-empty list"),
        ({"not": {"field": "nope", "eq": 1}}, r"rule.not: unknown field 'nope'"),
        ({"segment": "ghost"}, r"rule.segment: unknown segment 'ghost'"),
        ({"and": [{"field": "age", "gt": 1}]}, r"expected a condition .* or one of all, any, not, segment"),
        ({"all": [{"field": "age", "gt": 1}], "any": []}, r"got keys \['all', 'any'\]"),
        ("gender = f", r"rule: a rule is a table"),
        (
            {"any": [{"not": {"all": [{"field": "age", "gt": 1}, {"field": "agee", "gt": 1}]}}]},
            r"rule.any\[0\].not.all\[1\]: unknown field 'agee'",
        ),
    ],
)
def test_bad_rules_name_the_segment_and_the_path(rule, message) -> None:
    with pytest.raises(SegmentError, match=message):
        _catalogue({"vip": {"title": "VIP", "rule": rule}})


def test_bad_segment_tables_and_names() -> None:
    with pytest.raises(SegmentError, match=r"segment 'xx': unknown keys \['rules'\]"):
        _catalogue({"xx": {"rules": {"field": "age", "gt": 1}}})
    with pytest.raises(SegmentError, match=r"segment 'xx': missing 'rule'"):
        _catalogue({"xx": {"title": "X"}})
    with pytest.raises(SegmentError, match=r"segment name 'all' .* not 'all'"):
        _catalogue({"all": {"rule": {"field": "age", "gt": 1}}})
    with pytest.raises(SegmentError, match=r"segment name 'x'"):
        _catalogue({"x": {"rule": {"field": "age", "gt": 1}}})
    with pytest.raises(SegmentError, match=r"segment name 'Big-Spenders'"):
        _catalogue({"Big-Spenders": {"rule": {"field": "age", "gt": 1}}})
    with pytest.raises(SegmentError, match=r"unexpected top-level keys \['segment'\]"):
        parse_segments({"segment": {}})
    with pytest.raises(SegmentError, match=r"unknown segment 'nope'; known: a1"):
        _catalogue({"a1": {"rule": {"field": "age", "gt": 1}}}).get("nope")


def test_features_missing_for_a_rule_is_a_clear_error() -> None:
    frame = pd.DataFrame(
        {
            "id": [1],
            "gender": ["f"],
            "birth_date": [pd.NaT],
            "city": ["Москва"],
            "registered_at": [pd.Timestamp("2026-01-01")],
            "marketing_consent": [True],
            "discount_card": [None],
            "language": ["ru"],
        }
    )
    bare = customer_features({"customers": frame}, AS_OF, MSK)
    with pytest.raises(SegmentError, match=r"feature 'total_spend' was not computed: it needs datasets"):
        evaluate({"field": "total_spend", "gt": 1}, bare)


def test_toml_file_with_multiline_rules(tmp_path: Path, features) -> None:
    path = tmp_path / "segments.toml"
    path.write_text(
        """
[segments.women]
title = "Женщины"
rule = { field = "gender", eq = "f" }

[segments.moscow_women]
title = "Москвички"
description = "Women in Moscow who bought perfume"
[segments.moscow_women.rule]
all = [
  { segment = "women" },
  { field = "city", eq = "Москва" },
  { field = "categories", contains_any = ["Парфюмерия"] },
]
""",
        encoding="utf-8",
    )
    catalogue = load_segments(path)
    assert segment_names(path) == ["women", "moscow_women"]
    assert features.table["customer_id"].to_numpy()[catalogue.mask("moscow_women", features)].tolist() == [1]
    assert describe(catalogue.get("moscow_women").rule) == [
        "all of:",
        "  segment women",
        '  city = "Москва"',
        '  categories contains any of ["Парфюмерия"]',
    ]
    lines = trace({"segment": "moscow_women"}, features, catalogue, row=3)  # customer 4: no perfume
    assert lines[0] == "✗ segment moscow_women:"
    assert "  ✗ all of:" in lines
    assert any(line.strip().startswith('✓ city = "Москва"') and "(city: москва)" in line for line in lines)
    assert any("✗ categories contains any of" in line and "(categories: —)" in line for line in lines)
    path.write_text('[segments.bad]\nrule = { field = "x", eq = 1 }\n', encoding="utf-8")
    with pytest.raises(SegmentError, match=r"segment 'bad': rule: unknown field 'x'"):
        load_segments(path)  # re-read after the change
    path.write_text("[segments.bad\n", encoding="utf-8")
    with pytest.raises(SegmentError, match="segments.toml"):
        load_segments(path)
    with pytest.raises(SegmentError, match="not found"):
        load_segments(tmp_path / "none.toml")


def test_the_starter_segments_load_and_use_known_fields() -> None:
    catalogue = load_segments()
    names = catalogue.names()
    for expected in ("women", "men", "vip", "lapsed", "new_customers", "loyal", "champions", "card_holders"):
        assert expected in names
    for expected in ("moscow", "saint_petersburg", "electronics_buyers", "beauty_buyers", "young"):
        assert expected in names
    for name in names:
        segment = catalogue.get(name)
        assert segment.title and segment.description, name
        assert set(catalogue.fields(name)) <= set(FIELDS)


def test_masks_are_boolean_numpy_over_every_customer(features) -> None:
    mask = evaluate({"field": "gender", "eq": "f"}, features)
    assert isinstance(mask, np.ndarray) and mask.dtype == bool and len(mask) == 6
