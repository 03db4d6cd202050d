"""Migration 0006 on both engines: orders reference published firmware releases, the placeholder
release table is gone, the station's device table holds the measured boot; the migrated schema is
the one the tables declare; a home holding placeholder releases is refused and left as it was."""

from __future__ import annotations

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text

from fabtrust.errors import Unavailable
from fabtrust.store import tables
from fabtrust.store.engine import Store, _alembic_config, parse_db_url

TABLES = ("prod_orders", "prod_releases", "st_devices")


def _migrate(url: str, revision: str) -> None:
    engine = create_engine(parse_db_url(url))
    try:
        with engine.begin() as conn:
            command.upgrade(_alembic_config(conn), revision)
    finally:
        engine.dispose()


def test_the_migrated_schema_is_the_declared_one(db_url: str) -> None:
    store = Store.open(db_url)
    try:
        with store.engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), tables.metadata)
            names = set(inspect(conn).get_table_names())
            keys = {
                (fk["name"], fk["referred_table"]) for fk in inspect(conn).get_foreign_keys("prod_orders")
            }
    finally:
        store.close()
    assert [d for d in diff if any(t in repr(d) for t in TABLES)] == []
    assert "prod_releases" not in names
    assert ("fk_prod_orders_release_id_fw_releases", "fw_releases") in keys


def test_a_home_with_placeholder_releases_is_refused_and_left_alone(db_url: str) -> None:
    _migrate(db_url, "0005")
    engine = create_engine(parse_db_url(db_url))
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO pki_cas (ca_id, kind, profile, cert_der, subject, serial, not_before,"
                " not_after, base_url, status, crl_number, created_at) VALUES ('product-widget',"
                " 'product-ca', 'product-ca', :b, 'CN=w', '1', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP,"
                " 'https://x.example', 'active', 0, CURRENT_TIMESTAMP)"
            ),
            {"b": b"der"},
        )
        conn.execute(
            text(
                "INSERT INTO prod_products (name, product_ca, description, vendors, created_at) "
                "VALUES ('widget', 'product-widget', 'w', '[]', CURRENT_TIMESTAMP)"
            )
        )
        conn.execute(
            text(
                "INSERT INTO prod_releases (release_id, product, version, image, image_sha256, envelope,"
                " created_at) VALUES ('widget-1.0.0', 'widget', '1.0.0', :b, :h, :b, CURRENT_TIMESTAMP)"
            ),
            {"b": b"placeholder", "h": "0" * 64},
        )
    with pytest.raises(Unavailable, match="1 placeholder firmware release"):
        Store.open(db_url)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == "0005"
        assert conn.execute(text("SELECT count(*) FROM prod_releases")).scalar() == 1
    engine.dispose()
