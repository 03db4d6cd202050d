"""Production: products, releases, stations, orders and packages (OEM); reconciliation and the
device registry (OEM); identity, packages and provisioned devices (station).

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "prod_products",
        sa.Column("name", sa.String(40), nullable=False),
        sa.Column("product_ca", sa.String(64), nullable=False),
        sa.Column("description", sa.String(255), nullable=False),
        sa.Column("vendors", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", _TZ, nullable=False),
        sa.ForeignKeyConstraint(
            ["product_ca"], ["pki_cas.ca_id"], name="fk_prod_products_product_ca_pki_cas"
        ),
        sa.PrimaryKeyConstraint("name", name="pk_prod_products"),
    )
    op.create_table(
        "prod_releases",
        sa.Column("release_id", sa.String(64), nullable=False),
        sa.Column("product", sa.String(40), nullable=False),
        sa.Column("version", sa.String(40), nullable=False),
        sa.Column("image", sa.LargeBinary(), nullable=False),
        sa.Column("image_sha256", sa.String(64), nullable=False),
        sa.Column("envelope", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", _TZ, nullable=False),
        sa.ForeignKeyConstraint(
            ["product"], ["prod_products.name"], name="fk_prod_releases_product_prod_products"
        ),
        sa.PrimaryKeyConstraint("release_id", name="pk_prod_releases"),
        sa.UniqueConstraint("product", "version", name="uq_prod_releases_product"),
    )
    op.create_table(
        "prod_stations",
        sa.Column("station_id", sa.String(64), nullable=False),
        sa.Column("identity_cert", sa.LargeBinary(), nullable=False),
        sa.Column("sealing_key", sa.LargeBinary(), nullable=False),
        sa.Column("log_vkey", sa.String(255), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("enrolled_at", _TZ, nullable=False),
        sa.PrimaryKeyConstraint("station_id", name="pk_prod_stations"),
    )
    op.create_table(
        "prod_orders",
        sa.Column("order_id", sa.String(64), nullable=False),
        sa.Column("product", sa.String(40), nullable=False),
        sa.Column("release_id", sa.String(64), nullable=False),
        sa.Column("stations", sa.LargeBinary(), nullable=False),
        sa.Column("quota", sa.Integer(), nullable=False),
        sa.Column("not_before", _TZ, nullable=False),
        sa.Column("not_after", _TZ, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.Column("approved_by", sa.String(128), nullable=True),
        sa.Column("created_at", _TZ, nullable=False),
        sa.ForeignKeyConstraint(
            ["product"], ["prod_products.name"], name="fk_prod_orders_product_prod_products"
        ),
        sa.ForeignKeyConstraint(
            ["release_id"], ["prod_releases.release_id"], name="fk_prod_orders_release_id_prod_releases"
        ),
        sa.PrimaryKeyConstraint("order_id", name="pk_prod_orders"),
    )
    op.create_table(
        "prod_packages",
        sa.Column("package_id", sa.String(64), nullable=False),
        sa.Column("order_id", sa.String(64), nullable=False),
        sa.Column("station_id", sa.String(64), nullable=False),
        sa.Column("issuing_ca", sa.String(64), nullable=False),
        sa.Column("quota", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("created_at", _TZ, nullable=False),
        sa.ForeignKeyConstraint(
            ["issuing_ca"], ["pki_cas.ca_id"], name="fk_prod_packages_issuing_ca_pki_cas"
        ),
        sa.ForeignKeyConstraint(
            ["station_id"], ["prod_stations.station_id"], name="fk_prod_packages_station_id_prod_stations"
        ),
        sa.ForeignKeyConstraint(
            ["order_id"], ["prod_orders.order_id"], name="fk_prod_packages_order_id_prod_orders"
        ),
        sa.PrimaryKeyConstraint("package_id", name="pk_prod_packages"),
        sa.UniqueConstraint("order_id", "station_id", name="uq_prod_packages_order_id"),
    )
    op.create_table(
        "rec_checkpoints",
        sa.Column("station_id", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("root", sa.LargeBinary(), nullable=False),
        sa.Column("note", sa.LargeBinary(), nullable=False),
        sa.Column("updated_at", _TZ, nullable=False),
        sa.ForeignKeyConstraint(
            ["station_id"], ["prod_stations.station_id"], name="fk_rec_checkpoints_station_id_prod_stations"
        ),
        sa.PrimaryKeyConstraint("station_id", name="pk_rec_checkpoints"),
    )
    op.create_table(
        "rec_records",
        sa.Column("station_id", sa.String(64), nullable=False),
        sa.Column("order_id", sa.String(64), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("chip_uid", sa.String(64), nullable=False),
        sa.Column("device_serial", sa.String(64), nullable=False),
        sa.Column("verdict", sa.String(16), nullable=False),
        sa.Column("record", sa.LargeBinary(), nullable=False),
        sa.Column("imported_at", _TZ, nullable=False),
        sa.ForeignKeyConstraint(
            ["station_id"], ["prod_stations.station_id"], name="fk_rec_records_station_id_prod_stations"
        ),
        sa.PrimaryKeyConstraint("station_id", "order_id", "seq", name="pk_rec_records"),
    )
    op.create_table(
        "fleet_devices",
        sa.Column("device_serial", sa.String(64), nullable=False),
        sa.Column("chip_uid", sa.String(64), nullable=False),
        sa.Column("key_id", sa.String(64), nullable=False),
        sa.Column("order_id", sa.String(64), nullable=False),
        sa.Column("station_id", sa.String(64), nullable=False),
        sa.Column("cert_der", sa.LargeBinary(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("registered_at", _TZ, nullable=False),
        sa.PrimaryKeyConstraint("device_serial", name="pk_fleet_devices"),
        sa.UniqueConstraint("key_id", name="uq_fleet_devices_key_id"),
        sa.UniqueConstraint("chip_uid", name="uq_fleet_devices_chip_uid"),
    )
    op.create_table(
        "rec_alerts",
        sa.Column("alert_id", sa.Integer(), nullable=False, autoincrement=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("station_id", sa.String(64), nullable=True),
        sa.Column("order_id", sa.String(64), nullable=True),
        sa.Column("chip_uid", sa.String(64), nullable=True),
        sa.Column("device_serial", sa.String(64), nullable=True),
        sa.Column("message", sa.String(512), nullable=False),
        sa.Column("created_at", _TZ, nullable=False),
        sa.PrimaryKeyConstraint("alert_id", name="pk_rec_alerts"),
    )
    op.create_table(
        "st_identity",
        sa.Column("station_id", sa.String(64), nullable=False),
        sa.Column("identity_key", sa.String(512), nullable=False),
        sa.Column("sealing_key", sa.String(512), nullable=False),
        sa.Column("identity_cert", sa.LargeBinary(), nullable=True),
        sa.Column("oem_signer", sa.LargeBinary(), nullable=True),
        sa.Column("created_at", _TZ, nullable=False),
        sa.PrimaryKeyConstraint("station_id", name="pk_st_identity"),
    )
    op.create_table(
        "st_issuing_keys",
        sa.Column("order_id", sa.String(64), nullable=False),
        sa.Column("key_uri", sa.String(512), nullable=False),
        sa.Column("created_at", _TZ, nullable=False),
        sa.PrimaryKeyConstraint("order_id", name="pk_st_issuing_keys"),
    )
    op.create_table(
        "st_packages",
        sa.Column("order_id", sa.String(64), nullable=False),
        sa.Column("package_id", sa.String(64), nullable=False),
        sa.Column("issuing_ca", sa.String(64), nullable=False),
        sa.Column("quota", sa.Integer(), nullable=False),
        sa.Column("used", sa.Integer(), nullable=False),
        sa.Column("not_before", _TZ, nullable=False),
        sa.Column("not_after", _TZ, nullable=False),
        sa.Column("sealed", sa.LargeBinary(), nullable=False),
        sa.Column("loaded_at", _TZ, nullable=False),
        sa.PrimaryKeyConstraint("order_id", name="pk_st_packages"),
        sa.UniqueConstraint("package_id", name="uq_st_packages_package_id"),
    )
    op.create_table(
        "st_devices",
        sa.Column("chip_uid", sa.String(64), nullable=False),
        sa.Column("order_id", sa.String(64), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("device_serial", sa.String(64), nullable=False),
        sa.Column("log_index", sa.BigInteger(), nullable=False),
        sa.Column("record", sa.LargeBinary(), nullable=False),
        sa.Column("receipt", sa.LargeBinary(), nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("created_at", _TZ, nullable=False),
        sa.ForeignKeyConstraint(
            ["order_id"], ["st_packages.order_id"], name="fk_st_devices_order_id_st_packages"
        ),
        sa.PrimaryKeyConstraint("chip_uid", name="pk_st_devices"),
        sa.UniqueConstraint("device_serial", name="uq_st_devices_device_serial"),
        sa.UniqueConstraint("order_id", "seq", name="uq_st_devices_order_id"),
    )
    op.create_index("ix_rec_records_chip_uid", "rec_records", ["chip_uid"], unique=False)
    op.create_index("ix_fleet_devices_order_id", "fleet_devices", ["order_id"], unique=False)


def downgrade() -> None:
    op.drop_table("st_devices")
    op.drop_table("st_packages")
    op.drop_table("st_issuing_keys")
    op.drop_table("st_identity")
    op.drop_table("rec_alerts")
    op.drop_table("fleet_devices")
    op.drop_table("rec_records")
    op.drop_table("rec_checkpoints")
    op.drop_table("prod_packages")
    op.drop_table("prod_orders")
    op.drop_table("prod_stations")
    op.drop_table("prod_releases")
    op.drop_table("prod_products")
