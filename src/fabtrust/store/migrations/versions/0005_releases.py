"""Firmware releases: release signers, k-of-n policies, per-product class keys, releases with their
approvals, SBOM and published image.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "fw_signers",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("key_uri", sa.String(512), nullable=False),
        sa.Column("key_id", sa.String(64), nullable=False),
        sa.Column("public_key", sa.LargeBinary(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", _TZ, nullable=False),
        sa.Column("revoked_at", _TZ, nullable=True),
        sa.PrimaryKeyConstraint("name", name="pk_fw_signers"),
        sa.UniqueConstraint("key_id", name="uq_fw_signers_key_id"),
    )
    op.create_table(
        "fw_policies",
        sa.Column("product", sa.String(40), nullable=False),
        sa.Column("threshold", sa.Integer(), nullable=False),
        sa.Column("updated_at", _TZ, nullable=False),
        sa.ForeignKeyConstraint(
            ["product"], ["prod_products.name"], name="fk_fw_policies_product_prod_products"
        ),
        sa.PrimaryKeyConstraint("product", name="pk_fw_policies"),
    )
    op.create_table(
        "fw_class_keys",
        sa.Column("product", sa.String(40), nullable=False),
        sa.Column("public_key", sa.LargeBinary(), nullable=False),
        sa.Column("sealed_private", sa.LargeBinary(), nullable=False),
        sa.Column("wrap_key_uri", sa.String(512), nullable=False),
        sa.Column("created_at", _TZ, nullable=False),
        sa.ForeignKeyConstraint(
            ["product"], ["prod_products.name"], name="fk_fw_class_keys_product_prod_products"
        ),
        sa.PrimaryKeyConstraint("product", name="pk_fw_class_keys"),
    )
    op.create_table(
        "fw_releases",
        sa.Column("release_id", sa.String(96), nullable=False),
        sa.Column("product", sa.String(40), nullable=False),
        sa.Column("version", sa.String(40), nullable=False),
        sa.Column("security_counter", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("statement", sa.LargeBinary(), nullable=False),
        sa.Column("approvals", sa.LargeBinary(), nullable=True),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("sbom", sa.LargeBinary(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=True),
        sa.Column("image", sa.LargeBinary(), nullable=True),
        sa.Column("image_sha256", sa.String(64), nullable=True),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.Column("created_at", _TZ, nullable=False),
        sa.Column("published_by", sa.String(128), nullable=True),
        sa.Column("published_at", _TZ, nullable=True),
        sa.ForeignKeyConstraint(
            ["product"], ["prod_products.name"], name="fk_fw_releases_product_prod_products"
        ),
        sa.PrimaryKeyConstraint("release_id", name="pk_fw_releases"),
        sa.UniqueConstraint("product", "seq", name="uq_fw_releases_product"),
    )


def downgrade() -> None:
    op.drop_table("fw_releases")
    op.drop_table("fw_class_keys")
    op.drop_table("fw_policies")
    op.drop_table("fw_signers")
