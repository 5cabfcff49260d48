"""Alembic migrations; `storage.migrate.upgrade` runs them."""
