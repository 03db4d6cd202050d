"""Hot-path statements on the DBAPI connection (fabtrust.store.dbapi), on SQLite and PostgreSQL:
they join the caller's transaction, what they write reads back through SQLAlchemy Core as Core
wrote it, and their errors are SQLAlchemy's."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import insert, select
from sqlalchemy.exc import DBAPIError, IntegrityError

from fabtrust.store import dbapi
from fabtrust.store.dbapi import Sql
from fabtrust.store.engine import Store
from fabtrust.store.tables import log_heads

_HEAD = Sql.portable(
    "INSERT INTO log_heads (origin, size, frontier, created_at)"
    " VALUES (:origin, :size, :frontier, :created_at)"
)
_ORIGINS = Sql.portable(
    "SELECT origin FROM log_heads WHERE origin IN (SELECT value FROM json_each(:origins)) ORDER BY origin",
    postgresql="SELECT origin FROM log_heads WHERE origin = ANY(:origins) ORDER BY origin",
)
_GROW = Sql.portable("UPDATE log_heads SET size = size + 1 WHERE origin = :origin")


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    s = Store.open(db_url)
    yield s
    s.close()


def _head(origin: str, created_at: object) -> dict[str, object]:
    return {"origin": origin, "size": 0, "frontier": b"\x00\x01", "created_at": created_at}


def test_rows_written_here_read_back_through_core_as_core_writes_them(store: Store) -> None:
    when = datetime(2026, 11, 21, 9, 30, 15, 123456, tzinfo=UTC)
    elsewhere = when.astimezone(timezone(timedelta(hours=5, minutes=30)))  # the same instant
    with store.write() as conn:
        dbapi.execute(conn, _HEAD, _head("raw", dbapi.db_time(conn, when)))
        dbapi.execute_many(
            conn,
            _HEAD,
            [_head(o, dbapi.db_time(conn, elsewhere)) for o in ("raw-2", "raw-3")],
        )
        conn.execute(insert(log_heads).values(origin="core", size=0, frontier=b"\x00\x01", created_at=when))
    with store.read() as conn:
        rows = conn.execute(select(log_heads.c.origin, log_heads.c.frontier, log_heads.c.created_at)).all()
        stored = conn.exec_driver_sql("SELECT DISTINCT created_at FROM log_heads").all()
    assert {r.origin for r in rows} == {"raw", "raw-2", "raw-3", "core"}
    assert all(bytes(r.frontier) == b"\x00\x01" for r in rows)
    assert all(r.created_at == when and r.created_at.tzinfo is not None for r in rows)
    assert len(set(stored)) == 1  # one instant, one stored form, whoever wrote it


def test_list_parameters_and_rowcount(store: Store) -> None:
    now = datetime.now(UTC)
    with store.write() as conn:
        for origin in ("a", "b", "c"):
            dbapi.execute(conn, _HEAD, _head(origin, dbapi.db_time(conn, now)))
        found = dbapi.execute(conn, _ORIGINS, {"origins": dbapi.db_list(conn, ["c", "a", "zz"])}).fetchall()
        assert [o for (o,) in found] == ["a", "c"]
        assert dbapi.execute(conn, _ORIGINS, {"origins": dbapi.db_list(conn, [])}).fetchall() == []
        assert dbapi.execute(conn, _GROW, {"origin": "b"}).rowcount == 1
        assert dbapi.execute(conn, _GROW, {"origin": "nobody"}).rowcount == 0


def test_a_duplicate_is_sqlalchemys_integrity_error_and_the_transaction_rolls_back(store: Store) -> None:
    now = datetime.now(UTC)
    with store.write() as conn:
        dbapi.execute(conn, _HEAD, _head("kept", dbapi.db_time(conn, now)))

    def duplicate() -> None:
        with store.write() as conn:
            dbapi.execute(conn, _HEAD, _head("lost", dbapi.db_time(conn, now)))
            rows = [_head(o, dbapi.db_time(conn, now)) for o in ("also-lost", "kept")]
            dbapi.execute_many(conn, _HEAD, rows)

    with pytest.raises(IntegrityError) as caught:
        duplicate()
    assert "parameters hidden" in str(caught.value)  # rows (records, notes) are not echoed
    with store.read() as conn:
        assert conn.execute(select(log_heads.c.origin)).scalars().all() == ["kept"]


def test_bad_sql_is_sqlalchemys_error_and_changes_nothing(store: Store) -> None:

    def bad() -> None:
        with store.write() as conn:
            dbapi.execute(conn, _HEAD, _head("lost", dbapi.db_time(conn, datetime.now(UTC))))
            dbapi.execute(conn, Sql.portable("SELECT nothing FROM no_such_table WHERE x = :x"), {"x": 1})

    with pytest.raises(DBAPIError) as caught:
        bad()
    assert "no_such_table" in str(caught.value)
    with store.read() as conn:
        assert conn.execute(select(log_heads.c.origin)).all() == []


def test_naive_times_and_percent_signs_are_refused() -> None:
    class _Conn:
        class dialect:  # stands in for SQLAlchemy's attribute
            name = "sqlite"

    with pytest.raises(ValueError, match="naive"):
        dbapi.db_time(_Conn(), datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="'%'"):
        Sql.portable("SELECT 1 WHERE 'a' LIKE '%'")


def test_named_parameters_become_psycopg_parameters_and_casts_stay() -> None:
    sql = Sql.portable("SELECT :a::text, x FROM t WHERE y = :b_c AND z = ANY(:list)")
    assert sql.sqlite == "SELECT :a::text, x FROM t WHERE y = :b_c AND z = ANY(:list)"
    assert sql.postgresql == "SELECT %(a)s::text, x FROM t WHERE y = %(b_c)s AND z = ANY(%(list)s)"
