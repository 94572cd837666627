"""Shopmail's coupon outbox: a table Shopmail owns in the shop DB, for shops whose coupons table cannot
take Shopmail's inserts (a platform table with other columns, or a view: MariaDB views over joins are
not insertable and MariaDB has no INSTEAD OF triggers).

With `SHOPMAIL_COUPON_TABLE=shopmail_coupon_outbox` Shopmail inserts each issued coupon here (only the
missing codes, as with the contract's `coupons`); the platform kit's `coupon_bridge.sql` installs an
AFTER INSERT trigger that creates the platform's own coupon in the same statement (so a failing bridge
fails the issue, and the mail is not sent). The kit's contract view `coupons` reads this table back,
with `used` from the platform's usage records. Shopmail never creates this table: a missing table means
the bridge is not installed, and issuing fails instead of promising codes that do not exist.
"""

from __future__ import annotations

from functools import lru_cache

from sqlalchemy import Boolean, Column, DateTime, Integer, MetaData, Numeric, String, Table, Text

CONTRACT_TABLE = "coupons"
DEFAULT_OUTBOX = "shopmail_coupon_outbox"

# The same columns as the kits' coupon_bridge.sql (tests/test_platform_kits.py inserts through both).
OUTBOX_DDL = """CREATE TABLE IF NOT EXISTS {name} (
  code VARCHAR(40) NOT NULL,
  customer_id INT NOT NULL,
  value DECIMAL(12,2) NOT NULL,
  percent TINYINT(1) NOT NULL DEFAULT 0,
  expires_at DATETIME NOT NULL,
  note TEXT NULL,
  campaign VARCHAR(64) NOT NULL,
  message_key VARCHAR(255) NOT NULL,
  created_at DATETIME NOT NULL,
  PRIMARY KEY (code),
  KEY customer_id (customer_id)
)"""


@lru_cache(maxsize=8)
def outbox_table(name: str = DEFAULT_OUTBOX) -> Table:
    """The outbox `name` as a SQLAlchemy table (naive UTC times, like the contract)."""
    return Table(
        name,
        MetaData(),
        Column("code", String(40), primary_key=True),
        Column("customer_id", Integer, nullable=False),
        Column("value", Numeric(12, 2), nullable=False),
        Column("percent", Boolean, nullable=False, default=False),
        Column("expires_at", DateTime, nullable=False),
        Column("note", Text),
        Column("campaign", String(64), nullable=False),
        Column("message_key", String(255), nullable=False),
        Column("created_at", DateTime, nullable=False),
    )
