"""Access control: principals, time-bound role grants, API tokens (hashes only), k-of-n approval
requests with their approvals, and approval policies that differ from the defaults.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "acc_principals",
        sa.Column("principal_id", sa.String(80), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("display_name", sa.String(128), nullable=False),
        sa.Column("created_at", _TZ, nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.Column("disabled_at", _TZ, nullable=True),
        sa.PrimaryKeyConstraint("principal_id", name="pk_acc_principals"),
    )
    op.create_table(
        "acc_approval_requests",
        sa.Column("request_id", sa.String(32), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("subject", sa.String(255), nullable=False),
        sa.Column("parameters", sa.LargeBinary(), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("requested_by", sa.String(128), nullable=False),
        sa.Column("created_at", _TZ, nullable=False),
        sa.Column("expires_at", _TZ, nullable=False),
        sa.Column("threshold", sa.Integer(), nullable=False),
        sa.Column("eligible_role", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("executed_at", _TZ, nullable=True),
        sa.Column("executed_by", sa.String(128), nullable=True),
        sa.Column("cancelled_at", _TZ, nullable=True),
        sa.Column("cancelled_by", sa.String(128), nullable=True),
        sa.PrimaryKeyConstraint("request_id", name="pk_acc_approval_requests"),
    )
    op.create_table(
        "acc_approvals",
        sa.Column("request_id", sa.String(32), nullable=False),
        sa.Column("principal_id", sa.String(80), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("approved_at", _TZ, nullable=False),
        sa.ForeignKeyConstraint(
            ["request_id"],
            ["acc_approval_requests.request_id"],
            name="fk_acc_approvals_request_id_acc_approval_requests",
        ),
        sa.ForeignKeyConstraint(
            ["principal_id"],
            ["acc_principals.principal_id"],
            name="fk_acc_approvals_principal_id_acc_principals",
        ),
        sa.PrimaryKeyConstraint("request_id", "principal_id", name="pk_acc_approvals"),
    )
    op.create_table(
        "acc_grants",
        sa.Column("grant_id", sa.String(32), nullable=False),
        sa.Column("principal_id", sa.String(80), nullable=False),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("not_before", _TZ, nullable=False),
        sa.Column("not_after", _TZ, nullable=False),
        sa.Column("granted_by", sa.String(128), nullable=False),
        sa.Column("granted_at", _TZ, nullable=False),
        sa.Column("approval_id", sa.String(32), nullable=True),
        sa.Column("revoked_at", _TZ, nullable=True),
        sa.Column("revoked_by", sa.String(128), nullable=True),
        sa.ForeignKeyConstraint(
            ["principal_id"],
            ["acc_principals.principal_id"],
            name="fk_acc_grants_principal_id_acc_principals",
        ),
        sa.ForeignKeyConstraint(
            ["approval_id"],
            ["acc_approval_requests.request_id"],
            name="fk_acc_grants_approval_id_acc_approval_requests",
        ),
        sa.PrimaryKeyConstraint("grant_id", name="pk_acc_grants"),
    )
    op.create_index("ix_acc_grants_principal_id", "acc_grants", ["principal_id"])
    op.create_table(
        "acc_tokens",
        sa.Column("token_id", sa.String(16), nullable=False),
        sa.Column("principal_id", sa.String(80), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("roles", sa.LargeBinary(), nullable=False),
        sa.Column("label", sa.String(128), nullable=False),
        sa.Column("created_at", _TZ, nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.Column("expires_at", _TZ, nullable=False),
        sa.Column("revoked_at", _TZ, nullable=True),
        sa.ForeignKeyConstraint(
            ["principal_id"],
            ["acc_principals.principal_id"],
            name="fk_acc_tokens_principal_id_acc_principals",
        ),
        sa.PrimaryKeyConstraint("token_id", name="pk_acc_tokens"),
    )
    op.create_index("ix_acc_tokens_principal_id", "acc_tokens", ["principal_id"])
    op.create_table(
        "acc_approval_policies",
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("threshold", sa.Integer(), nullable=False),
        sa.Column("eligible_role", sa.String(32), nullable=False),
        sa.Column("ttl_seconds", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", _TZ, nullable=False),
        sa.Column("approval_id", sa.String(32), nullable=False),
        sa.ForeignKeyConstraint(
            ["approval_id"],
            ["acc_approval_requests.request_id"],
            name="fk_acc_approval_policies_approval_id_acc_approval_requests",
        ),
        sa.PrimaryKeyConstraint("action", name="pk_acc_approval_policies"),
    )


def downgrade() -> None:
    op.drop_table("acc_approval_policies")
    op.drop_index("ix_acc_tokens_principal_id", table_name="acc_tokens")
    op.drop_table("acc_tokens")
    op.drop_index("ix_acc_grants_principal_id", table_name="acc_grants")
    op.drop_table("acc_grants")
    op.drop_table("acc_approvals")
    op.drop_table("acc_approval_requests")
    op.drop_table("acc_principals")
