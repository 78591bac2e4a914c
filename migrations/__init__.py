"""Alembic migrations for the audit database (see pipeline.audit.db.upgrade)."""
