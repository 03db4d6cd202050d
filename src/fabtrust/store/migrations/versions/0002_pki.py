"""Device PKI: CAs, certificates, CRLs, EST enrollment tokens.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "pki_cas",
        sa.Column("ca_id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("parent_id", sa.String(64), nullable=True),
        sa.Column("profile", sa.String(40), nullable=False),
        sa.Column("key_uri", sa.String(512), nullable=True),
        sa.Column("cert_der", sa.LargeBinary(), nullable=False),
        sa.Column("subject", sa.String(512), nullable=False),
        sa.Column("serial", sa.String(40), nullable=False),
        sa.Column("not_before", _TZ, nullable=False),
        sa.Column("not_after", _TZ, nullable=False),
        sa.Column("base_url", sa.String(255), nullable=False),
        sa.Column("device_domain", sa.String(253), nullable=True),
        sa.Column("order_id", sa.String(64), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("revoked_at", _TZ, nullable=True),
        sa.Column("revocation_reason", sa.String(32), nullable=True),
        sa.Column("crl_number", sa.BigInteger(), nullable=False),
        sa.Column("created_at", _TZ, nullable=False),
        sa.PrimaryKeyConstraint("ca_id", name="pk_pki_cas"),
        sa.ForeignKeyConstraint(["parent_id"], ["pki_cas.ca_id"], name="fk_pki_cas_parent_id_pki_cas"),
    )
    op.create_table(
        "pki_certs",
        sa.Column("ca_id", sa.String(64), nullable=False),
        sa.Column("serial", sa.String(40), nullable=False),
        sa.Column("profile", sa.String(40), nullable=False),
        sa.Column("subject", sa.String(512), nullable=False),
        sa.Column("key_id", sa.String(64), nullable=False),
        sa.Column("device_serial", sa.String(64), nullable=True),
        sa.Column("order_id", sa.String(64), nullable=True),
        sa.Column("not_before", _TZ, nullable=False),
        sa.Column("not_after", _TZ, nullable=False),
        sa.Column("cert_der", sa.LargeBinary(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("revoked_at", _TZ, nullable=True),
        sa.Column("revocation_reason", sa.String(32), nullable=True),
        sa.Column("created_at", _TZ, nullable=False),
        sa.PrimaryKeyConstraint("ca_id", "serial", name="pk_pki_certs"),
        sa.ForeignKeyConstraint(["ca_id"], ["pki_cas.ca_id"], name="fk_pki_certs_ca_id_pki_cas"),
        sa.UniqueConstraint("device_serial", name="uq_pki_certs_device_serial"),
    )
    op.create_index("ix_pki_certs_key_id", "pki_certs", ["key_id"])
    op.create_index("ix_pki_certs_order_id", "pki_certs", ["order_id"])
    op.create_table(
        "pki_crls",
        sa.Column("ca_id", sa.String(64), nullable=False),
        sa.Column("number", sa.BigInteger(), nullable=False, autoincrement=False),
        sa.Column("base_number", sa.BigInteger(), nullable=True),
        sa.Column("this_update", _TZ, nullable=False),
        sa.Column("next_update", _TZ, nullable=False),
        sa.Column("der", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("ca_id", "number", name="pk_pki_crls"),
        sa.ForeignKeyConstraint(["ca_id"], ["pki_cas.ca_id"], name="fk_pki_crls_ca_id_pki_cas"),
    )
    op.create_table(
        "pki_est_tokens",
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("ca_id", sa.String(64), nullable=False),
        sa.Column("profile", sa.String(40), nullable=False),
        sa.Column("order_id", sa.String(64), nullable=True),
        sa.Column("label", sa.String(128), nullable=False),
        sa.Column("expires_at", _TZ, nullable=False),
        sa.Column("used_at", _TZ, nullable=True),
        sa.Column("created_at", _TZ, nullable=False),
        sa.PrimaryKeyConstraint("token_hash", name="pk_pki_est_tokens"),
        sa.ForeignKeyConstraint(["ca_id"], ["pki_cas.ca_id"], name="fk_pki_est_tokens_ca_id_pki_cas"),
    )


def downgrade() -> None:
    op.drop_table("pki_est_tokens")
    op.drop_table("pki_crls")
    op.drop_index("ix_pki_certs_order_id", "pki_certs")
    op.drop_index("ix_pki_certs_key_id", "pki_certs")
    op.drop_table("pki_certs")
    op.drop_table("pki_cas")
