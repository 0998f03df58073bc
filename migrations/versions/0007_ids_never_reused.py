"""ids never reused: SQLite tables whose ids leave the database (exports, citations, story
and favourite numbers, buttons) get AUTOINCREMENT, so a deleted row's id is never given to a
new one; stories may be stored as 'pending' while they are written

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-27 17:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("users", "personas", "conversations", "messages", "stories", "favourites",
          "saved_prompts", "custom_genres", "memory_files")
"""Parents before children; Doppel runs revisions with foreign keys off on SQLite, so
rebuilding a parent never cascades to its children."""


def _rebuild(autoincrement: bool) -> None:
    if op.get_bind().dialect.name != "sqlite":  # sequences elsewhere never reuse values
        return
    for table in TABLES:
        with op.batch_alter_table(table, recreate="always",
                                  table_kwargs={"sqlite_autoincrement": autoincrement}):
            pass


def upgrade() -> None:
    _rebuild(True)


def downgrade() -> None:
    _rebuild(False)
