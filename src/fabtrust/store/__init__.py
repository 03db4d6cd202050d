"""Persistence: SQLAlchemy 2 engine and tables, Alembic migrations. SQLite by default, PostgreSQL shared."""
