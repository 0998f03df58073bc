"""Alembic migrations. Create a revision with ``doppel db revision -m "what changed"``."""
