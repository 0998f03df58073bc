"""SQLite (or any SQLAlchemy async URL) storage of users, conversations, stories and settings."""

from engine.storage.db import Database

__all__ = ["Database"]
