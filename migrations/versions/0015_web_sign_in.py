"""web sign-in: one-time links and browser sessions for the web app

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-28 02:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _table(name: str, secret: str, *times: str) -> None:
    op.create_table(
        name,
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column(secret, sa.String(length=64), nullable=False),
        *[sa.Column(t, sa.DateTime(timezone=True), nullable=t == "used_at") for t in times],
        sa.ForeignKeyConstraint(["user_id"], ["users.id"],
                                name=op.f(f"fk_{name}_user_id_users"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f(f"pk_{name}")),
        sa.UniqueConstraint(secret, name=op.f(f"uq_{name}_{secret}")),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table(name, schema=None) as batch_op:
        batch_op.create_index(batch_op.f(f"ix_{name}_user_id"), ["user_id"], unique=False)


def upgrade() -> None:
    _table("web_logins", "token_hash", "created_at", "expires_at", "used_at")
    _table("web_sessions", "secret_hash", "created_at", "last_seen_at", "expires_at")


def downgrade() -> None:
    for name in ("web_sessions", "web_logins"):
        with op.batch_alter_table(name, schema=None) as batch_op:
            batch_op.drop_index(batch_op.f(f"ix_{name}_user_id"))
        op.drop_table(name)
