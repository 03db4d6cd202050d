"""The store: one SQLAlchemy engine, write and read transactions, migrations on open.

SQLite (the embedded default) runs in WAL mode with ``synchronous=FULL`` so a committed
transaction survives power loss; write transactions start with ``BEGIN IMMEDIATE`` so that
concurrent writers queue on the database lock instead of failing on a lock upgrade. The commit
that finds ``WAL_CHECKPOINT_PAGES`` pages in the WAL copies them into the database file before it
returns (SQLite's automatic checkpoint): 300 rather than SQLite's default of 1,000 so that no one
commit pays for a large copy (at a station provisioning one device per call, a checkpoint of 1,000
pages added some 3 ms to one call in 45; one of 300 adds about 1 ms to one call in 14, with no loss
of throughput measured). PostgreSQL
(psycopg 3) is used as is; writers that need exclusion lock the row they change
(``SELECT ... FOR UPDATE``), which SQLite's whole-database write lock already gives.
"""

from __future__ import annotations

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
WAL_CHECKPOINT_PAGES = 300


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
    cur.execute(f"PRAGMA wal_autocheckpoint={WAL_CHECKPOINT_PAGES}")
    cur.close()


def _sqlite_begin(conn: Connection) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get(_WRITE) else "BEGIN")


class Store:
    """A database with fabtrust's schema at the current revision."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

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
        self.engine.dispose()
