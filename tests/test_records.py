"""Batches as frame slices: `records` gives exactly what `DataFrame.to_dict("records")` gives (values
and their types), and Prefect does not walk a batch row by row."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from prefect.utilities.collections import visit_collection
from prefect.utilities.engine import collect_task_run_inputs_sync

from flows.steps import batches
from shopmail.run.pipeline import Selection, _python_values, records, sharing_order


def _same(a: object, b: object) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)  # type: ignore[arg-type]
    if a is pd.NA or a is pd.NaT:
        return a is b
    return bool(a == b)


def _frames() -> list[pd.DataFrame]:
    n = 7
    mixed = pd.DataFrame(
        {
            "customer_id": np.arange(n, dtype="int64"),
            "total": [1.5, np.nan, 3.0, 0.0, -2.25, 1e9, 7.0],
            "card": pd.array([1, None, 3, 4, None, 6, 7], dtype="Int64"),
            "consent": [True, False, True, True, False, True, False],
            "first_name": pd.array(["Анна", None, "", "O'Brien", "Zoë", "x", "y"], dtype="str"),
            "language": pd.Categorical(["ru", "en", "ru", None, "en", "ru", "ru"]),
            "registered_at": pd.to_datetime(
                ["2026-01-01", None, "2025-12-31", "2026-03-08", "2020-02-29", "2026-11-30", "2001-01-01"]
            ),
            "shipped_at": pd.to_datetime(["2026-01-01"] * n).tz_localize("Europe/Moscow"),
            "products": [[1, 2], [], [3], None, [4, 5, 6], [1], [2]],
            "coupon": [{"code": "A"}, None, None, None, None, None, {"code": "B"}],
            "birth_date": [pd.Timestamp("1990-05-01").date()] * n,
        }
    )
    plain = mixed[
        ["customer_id", "total", "consent", "first_name", "registered_at", "shipped_at", "products"]
    ]
    numpy_scalars = plain.assign(products=[np.int64(1), None, 2, np.float64(1.5), "x", [1], np.bool_(True)])
    return [mixed, plain, plain.iloc[[6, 0, 3]], numpy_scalars, plain.iloc[0:0], pd.DataFrame(index=range(3))]


@pytest.mark.parametrize(
    "frame",
    _frames(),
    ids=["nullable-and-categorical", "plain", "reordered", "numpy-scalars", "empty", "no-columns"],
)
def test_records_equal_to_dict_records(frame: pd.DataFrame) -> None:
    expected = frame.to_dict("records")
    got = records(frame)
    assert len(got) == len(expected)
    for mine, theirs in zip(got, expected, strict=True):
        assert list(mine) == list(theirs)
        for key in theirs:
            assert _same(mine[key], theirs[key]), (key, mine[key], theirs[key])


def test_a_campaigns_columns_take_the_fast_path() -> None:
    """Numbers, booleans, dates, Python strings and lists of product ids need no pandas boxing."""
    plain = _frames()[1]
    assert all(_python_values(plain[column]) is not None for column in plain.columns)


def test_batches_are_frame_slices_prefect_does_not_walk() -> None:
    """The flow hands each send task a slice of the eligible frame (in sharing order, `limit` kept):
    Prefect's parameter walk sees one object per batch, not 1,000 dicts and their values."""
    eligible = _frames()[1].assign(language=["ru", "en", "ru", "en", "ru", "ru", "en"])
    selection = Selection(audience_size=7, eligible=eligible, skipped=pd.DataFrame())
    work = batches(selection, 3, None)
    assert [len(batch) for batch in work] == [3, 3, 1]
    assert all(isinstance(batch, pd.DataFrame) for batch in work)
    rows = [row for batch in work for row in records(batch)]
    assert [r["customer_id"] for r in rows] == sharing_order(eligible)["customer_id"].tolist()
    assert [len(batch) for batch in batches(selection, 3, 4)] == [3, 1]

    walked: list[object] = []
    visit_collection(work[0], lambda item: walked.append(item) or item, return_data=False)
    assert len(walked) == 1  # the frame itself, not its rows
    assert collect_task_run_inputs_sync(work[0]) == set()
