"""Migration 0007 on both engines creates exactly the access tables that tables.py declares, and
downgrading removes them again."""

from __future__ import annotations

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from fabtrust.store import tables
from fabtrust.store.engine import Store, _alembic_config, head_revision, parse_db_url

ACCESS_TABLES = {
    "acc_principals",
    "acc_grants",
    "acc_tokens",
    "acc_approval_requests",
    "acc_approvals",
    "acc_approval_policies",
}


def test_the_migrated_schema_is_the_declared_one(db_url: str) -> None:
    store = Store.open(db_url)
    try:
        assert store.schema_revision() == head_revision()
        with store.engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            diff = [d for d in compare_metadata(context, tables.metadata) if "acc_" in repr(d)]
            names = set(inspect(conn).get_table_names())
    finally:
        store.close()
    assert diff == []
    assert names >= ACCESS_TABLES
    assert {t for t in tables.metadata.tables if t.startswith("acc_")} == ACCESS_TABLES


def test_downgrade_to_0006_drops_the_access_tables(db_url: str) -> None:
    Store.open(db_url).close()
    engine = create_engine(parse_db_url(db_url))
    try:
        with engine.begin() as conn:
            command.downgrade(_alembic_config(conn), "0006")
        with engine.connect() as conn:
            names = set(inspect(conn).get_table_names())
    finally:
        engine.dispose()
    assert not names & ACCESS_TABLES
    assert "fw_releases" in names
