"""The store: one SQLAlchemy engine, write and read transactions, migrations on open.

SQLite (the embedded default) runs in WAL mode with ``synchronous=FULL`` so a committed
transaction survives power loss; write transactions start with ``BEGIN IMMEDIATE`` so that
concurrent writers queue on the database lock instead of failing on a lock upgrade. Committed pages
move from the WAL into the database file on a thread of the store's own (a passive checkpoint, which
never blocks a writer), not in whichever commit crosses SQLite's threshold: that commit would copy
some 1,000 pages before returning, a few milliseconds of latency every few dozen calls. PostgreSQL
(psycopg 3) is used as is; writers that need exclusion lock the row they change
(``SELECT ... FOR UPDATE``), which SQLite's whole-database write lock already gives.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, SQLAlchemyError

from fabtrust.errors import InvalidInput, Unavailable

_MIGRATIONS = Path(__file__).with_name("migrations")
_WRITE = "fabtrust_write"
#: How often the checkpointer looks for newly committed pages in the WAL (seconds).
CHECKPOINT_INTERVAL = 0.25
#: SQLite's automatic checkpoint in the committing connection, kept only as a backstop should the
#: checkpointer fall behind (pages: 64 MiB of WAL).
_AUTOCHECKPOINT_PAGES = 16_384


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def parse_db_url(url: str) -> URL:
    """Accept ``sqlite:///path`` and ``postgresql+psycopg://...``; refuse everything else."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise InvalidInput("database URL is malformed") from None
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.drivername not in ("sqlite", "sqlite+pysqlite", "postgresql+psycopg"):
        raise InvalidInput(
            f"unsupported database {parsed.drivername!r} (use sqlite:///path or postgresql+psycopg://...)"
        )
    return parsed


def redact(url: URL) -> str:
    """The URL without its password, for messages and config files."""
    return url.render_as_string(hide_password=True)


def _alembic_config(connection: Connection) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str:
    """The newest schema revision this code knows."""
    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    head = ScriptDirectory.from_config(cfg).get_current_head()
    assert head is not None
    return head


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy's "begin" event decide how transactions start (see _sqlite_begin).
    dbapi_connection.isolation_level = None
    cur = dbapi_connection.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=60000")
    cur.execute(f"PRAGMA wal_autocheckpoint={_AUTOCHECKPOINT_PAGES}")
    cur.close()


def _sqlite_begin(conn: Connection) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get(_WRITE) else "BEGIN")


class _Checkpointer:
    """Keeps a SQLite database's WAL short from a thread of its own: ``PRAGMA
    wal_checkpoint(PASSIVE)`` on a connection of its own, every ``CHECKPOINT_INTERVAL`` in which
    something was committed. The sqlite3 module lets go of the GIL while SQLite copies pages, so the
    process's writers go on meanwhile; a passive checkpoint takes no lock a writer waits for."""

    def __init__(self, database: Path) -> None:
        self._database = database
        self._wal = Path(f"{database}-wal")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fabtrust-wal-checkpoint", daemon=True)
        self._thread.start()

    def _wal_changed(self) -> int:
        """The WAL's modification time (ns), 0 if there is none."""
        try:
            return os.stat(self._wal).st_mtime_ns
        except FileNotFoundError:
            return 0

    def _run(self) -> None:
        conn: sqlite3.Connection | None = None
        done = self._wal_changed()
        try:
            while not self._stop.wait(CHECKPOINT_INTERVAL):
                changed = self._wal_changed()
                if changed in (0, done):
                    continue
                if conn is None:
                    conn = sqlite3.connect(self._database, isolation_level=None, check_same_thread=False)
                    conn.execute("PRAGMA synchronous=FULL")  # the database file is synced after copying
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
                done = changed
        except sqlite3.Error:
            pass  # the committing connections' own automatic checkpoint takes over
        finally:
            if conn is not None:
                conn.close()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


class Store:
    """A database with fabtrust's schema at the current revision."""

    def __init__(self, engine: Engine, checkpointer: _Checkpointer | None = None) -> None:
        self.engine = engine
        self._checkpointer = checkpointer

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @classmethod
    def open(cls, url: str, *, migrate: bool = True) -> Store:
        """Connect, refuse a schema newer than this code, and apply pending migrations."""
        parsed = parse_db_url(url)
        if parsed.get_backend_name() == "sqlite":
            engine = create_engine(parsed)
            event.listen(engine, "connect", _sqlite_pragmas)
            event.listen(engine, "begin", _sqlite_begin)
        else:
            engine = create_engine(parsed, pool_pre_ping=True, pool_size=8, max_overflow=8)
        store = cls(engine)
        try:
            store.check_schema(migrate=migrate)
        except BaseException:
            engine.dispose()
            raise
        if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
            store._checkpointer = _Checkpointer(Path(parsed.database))
        return store

    def check_schema(self, *, migrate: bool) -> None:
        try:
            with self.engine.connect() as conn:
                current = MigrationContext.configure(conn).get_current_revision()
                conn.rollback()
                script = ScriptDirectory.from_config(_alembic_config(conn))
            head = script.get_current_head()
            if current is not None:
                try:
                    script.get_revision(current)
                except CommandError:
                    raise Unavailable(
                        f"database schema {current!r} is newer than this fabtrust knows (head {head!r}); "
                        "upgrade fabtrust before using this database"
                    ) from None
            if current != head:
                if not migrate:
                    raise Unavailable(f"database schema {current!r} is behind {head!r}; run `fabtrust init`")
                with self.engine.connect().execution_options(**{_WRITE: True}) as conn, conn.begin():
                    command.upgrade(_alembic_config(conn), "head")
        except DBAPIError as exc:
            raise Unavailable(f"cannot use the database at {redact(self.engine.url)}") from exc

    def schema_revision(self) -> str | None:
        with self.engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """One write transaction: committed when the block ends, rolled back on error."""
        with self.engine.connect().execution_options(**{_WRITE: True}) as conn, conn.begin():
            yield conn

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """One consistent read snapshot."""
        with self.engine.connect() as conn, conn.begin():
            yield conn

    def ping(self) -> None:
        try:
            with self.engine.connect() as conn:
                conn.exec_driver_sql("SELECT 1")
        except SQLAlchemyError as exc:
            raise Unavailable("database is not reachable") from exc

    def close(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.close()
            self._checkpointer = None
        self.engine.dispose()
