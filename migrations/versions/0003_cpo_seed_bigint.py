"""cpo.seed is 64-bit: the API accepts any signed 64-bit seed, and Postgres INTEGER stops at 2**31 - 1
(found by schemathesis on Postgres; SQLite integers were always 64-bit).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29 14:02:19.842415
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None


def _alter_seed(from_type: sa.types.TypeEngine, to_type: sa.types.TypeEngine) -> None:
    """On SQLite batch mode rebuilds the table: keep AUTOINCREMENT (reflection drops it) and the id
    high-water mark in sqlite_sequence (ids of deleted CPOs are never handed out again)."""
    sqlite = op.get_bind().dialect.name == "sqlite"
    high = (
        op.get_bind().execute(sa.text("SELECT seq FROM sqlite_sequence WHERE name = 'cpo'")).scalar()
        if sqlite
        else None
    )
    with op.batch_alter_table("cpo", table_kwargs={"sqlite_autoincrement": True}) as batch_op:
        batch_op.alter_column("seed", existing_type=from_type, type_=to_type, existing_nullable=False)
    if high is not None:
        op.execute(sa.text("UPDATE sqlite_sequence SET seq = max(seq, :high) WHERE name = 'cpo'").bindparams(high=high))


def upgrade() -> None:
    _alter_seed(sa.INTEGER(), sa.BigInteger())


def downgrade() -> None:
    _alter_seed(sa.BigInteger(), sa.INTEGER())
