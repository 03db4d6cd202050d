"""Signed updates: the TUF repository's metadata versions, targets, key locations and role expiries.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "tuf_metadata",
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False, autoincrement=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("expires_at", _TZ, nullable=False),
        sa.Column("created_at", _TZ, nullable=False),
        sa.PrimaryKeyConstraint("role", "version", name="pk_tuf_metadata"),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "tuf_targets",
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("length", sa.BigInteger(), nullable=False),
        sa.Column("blob", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", _TZ, nullable=False),
        sa.PrimaryKeyConstraint("name", "sha256", name="pk_tuf_targets"),
    )
    op.create_table(
        "tuf_keys",
        sa.Column("keyid", sa.String(64), nullable=False),
        sa.Column("key_uri", sa.String(512), nullable=False),
        sa.Column("created_at", _TZ, nullable=False),
        sa.PrimaryKeyConstraint("keyid", name="pk_tuf_keys"),
    )
    op.create_table(
        "tuf_roles",
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("expiry_seconds", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", _TZ, nullable=False),
        sa.PrimaryKeyConstraint("role", name="pk_tuf_roles"),
    )


def downgrade() -> None:
    op.drop_table("tuf_roles")
    op.drop_table("tuf_keys")
    op.drop_table("tuf_targets")
    op.drop_table("tuf_metadata")
