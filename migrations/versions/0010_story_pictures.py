"""story pictures: a cover and chapter pictures kept with each story

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-27 22:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "story_pictures",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("story_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("caption", sa.Text(), nullable=False),
        sa.Column("prompt", sa.Text(), nullable=False),
        sa.Column("source", sa.String(length=10), nullable=False),
        sa.Column("mime", sa.String(length=20), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["story_id"], ["stories.id"],
                                name=op.f("fk_story_pictures_story_id_stories"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_story_pictures")),
        sa.UniqueConstraint("story_id", "position",
                            name=op.f("uq_story_pictures_story_id_position")),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("story_pictures", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_story_pictures_story_id"), ["story_id"],
                              unique=False)


def downgrade() -> None:
    with op.batch_alter_table("story_pictures", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_story_pictures_story_id"))
    op.drop_table("story_pictures")
