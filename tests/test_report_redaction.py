"""Artifacts and approval requests never carry a usable token or coupon code."""

from __future__ import annotations

from datetime import date

from shopmail.mailer.base import OutgoingMail
from shopmail.run.run_report import RunReport, redact_tokens
from shopmail.state.coupons import coupon_code


def test_coupon_codes_and_tokens_are_redacted_in_the_sample() -> None:
    code = coupon_code("secret", "a" * 40, "BDAY")
    text = f"Ваш подарок: {code}. Отписаться: https://shop.example/unsubscribe?token=MTg2.r0c7&x=1"
    mail = OutgoingMail(
        message_key="k",
        to_email="a@b.example",
        to_name="",
        subject="С днём рождения",
        html="",
        text=text,
        from_email="shop@example.com",
        from_name="Shop",
    )
    report = RunReport(run_id="r", campaign="birthday", as_of=date(2026, 11, 23), dry_run=True, sample=mail)
    markdown = report.markdown("completed")
    assert code not in markdown and "BDAY-…" in markdown
    assert "MTg2" not in markdown and "token=…&x=1" in markdown


def test_ordinary_text_is_left_alone() -> None:
    text = "Заказ №12345, трек RA123456789RU, телефон +7 800 000-00-00, ISO 2026-11-23"
    assert redact_tokens(text) == text
