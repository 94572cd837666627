"""Engine creation shared by the shop and state databases.

Every engine hides statement parameters in its errors (`hide_parameters=True`: a failed INSERT of
coupons must not print their codes), and a SQLite file Shopmail creates is readable by its owner
only (0600, in a 0700 folder it creates): it holds customers' personal data.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url

PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600


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
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    if parsed.database.startswith("file:"):  # URI filenames: leave them to SQLite
        return None
    return Path(parsed.database)


@lru_cache(maxsize=16)
def get_engine(url: str) -> Engine:
    """A pooled engine per URL; SQLite files are created private (0600) and use WAL mode."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        path = sqlite_file(url)
        if path is not None:
            private_file(path)
        engine = create_engine(url, connect_args={"timeout": 30}, hide_parameters=True)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record) -> None:  # pragma: no cover - trivial
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        return engine
    return create_engine(url, pool_pre_ping=True, hide_parameters=True)


def safe_url(url: str) -> str:
    """The URL with its password hidden, for logs and reports: everything between `user:` and the
    last `@` goes, so a password with a raw (not %40-encoded) `@` or `/` does not leak either."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    userinfo, host = rest.rsplit("@", 1)
    user, colon, _password = userinfo.partition(":")
    return f"{scheme}://{user}{':***' if colon else ''}@{host}"


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
