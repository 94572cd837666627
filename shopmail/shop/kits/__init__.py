"""Platform kits: SQL that maps a shop platform's own tables onto the shop data contract.

Each kit folder holds `README.md` (what it maps, what the platform cannot give, how to install),
`views.sql` (a config table, helper functions and one view per contract table), `coupon_bridge.sql`
(Shopmail's coupon outbox and the trigger that turns each row into the platform's own coupon) and
`settings.env` (the Shopmail settings the platform needs: its page URLs, tracking, coupon table). Install
with the mysql client (`mysql shop < views.sql`), which understands the `DELIMITER` lines, or with
`apply_kit` (what the tests do). Part of the `shop` room: imports SQLAlchemy only.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine

KITS_DIR = Path(__file__).resolve().parent
KITS = ("opencart3", "woocommerce_hpos", "bitrix")
KIT_FILES = ("views.sql", "coupon_bridge.sql")


def kit_path(kit: str, name: str) -> Path:
    if kit not in KITS:
        raise ValueError(f"unknown platform kit '{kit}'; known: {', '.join(KITS)}")
    return KITS_DIR / kit / name


def kit_settings(kit: str) -> dict[str, str]:
    """The kit's `settings.env` as {SHOPMAIL_* variable: value} (comments and blank lines left out)."""
    found = {}
    for line in kit_path(kit, "settings.env").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            found[name.strip()] = value.strip()
    return found


def sql_statements(script: str) -> list[str]:
    """Statements of a mysql-client script: `DELIMITER xx` lines switch the terminator (for triggers and
    functions); `--` comment lines are dropped."""
    statements, current, delimiter = [], [], ";"
    for line in script.splitlines():
        stripped = line.strip()
        if stripped.upper().startswith("DELIMITER "):
            delimiter = stripped.split(None, 1)[1]
            continue
        if not current and (not stripped or stripped.startswith("--")):
            continue
        if stripped.endswith(delimiter):
            current.append(line.rstrip()[: -len(delimiter)])
            statement = "\n".join(current).strip()
            if statement:
                statements.append(statement)
            current = []
        else:
            current.append(line)
    if "\n".join(current).strip():
        statements.append("\n".join(current).strip())
    return statements


def apply_kit(engine: Engine, kit: str, files: tuple[str, ...] = KIT_FILES) -> int:
    """Run the kit's SQL files against the shop DB (MariaDB/MySQL); returns the statements run. The
    connection is discarded afterwards: the kit's `SET NAMES` must not reach the pool's next user (a
    pooled connection in the kit's collation once hid every collation error of the kits' views)."""
    count = 0
    raw = engine.raw_connection()
    try:
        with raw.cursor() as cursor:
            for name in files:
                for statement in sql_statements(kit_path(kit, name).read_text(encoding="utf-8")):
                    cursor.execute(statement)
                    count += 1
        raw.commit()
    finally:
        raw.invalidate()
        raw.close()
    return count
