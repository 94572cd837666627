"""The shop data contract: the canonical tables Shopmail reads (SQLAlchemy Core).

All timestamps are naive UTC. A real shop maps its own schema onto these tables
with SQL views of the same names and columns.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
)

from shopmail.shop.contract import ORDER_STATUSES  # the documented contract, per column

__all__ = ["ORDER_STATUSES", "metadata"]
metadata = MetaData()

customers = Table(
    "customers",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("email", String(254)),
    Column("first_name", String(100)),
    Column("last_name", String(100)),
    Column("gender", String(1)),  # 'f', 'm' or NULL
    Column("birth_date", Date),
    Column("city", String(100)),
    Column("registered_at", DateTime, nullable=False),
    Column("marketing_consent", Boolean, nullable=False, default=False),
    Column("discount_card", String(32)),
    Column("language", String(5)),
)

products = Table(
    "products",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("name", String(200), nullable=False),
    Column("brand", String(100)),
    Column("category", String(100)),
    Column("price", Numeric(12, 2), nullable=False),
    Column("url", String(500), nullable=False),
    Column("image_url", String(500)),
    Column("in_stock", Boolean, nullable=False, default=True),
    Column("overstock", Boolean, nullable=False, default=False),
    Column("created_at", DateTime, nullable=False),
)

orders = Table(
    "orders",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("customer_id", Integer, ForeignKey("customers.id"), nullable=False),
    Column("status", String(20), nullable=False),
    Column("created_at", DateTime, nullable=False),
    Column("total", Numeric(12, 2), nullable=False),
    Column("currency", String(3), nullable=False, default="RUB"),
    Column("tracking_number", String(64)),
    Column("carrier", String(40)),  # optional: key of SHOPMAIL_TRACKING_URLS
    Index("ix_orders_customer", "customer_id"),
    Index("ix_orders_created", "created_at"),
)

order_status_history = Table(
    "order_status_history",
    metadata,
    Column("order_id", Integer, ForeignKey("orders.id"), primary_key=True),
    Column("status", String(20), primary_key=True),
    Column("changed_at", DateTime, nullable=False),
    Index("ix_status_history_changed", "status", "changed_at"),
)

order_items = Table(
    "order_items",
    metadata,
    Column("order_id", Integer, ForeignKey("orders.id"), primary_key=True),
    Column("product_id", Integer, ForeignKey("products.id"), primary_key=True),
    Column("qty", Integer, nullable=False),
    Column("price", Numeric(12, 2), nullable=False),
)

carts = Table(
    "carts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("customer_id", Integer, ForeignKey("customers.id"), nullable=False),
    Column("updated_at", DateTime, nullable=False),
)

cart_items = Table(
    "cart_items",
    metadata,
    Column("cart_id", Integer, ForeignKey("carts.id"), primary_key=True),
    Column("product_id", Integer, ForeignKey("products.id"), primary_key=True),
    Column("qty", Integer, nullable=False),
)

coupons = Table(
    "coupons",
    metadata,
    Column("code", String(40), primary_key=True),
    Column("customer_id", Integer, ForeignKey("customers.id")),
    Column("kind", String(10), nullable=False, default="coupon"),  # coupon | bonus
    Column("value", Numeric(12, 2), nullable=False),
    Column("percent", Boolean, nullable=False, default=False),
    Column("expires_at", DateTime),
    Column("used", Boolean, nullable=False, default=False),
    Column("note", Text),
)

# Password-reset requests the shop issued (service mail `password_reminder`). `reset_url` is a
# secret: carry it in a `token=` query parameter (run reports redact `token=` values).
password_resets = Table(
    "password_resets",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("customer_id", Integer, ForeignKey("customers.id"), nullable=False),
    Column("requested_at", DateTime, nullable=False),
    Column("reset_url", String(1000), nullable=False),
    Column("expires_at", DateTime, nullable=False),
    Index("ix_password_resets_requested", "requested_at"),
)

CONTRACT_TABLES = tuple(metadata.tables)
