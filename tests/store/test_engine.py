"""The store: migrations on open, the schema guard, URL handling, on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, text

from fabtrust.errors import InvalidInput, Unavailable
from fabtrust.store.engine import WAL_CHECKPOINT_PAGES, Store, head_revision, parse_db_url, redact, sqlite_url

TABLES = {"alembic_version", "log_heads", "log_pieces", "log_tiles", "log_checkpoints"}


def test_open_applies_every_migration(db_url: str) -> None:
    store = Store.open(db_url)
    try:
        assert store.schema_revision() == head_revision()
        assert set(inspect(store.engine).get_table_names()) >= TABLES
        store.ping()
    finally:
        store.close()
    again = Store.open(db_url)  # idempotent: a second open migrates nothing and keeps the data
    assert again.schema_revision() == head_revision()
    again.close()


def test_a_newer_schema_is_refused_and_left_alone(db_url: str) -> None:
    store = Store.open(db_url)
    with store.write() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    store.close()
    with pytest.raises(Unavailable, match="newer than this fabtrust"):
        Store.open(db_url)
    engine = create_engine(parse_db_url(db_url))
    with engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == "9999"
    engine.dispose()


def test_migrate_false_refuses_an_old_schema(tmp_path: Path) -> None:
    with pytest.raises(Unavailable, match="behind"):
        Store.open(sqlite_url(tmp_path / "empty.db"), migrate=False)


def test_sqlite_is_durable_wal(tmp_path: Path) -> None:
    store = Store.open(sqlite_url(tmp_path / "w.db"))
    with store.read() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == WAL_CHECKPOINT_PAGES == 300
    store.close()


def test_a_failed_write_transaction_rolls_back(db_url: str) -> None:
    store = Store.open(db_url)

    def insert_then_fail() -> None:
        with store.write() as conn:
            conn.execute(
                text(
                    "INSERT INTO log_heads (origin, size, frontier, created_at) "
                    "VALUES ('x/y', 0, :f, CURRENT_TIMESTAMP)"
                ),
                {"f": b""},
            )
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        insert_then_fail()
    with store.read() as conn:
        assert conn.execute(text("SELECT count(*) FROM log_heads")).scalar() == 0
    store.close()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://u@h/db", "unsupported database"),
        ("postgresql+asyncpg://u@h/db", "unsupported database"),
        ("not a url", "malformed"),
        ("", "malformed"),
    ],
    ids=["mysql", "asyncpg", "garbage", "empty"],
)
def test_unsupported_urls_are_refused(url: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        Store.open(url)


def test_plain_postgresql_url_means_psycopg_and_passwords_are_redacted() -> None:
    parsed = parse_db_url("postgresql://alice:s3cret@db.example:5432/fab")
    assert parsed.drivername == "postgresql+psycopg"
    assert "s3cret" not in redact(parsed)


def test_an_unreachable_database_is_unavailable_without_the_password() -> None:
    with pytest.raises(Unavailable) as err:
        Store.open("postgresql+psycopg://alice:s3cret@127.0.0.1:1/none")
    assert "s3cret" not in err.value.message


def test_a_file_that_is_not_a_database_is_unavailable(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.db"
    bogus.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(Unavailable):
        Store.open(sqlite_url(bogus))
    assert bogus.read_bytes() == b"this is not sqlite" * 100
