"""The CPO's simulation settings chosen at create (time scale, background activity).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29 23:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    # A plain ADD COLUMN (no batch rebuild): SQLite keeps the table, its AUTOINCREMENT and id high-water mark.
    op.add_column("cpo", sa.Column("simulation", sa.JSON(), nullable=True))


def downgrade() -> None:
    """On SQLite batch mode rebuilds the table: keep AUTOINCREMENT and the id high-water mark (as 0003)."""
    sqlite = op.get_bind().dialect.name == "sqlite"
    high = (
        op.get_bind().execute(sa.text("SELECT seq FROM sqlite_sequence WHERE name = 'cpo'")).scalar()
        if sqlite
        else None
    )
    with op.batch_alter_table("cpo", table_kwargs={"sqlite_autoincrement": True}) as batch_op:
        batch_op.drop_column("simulation")
    if high is not None:
        op.execute(sa.text("UPDATE sqlite_sequence SET seq = max(seq, :high) WHERE name = 'cpo'").bindparams(high=high))
