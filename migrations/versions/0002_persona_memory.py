"""persona memory

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 02:14:19
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "memory_files",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("persona", sa.String(length=100), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("documents", sa.Integer(), nullable=False),
        sa.Column("chunks", sa.Integer(), nullable=False),
        sa.Column("ingested_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_memory_files")),
        sa.UniqueConstraint("persona", "path", name=op.f("uq_memory_files_persona_path")),
    )
    op.create_table(
        "persona_styles",
        sa.Column("persona", sa.String(length=100), nullable=False),
        sa.Column("profile", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("persona", name=op.f("pk_persona_styles")),
    )
    op.create_table(
        "memory_chunks",
        sa.Column("id", sa.String(length=80), nullable=False),
        sa.Column("persona", sa.String(length=100), nullable=False),
        sa.Column("file_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("content_hash", sa.String(length=40), nullable=False),
        sa.Column("minhash", sa.LargeBinary(), nullable=True),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("message_id", sa.String(length=300), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("sender", sa.String(length=300), nullable=False),
        sa.Column("recipients", sa.Text(), nullable=False),
        sa.Column("thread", sa.Text(), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "kind IN ('own', 'context', 'document')", name=op.f("ck_memory_chunks_kind")
        ),
        sa.ForeignKeyConstraint(
            ["file_id"],
            ["memory_files.id"],
            name=op.f("fk_memory_chunks_file_id_memory_files"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_memory_chunks")),
    )
    with op.batch_alter_table("memory_chunks", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_memory_chunks_file_id"), ["file_id"], unique=False)
        batch_op.create_index(
            "ix_memory_chunks_persona_hash", ["persona", "content_hash"], unique=False
        )
    # Full-text index for the lexical half of hybrid retrieval (SQLite FTS5), kept in step
    # by triggers, which also fire for rows removed by ON DELETE CASCADE.
    if op.get_bind().dialect.name != "sqlite":
        return
    op.execute(
        "CREATE VIRTUAL TABLE memory_fts USING fts5("
        "chunk_id UNINDEXED, persona UNINDEXED, subject, text, tokenize='porter unicode61')"
    )
    op.execute(
        "CREATE TRIGGER memory_chunks_fts_insert AFTER INSERT ON memory_chunks BEGIN "
        "INSERT INTO memory_fts (rowid, chunk_id, persona, subject, text) "
        "VALUES (new.rowid, new.id, new.persona, new.subject, new.text); END"
    )
    op.execute(
        "CREATE TRIGGER memory_chunks_fts_delete AFTER DELETE ON memory_chunks BEGIN "
        "DELETE FROM memory_fts WHERE rowid = old.rowid; END"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS memory_chunks_fts_delete")
    op.execute("DROP TRIGGER IF EXISTS memory_chunks_fts_insert")
    op.execute("DROP TABLE IF EXISTS memory_fts")
    with op.batch_alter_table("memory_chunks", schema=None) as batch_op:
        batch_op.drop_index("ix_memory_chunks_persona_hash")
        batch_op.drop_index(batch_op.f("ix_memory_chunks_file_id"))

    op.drop_table("memory_chunks")
    op.drop_table("persona_styles")
    op.drop_table("memory_files")
