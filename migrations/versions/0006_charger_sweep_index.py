"""Index for the CSMS's stale-connection sweep (chargers still ONLINE/BOOTING whose holder went silent).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29 21:10:00
"""

from __future__ import annotations

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("charger", schema=None) as batch_op:
        batch_op.create_index("ix_charger_status_seen", ["status", "last_seen_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("charger", schema=None) as batch_op:
        batch_op.drop_index("ix_charger_status_seen")
