"""Which database errors are retried: an unreachable or busy server is; a missing table, a missing
column or a missing database is not (retrying would only delay the message by ~40 s)."""

from __future__ import annotations

import socket
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import create_engine, text

from shopmail.db import is_transient_db_error


def _error(engine, sql: str) -> BaseException:
    with pytest.raises(Exception) as caught, engine.connect() as conn:
        pd.read_sql_query(text(sql), conn)
    return caught.value


def test_missing_table_and_column_are_not_transient(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'shop.sqlite'}")
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE customers (id INTEGER)")
    assert not is_transient_db_error(_error(engine, "SELECT * FROM orders"))
    assert not is_transient_db_error(_error(engine, "SELECT email FROM customers"))


@pytest.mark.integration
def test_an_unreachable_server_is_transient_a_missing_database_is_not() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    closed = create_engine(f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres")
    assert is_transient_db_error(_error(closed, "SELECT 1"))
    missing = create_engine("postgresql+psycopg://postgres@127.0.0.1:5432/no_such_shop_db")
    assert not is_transient_db_error(_error(missing, "SELECT 1"))
    maria = create_engine("mysql+pymysql://root@127.0.0.1:3306/mysql")
    assert not is_transient_db_error(_error(maria, "SELECT nope FROM user"))
