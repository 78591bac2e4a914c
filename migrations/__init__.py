"""Alembic migrations for the audit database (see pipeline.db.upgrade)."""
