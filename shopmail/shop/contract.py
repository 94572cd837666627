"""The shop data contract, column by column: what Shopmail reads, what is required, what is optional
(and the default used when a shop's view simply omits it), the allowed values and what NULL means.

`extract` uses it (a missing optional column gets its default, a missing required column is an error
naming it), `check_shop` reports against it, and the tables of docs/connect/data-contract.md are
rendered from it
(`contract_markdown`; `tests/test_contract.py` keeps both in step).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

ORDER_STATUSES = ("received", "paid", "accepted", "shipped", "delivered", "cancelled")
LANGUAGES = ("ru", "en")  # languages the templates exist in; other tags fall back to the default
COUPON_KINDS = ("coupon", "bonus")
GENDERS = ("f", "m")


@dataclass(frozen=True)
class ContractColumn:
    """One column of a dataset. `default` is what an omitted optional column reads as."""

    name: str
    type: str  # integer | decimal | text | boolean | timestamp | date
    required: bool
    meaning: str
    null: str = "not allowed"  # what a NULL value means
    allowed: tuple[str, ...] = ()
    default: Any = None


@dataclass(frozen=True)
class Dataset:
    """One table or view of the contract. An optional dataset may be missing: only the campaigns that
    need it are skipped."""

    name: str
    meaning: str
    optional: bool
    columns: tuple[ContractColumn, ...]

    def column(self, name: str) -> ContractColumn:
        return next(c for c in self.columns if c.name == name)

    @property
    def required_columns(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns if c.required)

    @property
    def optional_columns(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns if not c.required)


def _req(
    name: str, type_: str, meaning: str, null: str = "not allowed", allowed: tuple = ()
) -> ContractColumn:
    return ContractColumn(name, type_, True, meaning, null, allowed)


def _opt(
    name: str, type_: str, meaning: str, null: str, default: Any = None, allowed: tuple = ()
) -> ContractColumn:
    return ContractColumn(name, type_, False, meaning, null, allowed, default)


DATASETS: dict[str, Dataset] = {
    d.name: d
    for d in (
        Dataset(
            "customers",
            "One row per customer account.",
            False,
            (
                _req("id", "integer", "customer id"),
                _req("email", "text", "address (trimmed)", "no mail; reported, row set aside"),
                _opt("first_name", "text", "first name", "greeting without a name"),
                _opt("last_name", "text", "last name", "unknown"),
                _opt("gender", "text", "gender", "unknown", allowed=GENDERS),
                _opt("birth_date", "date", "date of birth", "no birthday mail"),
                _opt("city", "text", "city (customer's time zone)", "shop time zone"),
                _req("registered_at", "timestamp", "registration time (UTC)", "unknown; reported"),
                _req("marketing_consent", "boolean", "may get marketing mail", "no consent"),
                _opt("discount_card", "text", "loyalty card number", "no card"),
                _opt(
                    "language",
                    "text",
                    "language tag ('ru', 'ru-RU', 'en_GB': normalised to the primary tag)",
                    "the default language",
                    allowed=LANGUAGES,
                ),
            ),
        ),
        Dataset(
            "products",
            "The catalogue.",
            False,
            (
                _req("id", "integer", "product id"),
                _req("name", "text", "product name", "row set aside"),
                _opt("brand", "text", "brand", "unknown"),
                _opt("category", "text", "category (recommendations, accessories)", "uncategorised"),
                _req("price", "decimal", "price in the shop currency, > 0", "row set aside"),
                _opt("url", "text", "product page", "shop URL + SHOPMAIL_PRODUCT_PATH"),
                _opt("image_url", "text", "product picture", "no picture"),
                _opt("in_stock", "boolean", "can be ordered now", "in stock", default=True),
                _opt("overstock", "boolean", "to be sold off", "no", default=False),
                _req("created_at", "timestamp", "when it was added (new arrivals)"),
            ),
        ),
        Dataset(
            "orders",
            "One row per order.",
            False,
            (
                _req("id", "integer", "order id"),
                _req("customer_id", "integer", "the customer (customers.id)"),
                _req("status", "text", "current status", "row set aside", ORDER_STATUSES),
                _req("created_at", "timestamp", "when it was placed (UTC)", "not read; all NULL fails"),
                _req("total", "decimal", "order total, >= 0"),
                _opt("currency", "text", "ISO 4217 code of the total", "SHOPMAIL_CURRENCY"),
                _opt("tracking_number", "text", "parcel tracking number", "no tracking link"),
                _opt(
                    "carrier",
                    "text",
                    "delivery service (key of SHOPMAIL_TRACKING_URLS)",
                    "the campaign's tracking_url",
                ),
            ),
        ),
        Dataset(
            "order_status_history",
            "One row per status an order reached, with its time (read with orders).",
            False,
            (
                _req("order_id", "integer", "the order"),
                _req("status", "text", "the status reached", allowed=ORDER_STATUSES),
                _req("changed_at", "timestamp", "when (UTC)"),
            ),
        ),
        Dataset(
            "order_items",
            "Order lines.",
            False,
            (
                _req("order_id", "integer", "the order"),
                _req("product_id", "integer", "the product"),
                _req("qty", "integer", "quantity, >= 1"),
                _req("price", "decimal", "unit price paid, >= 0"),
            ),
        ),
        Dataset(
            "carts",
            "Open shopping carts (abandoned cart mail).",
            True,
            (
                _req("id", "integer", "cart id"),
                _req("customer_id", "integer", "the customer"),
                _req("updated_at", "timestamp", "last change (UTC)", "row set aside"),
            ),
        ),
        Dataset(
            "cart_items",
            "Lines of the open carts.",
            True,
            (
                _req("cart_id", "integer", "the cart"),
                _req("product_id", "integer", "the product"),
                _req("qty", "integer", "quantity, >= 1"),
            ),
        ),
        Dataset(
            "coupons",
            "Coupons and bonus points (coupon expiry mail; personal coupons are inserted here).",
            True,
            (
                _req("code", "text", "the code"),
                _opt("customer_id", "integer", "owner", "a coupon for everybody (never mailed)"),
                _opt("kind", "text", "coupon or bonus points", "coupon", "coupon", COUPON_KINDS),
                _req("value", "decimal", "money or percent, >= 0 (0: e.g. free shipping)"),
                _opt("percent", "boolean", "value is a percent", "money", default=False),
                _opt("expires_at", "timestamp", "expiry (UTC)", "never expires"),
                _opt("used", "boolean", "already redeemed", "not used", default=False),
                _opt("note", "text", "what it is for", "none"),
            ),
        ),
        Dataset(
            "password_resets",
            "Password-reset requests (password reminder mail).",
            True,
            (
                _req("id", "integer", "request id"),
                _req("customer_id", "integer", "the customer"),
                _req("requested_at", "timestamp", "when (UTC)"),
                _req("reset_url", "text", "the secret link (its secret in `token=`)", "row set aside"),
                _req("expires_at", "timestamp", "link expiry (UTC)", "row set aside"),
            ),
        ),
    )
}
READ_WITH = {"orders": ("order_status_history",)}  # datasets read together with another


class ContractError(LookupError):
    """The shop's tables do not meet the data contract (a required column or dataset is missing)."""


class DatasetMissing(ContractError):
    """A dataset (table or view) the campaign needs is not in the shop database."""

    def __init__(self, datasets: list[str]) -> None:
        self.datasets = list(datasets)
        names = ", ".join(f"`{d}`" for d in self.datasets)
        super().__init__(
            f"the shop database has no {names} table or view (data contract: "
            "docs/connect/data-contract.md); the campaigns that need it are skipped: add the view or "
            "disable them "
            "(SHOPMAIL_DISABLED_CAMPAIGNS); `shopmail check-shop` lists what can run"
        )


class DatasetUnreadable(ContractError):
    """A table or view of the shop DB fails when read (a view's function raising on a zero date, two
    collations the server will not compare, a text column compared with a time): names the dataset,
    the columns that fail on their own (`columns`: column -> the server's message) and the error."""

    def __init__(self, dataset: str, columns: dict[str, str], error: str) -> None:
        self.dataset, self.columns, self.error = dataset, dict(columns), error
        where = (
            "; ".join(f"column `{c}` fails: {message}" for c, message in self.columns.items())
            if self.columns
            else f"the query fails: {error}"
        )
        super().__init__(
            f"the shop's `{dataset}` cannot be read: {where}. Fix the view (a platform kit: install its "
            "views.sql of this Shopmail version); `shopmail check-shop` checks every view"
        )


def tables_needed(datasets: tuple[str, ...] | list[str]) -> list[str]:
    """The contract tables behind `datasets` (orders also read `order_status_history`)."""
    found: list[str] = []
    for name in datasets:
        for table in (name, *READ_WITH.get(name, ())):
            if table not in found:
                found.append(table)
    return found


def missing_required(dataset: str, present: set[str]) -> list[str]:
    """Required columns of `dataset` absent from `present` (lower-cased names compared)."""
    have = {c.lower() for c in present}
    return [c for c in DATASETS[dataset].required_columns if c not in have]


def column_error(dataset: str, columns: list[str]) -> ContractError:
    """The error for required columns missing from a dataset."""
    names = ", ".join(f"`{dataset}.{c}`" for c in columns)
    error = ContractError(
        f"the shop's `{dataset}` has no required column {names} (data contract: "
        f"docs/connect/data-contract.md); add it to the view, e.g. `... AS {columns[0]}`; "
        "`shopmail check-shop` lists every gap"
    )
    error.dataset, error.columns = dataset, list(columns)  # type: ignore[attr-defined]
    return error


def contract_markdown() -> str:
    """The contract tables of docs/connect/data-contract.md: one per dataset."""
    parts = []
    for d in DATASETS.values():
        title = f"#### `{d.name}`" + (" (optional dataset)" if d.optional else "")
        lines = [
            title,
            "",
            d.meaning,
            "",
            "| column | type | required | meaning | allowed | NULL means | default |",
        ]
        lines.append("|---|---|---|---|---|---|---|")
        for c in d.columns:
            allowed = ", ".join(f"`{v}`" for v in c.allowed) or "–"
            default = "–" if c.required else ("NULL" if c.default is None else f"`{c.default}`")
            required = "required" if c.required else "optional"
            lines.append(
                f"| `{c.name}` | {c.type} | {required} | {c.meaning} | {allowed} | {c.null} | {default} |"
            )
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"
