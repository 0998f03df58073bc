"""memory context: the mail a chunk's mail answers, searchable in the full-text index

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-06 23:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _fts(columns: list[str]) -> None:
    """(Re)create the FTS5 table over ``columns`` of memory_chunks, its triggers and its
    rows (existing chunks are indexed again)."""
    op.execute("DROP TRIGGER IF EXISTS memory_chunks_fts_delete")
    op.execute("DROP TRIGGER IF EXISTS memory_chunks_fts_insert")
    op.execute("DROP TABLE IF EXISTS memory_fts")
    cols = ", ".join(columns)
    new = ", ".join(f"new.{c}" for c in columns)
    op.execute(
        f"CREATE VIRTUAL TABLE memory_fts USING fts5("
        f"chunk_id UNINDEXED, persona UNINDEXED, {cols}, tokenize='porter unicode61')"
    )
    op.execute(
        f"CREATE TRIGGER memory_chunks_fts_insert AFTER INSERT ON memory_chunks BEGIN "
        f"INSERT INTO memory_fts (rowid, chunk_id, persona, {cols}) "
        f"VALUES (new.rowid, new.id, new.persona, {new}); END"
    )
    op.execute(
        "CREATE TRIGGER memory_chunks_fts_delete AFTER DELETE ON memory_chunks BEGIN "
        "DELETE FROM memory_fts WHERE rowid = old.rowid; END"
    )
    op.execute(
        f"INSERT INTO memory_fts (rowid, chunk_id, persona, {cols}) "
        f"SELECT rowid, id, persona, {cols} FROM memory_chunks"
    )


def upgrade() -> None:
    with op.batch_alter_table("memory_chunks", schema=None) as batch_op:
        batch_op.add_column(sa.Column("context", sa.Text(), server_default="", nullable=False))
    if op.get_bind().dialect.name == "sqlite":
        _fts(["subject", "text", "context"])
    # Chunks made before this revision have no context and no window vectors: their files
    # count as not read yet, so the next ingest (at start, for a persona's own sources)
    # reads them again.
    op.execute("UPDATE memory_files SET sha256 = '', reading_sha256 = ''")


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        _fts(["subject", "text"])
    with op.batch_alter_table("memory_chunks", schema=None) as batch_op:
        batch_op.drop_column("context")
