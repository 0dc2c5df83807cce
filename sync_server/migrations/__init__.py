"""Alembic migrations for `sync_server.tables`; run them with `sync-server migrate`."""
