"""resumable ingest: a file being read records how far it got, so that a stopped ingest
of a large mailbox resumes where it stopped

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-27 18:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("memory_files", schema=None) as batch_op:
        batch_op.add_column(sa.Column("reading_sha256", sa.String(length=64), server_default="",
                                      nullable=False))
        batch_op.add_column(sa.Column("docs_read", sa.Integer(), server_default="0",
                                      nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("memory_files", schema=None) as batch_op:
        batch_op.drop_column("docs_read")
        batch_op.drop_column("reading_sha256")
