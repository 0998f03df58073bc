"""reply sources: what a reply was shown with (its disclosure, its source cards), kept
so that a page reloaded shows them again

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-07 05:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("disclosure", sa.Text(), server_default="",
                                      nullable=False))
        batch_op.add_column(sa.Column("sources", sa.Text(), server_default="", nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_column("sources")
        batch_op.drop_column("disclosure")
