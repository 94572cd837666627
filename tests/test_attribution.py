"""Attribution of orders to mails, mailed vs holdout uplift, the z-test, the chart and `shopmail report`."""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from decimal import Decimal

import pandas as pd
import pytest
from sqlalchemy import insert
from typer.testing import CliRunner

from config.settings import Settings
from shopmail.db import get_engine
from shopmail.results.attribution import (
    HOLDOUT,
    MAILED,
    attribute_orders,
    campaign_result,
    measure,
    two_proportion_p_value,
)
from shopmail.results.report_chart import chart_svg
from shopmail.shop import schema as shop_schema
from shopmail.state import state_db
from shopmail.state.schema import issued_coupons, send_ledger

T0 = datetime(2026, 11, 2, 9, 0)  # naive UTC
SINCE, UNTIL = datetime(2026, 11, 1), datetime(2026, 11, 11)


def _mails(rows: list[tuple[int, str, datetime]]) -> pd.DataFrame:
    return pd.DataFrame(
        [(f"k{i}", cid, group, at) for i, (cid, group, at) in enumerate(rows)],
        columns=["message_key", "customer_id", "group", "mailed_at"],
    )


def _orders(rows: list[tuple[int, int, datetime, float, str]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["order_id", "customer_id", "created_at", "total", "status"])


D = timedelta(days=1)
MAILS = _mails(
    [
        (1, MAILED, T0),
        (2, MAILED, T0),
        (3, MAILED, T0),
        (3, MAILED, T0 + 3 * D),  # a second mail of the same campaign
        (4, HOLDOUT, T0),
        (5, HOLDOUT, T0),
        (6, HOLDOUT, T0),
        (6, MAILED, T0 + D),  # in both groups (percent changed): counts as mailed
    ]
)
ORDERS = _orders(
    [
        (101, 1, T0 + D, 100.0, "delivered"),  # inside
        (102, 1, T0 + 8 * D, 50.0, "delivered"),  # outside the window
        (103, 1, T0 + 2 * D, 999.0, "cancelled"),  # cancelled: never counts
        (104, 2, T0 - D, 70.0, "delivered"),  # before the mail
        (105, 3, T0 + 4 * D, 30.0, "paid"),  # inside both mails' windows: once
        (106, 3, T0 + 9 * D, 20.0, "received"),  # inside the second mail's window only
        (107, 4, T0 + 2 * D, 40.0, "delivered"),  # holdout converter
        (108, 5, T0 + 7 * D, 80.0, "delivered"),  # exactly 7 days later: window is [t, t + 7d)
        (109, 6, T0 + 2 * D, 10.0, "delivered"),  # after the holdout row, after the mail: mailed group
    ]
)


def test_orders_are_attributed_inside_the_window_once_and_never_cancelled() -> None:
    hits = attribute_orders(MAILS, ORDERS, 7)
    assert set(hits["order_id"]) == {101, 105, 106, 107, 109}
    assert hits["order_id"].is_unique


def test_measure_groups_metrics_and_uplift() -> None:
    coupons = pd.DataFrame({"code": ["A", "B", "C"], "customer_id": [1, 2, 3], "used": [True, False, True]})
    result = measure("wakeup", MAILS, ORDERS, SINCE, UNTIL, 7, coupons)
    m, h = result.mailed, result.holdout
    assert (m.recipients, m.converters, m.orders, m.revenue) == (4, 3, 4, 160.0)
    assert (h.recipients, h.converters, h.orders, h.revenue) == (2, 1, 1, 40.0)
    assert m.conversion == 0.75 and h.conversion == 0.5
    assert result.conversion_uplift == pytest.approx(0.25)
    assert result.conversion_uplift_relative == pytest.approx(0.5)
    assert m.revenue_per_recipient == 40.0 and h.revenue_per_recipient == 20.0
    assert result.revenue_uplift == pytest.approx(20.0) and result.revenue_uplift_relative == 1.0
    assert result.incremental_revenue == pytest.approx(80.0)
    assert (result.coupons_issued, result.coupons_used, result.coupon_converters) == (3, 2, 2)
    text = result.markdown()
    assert "| conversion | 75.00 % | 50.00 % | +25.00 pp | +50.0 % |" in text
    assert "Small groups" in text and "2 used" in text


def test_a_longer_window_counts_more() -> None:
    result = measure("wakeup", MAILS, ORDERS, SINCE, UNTIL, 10)
    assert result.mailed.orders == 5  # order 102 (day 8) now counts
    assert result.holdout.converters == 2  # order 108 (day 7) too


def test_zero_size_groups() -> None:
    only_mailed = MAILS[MAILS["group"] == MAILED]
    result = measure("wakeup", only_mailed, ORDERS, SINCE, UNTIL)
    assert result.holdout.recipients == 0 and result.holdout.conversion is None
    assert result.conversion_uplift is None and result.p_value is None
    assert "No holdout group" in result.markdown()
    empty = measure("wakeup", MAILS.iloc[0:0], ORDERS.iloc[0:0], SINCE, UNTIL)
    assert empty.mailed.recipients == 0 and empty.revenue_uplift is None
    assert "<svg" in chart_svg(empty)  # nothing to draw still draws
    with pytest.raises(ValueError):
        measure("wakeup", MAILS, ORDERS, SINCE, UNTIL, 0)


def test_two_proportion_z_test_against_a_hand_computed_value() -> None:
    # p1 = 30/200 = .15, p2 = 10/100 = .10, pooled = 40/300; se = sqrt(.1333 * .8667 * .015) = .041633
    # z = .05 / .041633 = 1.20096; two-sided p = 2 * (1 - Phi(1.20096)) = 0.22977
    assert two_proportion_p_value(30, 200, 10, 100) == pytest.approx(0.22977, abs=2e-5)
    assert two_proportion_p_value(50, 100, 50, 100) == pytest.approx(1.0)
    assert two_proportion_p_value(0, 100, 0, 100) is None  # no variance
    assert two_proportion_p_value(1, 0, 1, 10) is None
    assert two_proportion_p_value(900, 1000, 100, 1000) < 1e-100 or math.isclose(
        two_proportion_p_value(900, 1000, 100, 1000), 0.0
    )


def test_chart_svg_shows_both_groups() -> None:
    svg = chart_svg(measure("wakeup", MAILS, ORDERS, SINCE, UNTIL))
    assert svg.startswith("<svg") and svg.rstrip().endswith("</svg>")
    assert "75.00 %" in svg and "50.00 %" in svg and "40.00" in svg and "20.00" in svg
    assert svg.count("<rect") == 5  # background + 2 panels x 2 bars


def _build(settings: Settings) -> None:
    """A shop with 6 customers and their orders/coupons, and a state DB with wakeup ledger rows."""
    shop = get_engine(settings.shop_url_resolved)
    shop_schema.metadata.create_all(shop)
    with shop.begin() as conn:
        conn.execute(
            insert(shop_schema.customers),
            [
                {
                    "id": i,
                    "email": f"c{i}@example.com",
                    "registered_at": T0 - 100 * D,
                    "marketing_consent": True,
                }
                for i in range(1, 8)
            ],
        )
        conn.execute(
            insert(shop_schema.orders),
            [
                {"id": o, "customer_id": c, "status": s, "created_at": at, "total": Decimal(str(t))}
                for o, c, at, t, s in ORDERS.itertuples(index=False)
            ]
            + [{"id": 200, "customer_id": 7, "status": "paid", "created_at": T0, "total": Decimal(5)}],
        )
        conn.execute(
            insert(shop_schema.coupons),
            [
                {"code": "SM-A", "customer_id": 1, "value": Decimal(10), "used": True},
                {"code": "SM-B", "customer_id": 2, "value": Decimal(10), "used": False},
            ],
        )
    state = state_db.upgrade(settings.state_url_resolved)
    rows = []
    for key, cid, group, at in MAILS.itertuples(index=False):
        status = "sent" if group == MAILED else "holdout"
        stamp = {"created_at": at - timedelta(minutes=5) if status == "sent" else at, "updated_at": at}
        rows.append(
            {"campaign": "wakeup", "occasion_key": f"o:{key}", "customer_id": cid, "message_key": key}
            | {"status": status, "attempts": 1, **stamp}
        )
    rows.append(  # another campaign and a mail outside the period: both ignored
        {"campaign": "birthday", "occasion_key": "b", "customer_id": 7, "message_key": "kb", "status": "sent"}
        | {"attempts": 1, "created_at": T0, "updated_at": T0}
    )
    rows.append(
        {"campaign": "wakeup", "occasion_key": "old", "customer_id": 7, "message_key": "ko", "status": "sent"}
        | {"attempts": 1, "created_at": T0 - 30 * D, "updated_at": T0 - 30 * D}
    )
    coupon = {"campaign": "wakeup", "value": Decimal(10), "percent": True, "expires_at": T0 + 14 * D}
    with state.begin() as conn:
        conn.execute(insert(send_ledger), rows)
        conn.execute(
            insert(issued_coupons),
            [
                {"code": "SM-A", "customer_id": 1, "message_key": "k0", "issued_at": T0, **coupon},
                {"code": "SM-B", "customer_id": 2, "message_key": "k1", "issued_at": T0, **coupon},
            ],
        )


def test_loaders_against_databases(settings: Settings) -> None:
    _build(settings)
    state = state_db.upgrade(settings.state_url_resolved)
    shop = get_engine(settings.shop_url_resolved)
    result = campaign_result(state, shop, "wakeup", SINCE.date(), UNTIL.date(), settings.tz, 7)
    expected = measure("wakeup", MAILS, ORDERS, SINCE, UNTIL, 7)
    assert result.mailed == expected.mailed and result.holdout == expected.holdout
    assert (result.coupons_issued, result.coupons_used, result.coupon_converters) == (2, 1, 1)
    assert result.days == (SINCE.date(), UNTIL.date())


def test_cli_report_prints_the_table_and_writes_the_chart(settings: Settings, monkeypatch) -> None:
    from rich.console import Console

    from shopmail import cli

    monkeypatch.setattr(cli, "console", Console(width=200))
    _build(settings)
    chart = settings.data_dir / "out" / "wakeup.svg"
    args = ["report", "wakeup", "--since", "2026-11-01", "--until", "2026-11-10", "--chart", str(chart)]
    out = CliRunner().invoke(cli.app, args, catch_exceptions=False)
    assert out.exit_code == 0, out.output
    assert "75.00 %" in out.output and "+25.00 pp" in out.output and "+20.00" in out.output
    assert "p-value" in out.output and chart.exists() and "<svg" in chart.read_text()

    default = CliRunner().invoke(
        cli.app,
        ["report", "wakeup", "--since", "2026-11-01", "--until", "2026-11-10"],
        catch_exceptions=False,
    )
    assert default.exit_code == 0, default.output
    assert (settings.data_dir / "reports" / "wakeup-2026-11-10.svg").exists()

    bad = CliRunner().invoke(cli.app, ["report", "wakeup", "--since", "2026-11-10", "--until", "2026-11-01"])
    assert bad.exit_code != 0


@pytest.mark.flow
def test_report_flow_publishes_the_artifact(prefect_harness, settings: Settings) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from flows.campaign_report import campaign_report

    _build(settings)
    result = campaign_report(campaign="wakeup", since=SINCE.date(), until=UNTIL.date(), window_days=7)
    assert result.mailed.converters == 3 and result.holdout.converters == 1
    assert (settings.data_dir / "reports" / "wakeup-2026-11-11.svg").exists()
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["report-wakeup"]))
        )
    assert artifacts and "mailed vs holdout" in artifacts[0].data and "+25.00 pp" in artifacts[0].data
