"""The few statements a station runs for every batch of devices, as SQL text run on the DBAPI
connection of the caller's SQLAlchemy connection, inside its transaction.

SQLAlchemy Core spends 15-60 µs on each statement (the compiled cache lookup, bind and result
processing, the execution context); the DBAPI call itself takes 1-15 µs. A station provisioning
one device per call makes eleven statements, so Core cost more than its fsync. The statements
here are the hot path only (quota counter, duplicate checks, certificate, record and log rows);
everything else in fabtrust uses Core. They run on the same connection and in the same
transaction as the Core statements around them, so what commits or rolls back together is
unchanged, and their errors are SQLAlchemy's (``IntegrityError``, ``OperationalError``) as from
Core.

SQL is written once with ``:name`` parameters (SQLite's named style), turned into ``%(name)s``
for psycopg; where the dialects differ (row locks, list parameters) a statement gives both.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError

_NAMED = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")


@dataclass(frozen=True, slots=True)
class Sql:
    """One statement's text on SQLite and on PostgreSQL (psycopg's ``%(name)s`` parameters)."""

    sqlite: str
    postgresql: str

    @classmethod
    def portable(cls, text: str, *, postgresql: str | None = None) -> Sql:
        """``text`` on both engines (its ``:name`` parameters rewritten for psycopg), or on SQLite
        only with ``postgresql`` given in ``:name`` style too."""
        if "%" in text or (postgresql is not None and "%" in postgresql):
            raise ValueError("statement text must not contain '%'")
        return cls(text, _NAMED.sub(r"%(\1)s", text if postgresql is None else postgresql))

    def text(self, conn: Connection) -> str:
        return self.postgresql if conn.dialect.name == "postgresql" else self.sqlite


def db_time(conn: Connection, value: datetime) -> datetime | str:
    """A timestamp as the store's ``UtcDateTime`` columns keep it: UTC in SQLAlchemy's SQLite
    text form (what its DATETIME binds), an aware datetime for PostgreSQL."""
    if value.tzinfo is None:
        raise ValueError("naive datetime stored")
    if conn.dialect.name == "postgresql":
        return value
    return _sqlite_text(value)


@functools.lru_cache(maxsize=256)  # a batch binds the same few times on every row
def _sqlite_text(value: datetime) -> str:
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


def db_list(conn: Connection, values: Sequence[str]) -> str | list[str]:
    """A list parameter: a JSON array for SQLite (``IN (SELECT value FROM json_each(:p))``), a
    list for PostgreSQL (``= ANY(:p)``)."""
    if conn.dialect.name == "postgresql":
        return list(values)
    return json.dumps(list(values))


def _wrapped(conn: Connection, sql: str, params: Any, exc: Exception) -> Exception:
    dbapi_error = conn.dialect.loaded_dbapi.Error
    if isinstance(exc, dbapi_error):
        return DBAPIError.instance(sql, params, exc, dbapi_error, hide_parameters=True, dialect=conn.dialect)
    return exc


def execute(conn: Connection, statement: Sql, params: Mapping[str, Any]) -> Any:
    """Run one statement in ``conn``'s transaction; the DBAPI cursor (``fetchone``, ``fetchall``,
    ``rowcount``)."""
    sql = statement.text(conn)
    try:
        return conn.connection.driver_connection.execute(sql, params)  # type: ignore[union-attr]
    except Exception as exc:
        raise _wrapped(conn, sql, params, exc) from exc


def execute_many(conn: Connection, statement: Sql, rows: Sequence[Mapping[str, Any]]) -> None:
    """Run one statement for each of ``rows`` in ``conn``'s transaction."""
    sql = statement.text(conn)
    try:
        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.executemany(sql, rows)
        finally:
            cursor.close()
    except Exception as exc:
        raise _wrapped(conn, sql, rows, exc) from exc
