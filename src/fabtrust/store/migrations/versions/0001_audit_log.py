"""Audit log: heads, entry bundles, tiles, checkpoints.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "log_heads",
        sa.Column("log_id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("origin", sa.String(255), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("frontier", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("log_id", name="pk_log_heads"),
        sa.UniqueConstraint("origin", name="uq_log_heads_origin"),
    )
    op.create_table(
        "log_bundles",
        sa.Column("log_id", sa.Integer(), nullable=False),
        sa.Column("idx", sa.BigInteger(), nullable=False, autoincrement=False),
        sa.Column("entries", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(["log_id"], ["log_heads.log_id"], name="fk_log_bundles_log_id_log_heads"),
        sa.PrimaryKeyConstraint("log_id", "idx", name="pk_log_bundles"),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "log_tiles",
        sa.Column("log_id", sa.Integer(), nullable=False),
        sa.Column("level", sa.SmallInteger(), nullable=False, autoincrement=False),
        sa.Column("idx", sa.BigInteger(), nullable=False, autoincrement=False),
        sa.Column("hashes", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(["log_id"], ["log_heads.log_id"], name="fk_log_tiles_log_id_log_heads"),
        sa.PrimaryKeyConstraint("log_id", "level", "idx", name="pk_log_tiles"),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "log_checkpoints",
        sa.Column("log_id", sa.Integer(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False, autoincrement=False),
        sa.Column("root", sa.LargeBinary(), nullable=False),
        sa.Column("note", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["log_id"], ["log_heads.log_id"], name="fk_log_checkpoints_log_id_log_heads"),
        sa.PrimaryKeyConstraint("log_id", "size", name="pk_log_checkpoints"),
        sqlite_with_rowid=False,
    )


def downgrade() -> None:
    op.drop_table("log_checkpoints")
    op.drop_table("log_tiles")
    op.drop_table("log_bundles")
    op.drop_table("log_heads")
