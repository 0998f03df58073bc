"""stories

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 02:56:38
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "story_suggestions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("genre", sa.String(length=50), nullable=False),
        sa.Column("language", sa.String(length=10), nullable=False),
        sa.Column("age_group", sa.String(length=10), nullable=False),
        sa.Column("day", sa.String(length=10), nullable=False),
        sa.Column("items", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_story_suggestions")),
        sa.UniqueConstraint(
            "genre",
            "language",
            "age_group",
            "day",
            name=op.f("uq_story_suggestions_genre_language_age_group_day"),
        ),
    )
    with op.batch_alter_table("stories", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("sampling", sa.String(length=16), server_default="", nullable=False)
        )
        batch_op.add_column(sa.Column("tokens", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("score", sa.Float(), nullable=True))
        batch_op.add_column(
            sa.Column("in_history", sa.Boolean(), server_default="1", nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("stories", schema=None) as batch_op:
        batch_op.drop_column("in_history")
        batch_op.drop_column("score")
        batch_op.drop_column("tokens")
        batch_op.drop_column("sampling")

    op.drop_table("story_suggestions")
