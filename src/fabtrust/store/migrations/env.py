"""Alembic environment: always run against the connection fabtrust hands over (never a URL here)."""

from __future__ import annotations

from alembic import context

from fabtrust.store.tables import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
