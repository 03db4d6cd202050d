"""The store: migrations on open, the schema guard, URL handling, on SQLite and PostgreSQL."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, text

from fabtrust.errors import InvalidInput, Unavailable
from fabtrust.store import engine
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


# -- the background WAL copier (SQLite) --------------------------------------------------------------


def _add_heads(store: Store, first: int, count: int, size: int = 64) -> None:
    for n in range(first, first + count):
        with store.write() as conn:
            conn.execute(
                text(
                    "INSERT INTO log_heads (origin, size, frontier, created_at) "
                    "VALUES (:o, 0, :f, CURRENT_TIMESTAMP)"
                ),
                {"o": f"copier/{n}", "f": bytes(size)},
            )


def _rows_in_database_file(path: Path) -> int:
    """Rows the database file itself holds, ignoring the WAL (``immutable``: no WAL, no locks)."""
    conn = sqlite3.connect(f"file:{path}?immutable=1", uri=True)
    try:
        return int(conn.execute("SELECT count(*) FROM log_heads").fetchone()[0])
    finally:
        conn.close()


def _until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within 10 s")
        time.sleep(0.01)


def _copier_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "fabtrust-wal-checkpoint"]


def test_committed_pages_reach_the_database_file_without_a_commit_copying_them(tmp_path: Path) -> None:
    path = tmp_path / "copier.db"
    store = Store.open(sqlite_url(path))
    before = len(_copier_threads())
    _add_heads(store, 0, 5)  # a few pages: far below the commits' own checkpoint threshold
    _until(lambda: _rows_in_database_file(path) == 5, "the background copier checkpoints the WAL")
    assert len(_copier_threads()) == before + 1
    store.close()
    assert len(_copier_threads()) == before  # close waits for the thread
    _add_heads(Store.open(sqlite_url(path)), 5, 1)  # and a reopened store has its own


def test_the_wal_stays_short_under_a_continuous_writer(tmp_path: Path) -> None:
    path = tmp_path / "busy.db"
    store = Store.open(sqlite_url(path))
    _add_heads(store, 0, 400, size=8192)  # some 1,200 pages committed back to back
    wal = Path(f"{path}-wal").stat().st_size
    assert wal <= (WAL_CHECKPOINT_PAGES + 100) * (4096 + 24) + 32  # started over, not grown
    with store.read() as conn:
        assert conn.execute(text("SELECT count(*) FROM log_heads")).scalar() == 400
    store.close()


def test_an_idle_copier_lets_its_thread_go_and_the_next_commit_brings_it_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine, "CHECKPOINT_IDLE", 0.05)
    path = tmp_path / "idle.db"
    store = Store.open(sqlite_url(path))
    copier = store._checkpointer
    assert copier is not None
    _add_heads(store, 0, 1)
    _until(lambda: not copier.running, "the idle copier ends")
    _add_heads(store, 1, 2)
    _until(lambda: _rows_in_database_file(path) == 3, "a new copier checkpoints the new commits")
    store.close()
    assert not copier.running
    _add_heads(store, 3, 1)  # a write after close still commits; no thread is started for it
    assert not copier.running
