"""Engine creation shared by the shop and state databases.

Every engine hides statement parameters in its errors (`hide_parameters=True`: a failed INSERT of
coupons must not print their codes), and a SQLite file Shopmail creates is readable by its owner
only (0600, in a 0700 folder it creates): it holds customers' personal data.

SQLite files run in WAL mode; their write-ahead log is kept small during long runs (`WAL_LIMIT_BYTES`:
a connection returned to the pool checkpoints and truncates a log grown past it), so a million-mail
ledger does not fill a small disk. `watch_database_file` makes an engine notice that its SQLite file
was deleted or replaced while in use (`DatabaseFileReplaced`) instead of writing into a file that is
gone (or having SQLite create an empty one).
"""

from __future__ import annotations

import logging
import os
import time
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # SQLAlchemy is imported where an engine is made: `shopmail --help` needs none
    from sqlalchemy import Engine

PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600
SQLITE_BUSY_TIMEOUT_S = 30.0  # how long a statement waits for another connection's lock on a SQLite file
WAL_LIMIT_BYTES = 16 * 1024 * 1024  # a write-ahead log past this is checkpointed and truncated
WAL_CHECK_EVERY_S = 1.0  # how often a returned connection looks at the log's size
CHECKPOINT_BUSY_MS = 2000  # how long a checkpoint waits for readers before trying again later
logger = logging.getLogger(__name__)


class DatabaseFileReplaced(RuntimeError):
    """The SQLite file an engine was using was deleted or replaced by another file."""


def private_dir(path: Path) -> Path:
    """Create `path` (and missing parents) readable by the owner only; an existing folder is left
    as it is."""
    missing = [p for p in (path, *path.parents) if not p.exists()]
    for folder in reversed(missing):
        folder.mkdir(mode=PRIVATE_DIR_MODE, exist_ok=True)
        os.chmod(folder, PRIVATE_DIR_MODE)  # mkdir's mode is filtered by the umask
    return path


def private_file(path: Path) -> Path:
    """Create an empty `path` with mode 0600 if it does not exist yet (SQLite then opens it and
    gives its -wal/-shm files the same mode); an existing file is left as it is."""
    private_dir(path.parent)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
    except FileExistsError:
        return path
    os.close(fd)
    os.chmod(path, PRIVATE_FILE_MODE)
    return path


def sqlite_file(url: str) -> Path | None:
    """The database file of a SQLite URL (None for other backends and in-memory databases)."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    if parsed.database.startswith("file:"):  # URI filenames: leave them to SQLite
        return None
    return Path(parsed.database)


@lru_cache(maxsize=16)
def get_engine(url: str) -> Engine:
    """A pooled engine per URL; SQLite files are created private (0600) and use WAL mode."""
    from sqlalchemy import create_engine, event
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        path = sqlite_file(url)
        if path is not None:
            private_file(path)
        engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S}, hide_parameters=True)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record) -> None:  # pragma: no cover - trivial
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute(f"PRAGMA journal_size_limit={WAL_LIMIT_BYTES}")
            cursor.close()

        if path is not None:
            _keep_wal_small(engine, path)
        return engine
    return create_engine(url, pool_pre_ping=True, hide_parameters=True)


def _keep_wal_small(engine: Engine, path: Path) -> None:
    """Checkpoint (TRUNCATE) the write-ahead log of `path` when a connection comes back to the pool and
    the log has grown past `WAL_LIMIT_BYTES`: SQLite's own automatic checkpoints never restart the log
    while other connections keep reading, so under a long run's steady readers it grew without end."""
    from sqlalchemy import event

    wal = path.with_name(path.name + "-wal")
    last = [0.0]

    @event.listens_for(engine, "checkin")
    def _checkpoint(dbapi_conn, _record) -> None:
        now = time.monotonic()
        if dbapi_conn is None or now - last[0] < WAL_CHECK_EVERY_S:
            return
        last[0] = now
        try:
            if wal.stat().st_size <= WAL_LIMIT_BYTES:
                return
        except OSError:
            return
        checkpoint_wal(dbapi_conn)


def checkpoint_wal(dbapi_conn) -> bool:
    """`PRAGMA wal_checkpoint(TRUNCATE)` on a raw SQLite connection, waiting at most
    `CHECKPOINT_BUSY_MS` for readers; True when the log was emptied (False: busy, tried again later)."""
    cursor = dbapi_conn.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout={CHECKPOINT_BUSY_MS}")
        busy, _log, _done = cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        return not busy
    except Exception:  # noqa: BLE001 - a checkpoint is housekeeping: never fail the caller's work
        logger.debug("WAL checkpoint failed", exc_info=True)
        return False
    finally:
        cursor.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
        cursor.close()


def _file_identity(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_dev, stat.st_ino


def watch_database_file(engine: Engine) -> None:
    """Make `engine` (a SQLite file) refuse to go on with a file deleted or replaced since the run
    started: every connection taken from its pool then raises `DatabaseFileReplaced` (and SQLite never
    creates an empty file in place of a deleted one). Call it when a run starts: a file replaced
    *between* runs (a restored backup) is then taken up afresh (the pool is emptied)."""
    path = sqlite_file(str(engine.url))
    if path is None:
        return
    state = getattr(engine, "_shopmail_file", None)
    current = _file_identity(path)
    if state is not None:
        if current is not None and current != state["identity"]:
            engine.dispose()  # a new run on a restored file: forget the old one
            state["identity"] = current
        return
    state = {"identity": current}
    engine._shopmail_file = state  # type: ignore[attr-defined]
    engine.dispose()  # connections opened before watching are not known to be to this file

    from sqlalchemy import event

    def gone(what: str) -> DatabaseFileReplaced:
        return DatabaseFileReplaced(f"the SQLite database file {path} was {what} while Shopmail was using it")

    @event.listens_for(engine, "do_connect")
    def _still_there(*_args) -> None:
        if state["identity"] is not None and not path.exists():
            raise gone("deleted")  # SQLite would create an empty file in its place

    @event.listens_for(engine, "checkout")
    def _same_file(_dbapi_conn, record, _proxy) -> None:
        now = _file_identity(path)
        if state["identity"] is None:
            state["identity"] = now
        elif now != state["identity"]:  # until the next run starts (`watch_database_file` again)
            record.invalidate()
            raise gone("deleted" if now is None else "replaced")


def safe_url(url: str) -> str:
    """The URL with its password hidden, for logs and reports: everything between `user:` and the
    last `@` goes, so a password with a raw (not %40-encoded) `@` or `/` does not leak either."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    userinfo, host = rest.rsplit("@", 1)
    user, colon, _password = userinfo.partition(":")
    return f"{scheme}://{user}{':***' if colon else ''}@{host}"


DEMO_SHOP_MARKER = "shopmail_demo_shop"  # the table `shopmail demo-data` writes into the shops it generates


def demo_marker_table() -> Any:
    """The demo shop's marker: one row saying when and how `shopmail demo-data` generated the shop."""
    from sqlalchemy import Column, Date, DateTime, Integer, MetaData, Table

    return Table(
        DEMO_SHOP_MARKER,
        MetaData(),
        Column("seed", Integer, nullable=False),
        Column("customers", Integer, nullable=False),
        Column("today", Date, nullable=False),
        Column("generated_at", DateTime, nullable=False),
    )


def is_demo_shop(url: str, data_dir: Path) -> bool:
    """True for the embedded demo shop: its own SQLite file in `data_dir`, or any database
    `shopmail demo-data` generated (its marker table). A shop database without the marker holds real
    customers: a send to it is a real send (`config.settings.is_real_send`). Unreachable: False."""
    from sqlalchemy.engine import make_url

    from config.settings import DEMO_SHOP_FILE

    parsed = make_url(url)
    path = sqlite_file(url)
    if path is not None and path.resolve() == (data_dir / DEMO_SHOP_FILE).resolve():
        return True
    if path is not None and not path.exists():
        return False  # connecting would create an empty file
    if parsed.get_backend_name() == "sqlite" and path is None:
        return False
    try:
        from sqlalchemy import inspect

        with get_engine(url).connect() as conn:
            return inspect(conn).has_table(DEMO_SHOP_MARKER)
    except Exception:  # noqa: BLE001 - unreachable or unreadable: not known to be the demo
        return False


KIT_CONFIG = (
    "shopmail_kit_config"  # a platform kit's settings in the shop DB (shopmail/shop/kits/*/views.sql)
)


def kit_demo_values(url: str) -> list[str]:
    """Settings of a platform kit installed in the shop DB that still hold the kit's example shop
    (`store_url` = https://shop.example/: every product link and picture of a mail would point there),
    as `shopmail_kit_config.<name>`; [] without a kit, or when the database cannot be read."""
    from sqlalchemy import inspect, text

    path = sqlite_file(url)
    if path is not None and not path.exists():
        return []
    try:
        with get_engine(url).connect() as conn:
            if not inspect(conn).has_table(KIT_CONFIG):
                return []
            rows = conn.execute(text(f"SELECT name FROM {KIT_CONFIG} WHERE value LIKE '%://shop.example%'"))
            return [f"{KIT_CONFIG}.{name}" for (name,) in rows]
    except Exception:  # noqa: BLE001 - unreadable: the run itself will say why
        return []


_TRANSIENT_MARKERS = (
    "connection refused",
    "could not connect",
    "can't connect",
    "timeout",
    "timed out",
    "server closed the connection",
    "gone away",
    "lost connection",
    "connection reset",
    "too many connections",
    "deadlock",
    "database is locked",
    "the database system is starting up",
    "the database system is shutting down",
)


def is_transient_db_error(exc: BaseException) -> bool:
    """Worth retrying: the server was unreachable, busy or dropped the connection. Missing tables or
    columns, bad credentials or a missing SQLite file are not: retrying only delays the message."""
    from sqlalchemy.exc import DBAPIError

    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, DBAPIError) and current.connection_invalidated:
            return True
        text = str(current).lower()
        if any(marker in text for marker in _TRANSIENT_MARKERS):
            return True
        current = current.__cause__ or current.__context__
    return False
