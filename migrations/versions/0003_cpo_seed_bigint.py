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


def upgrade() -> None:
    with op.batch_alter_table("cpo", schema=None) as batch_op:
        batch_op.alter_column("seed", existing_type=sa.INTEGER(), type_=sa.BigInteger(), existing_nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("cpo", schema=None) as batch_op:
        batch_op.alter_column("seed", existing_type=sa.BigInteger(), type_=sa.INTEGER(), existing_nullable=False)
