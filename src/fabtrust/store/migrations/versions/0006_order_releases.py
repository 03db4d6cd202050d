"""Production orders reference published firmware releases (``fw_releases``); the placeholder
release table of issue 4 (``prod_releases``) goes. The station records the measured boot of each
device it programs (``st_devices.firmware_digest``, ``firmware_version``, ``security_counter``).

A placeholder release has no signed, encrypted MCUboot image, so there is nothing to carry over: a
home that holds placeholder releases (and orders for them) is refused, with the reason, and left as
it is. Downgrading is refused as soon as an order names a firmware release.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from fabtrust.errors import Unavailable

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    placeholders = op.get_bind().execute(sa.text("SELECT count(*) FROM prod_releases")).scalar_one()
    if placeholders:
        raise Unavailable(
            f"this home holds {placeholders} placeholder firmware release(s) of fabtrust's production "
            "preview; orders now need published firmware releases (`fabtrust firmware release ...`): "
            "start a new home"
        )
    with op.batch_alter_table("prod_orders") as batch:
        batch.drop_constraint("fk_prod_orders_release_id_prod_releases", type_="foreignkey")
        batch.alter_column(
            "release_id", existing_type=sa.String(64), type_=sa.String(96), existing_nullable=False
        )
        batch.create_foreign_key(
            "fk_prod_orders_release_id_fw_releases", "fw_releases", ["release_id"], ["release_id"]
        )
    op.drop_table("prod_releases")
    with op.batch_alter_table("st_devices") as batch:
        batch.add_column(sa.Column("firmware_digest", sa.String(64), nullable=True))
        batch.add_column(sa.Column("firmware_version", sa.String(40), nullable=True))
        batch.add_column(sa.Column("security_counter", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    orders = op.get_bind().execute(sa.text("SELECT count(*) FROM prod_orders")).scalar_one()
    if orders:
        raise Unavailable(f"{orders} order(s) name firmware releases; the preview schema cannot hold them")
    with op.batch_alter_table("st_devices") as batch:
        batch.drop_column("security_counter")
        batch.drop_column("firmware_version")
        batch.drop_column("firmware_digest")
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
    with op.batch_alter_table("prod_orders") as batch:
        batch.drop_constraint("fk_prod_orders_release_id_fw_releases", type_="foreignkey")
        batch.alter_column(
            "release_id", existing_type=sa.String(96), type_=sa.String(64), existing_nullable=False
        )
        batch.create_foreign_key(
            "fk_prod_orders_release_id_prod_releases", "prod_releases", ["release_id"], ["release_id"]
        )
