"""Indexes for OCPI date_from/date_to pulls on tariffs, sessions and CDRs (locations had one).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29 13:28:53.875109
"""

from __future__ import annotations

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("ocpi_cdr", schema=None) as batch_op:
        batch_op.create_index("ix_ocpi_cdr_cpo_updated", ["cpo_id", "last_updated"], unique=False)

    with op.batch_alter_table("ocpi_session", schema=None) as batch_op:
        batch_op.create_index("ix_ocpi_session_cpo_updated", ["cpo_id", "last_updated"], unique=False)

    with op.batch_alter_table("tariff", schema=None) as batch_op:
        batch_op.create_index("ix_tariff_cpo_updated", ["cpo_id", "last_updated"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("tariff", schema=None) as batch_op:
        batch_op.drop_index("ix_tariff_cpo_updated")

    with op.batch_alter_table("ocpi_session", schema=None) as batch_op:
        batch_op.drop_index("ix_ocpi_session_cpo_updated")

    with op.batch_alter_table("ocpi_cdr", schema=None) as batch_op:
        batch_op.drop_index("ix_ocpi_cdr_cpo_updated")
