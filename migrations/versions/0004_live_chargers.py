"""live chargers: connection table, connector OCPP status, OCPP log, OCPI outbox

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29 16:39:56.687306
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "ocpi_outbox",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("cpo_id", sa.Integer(), nullable=False),
        sa.Column("peer_id", sa.Integer(), nullable=False),
        sa.Column("object_key", sa.String(), nullable=False),
        sa.Column("module", sa.String(), nullable=False),
        sa.Column("method", sa.String(), nullable=False),
        sa.Column("path", sa.JSON(), nullable=False),
        sa.Column("body", sa.JSON(), nullable=True),
        sa.Column("coalescible", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.String(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("ocpi_outbox", schema=None) as batch_op:
        batch_op.create_index("ix_ocpi_outbox_due", ["next_attempt_at"], unique=False)
        batch_op.create_index("ix_ocpi_outbox_object", ["cpo_id", "peer_id", "object_key", "id"], unique=False)

    op.create_table(
        "ocpp_log",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("cpo_id", sa.Integer(), nullable=False),
        sa.Column("identity", sa.String(), nullable=False),
        sa.Column("timestamp", sa.DateTime(timezone=True), nullable=False),
        sa.Column("direction", sa.String(), nullable=False),
        sa.Column("message_type", sa.Integer(), nullable=False),
        sa.Column("message_id", sa.String(), nullable=True),
        sa.Column("action", sa.String(), nullable=True),
        sa.Column("payload", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("ocpp_log", schema=None) as batch_op:
        batch_op.create_index("ix_ocpp_log_charger", ["cpo_id", "identity", "id"], unique=False)

    with op.batch_alter_table("charger", schema=None) as batch_op:
        batch_op.add_column(sa.Column("last_boot_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("api_instance", sa.String(), nullable=True))
        batch_op.add_column(sa.Column("connection_id", sa.String(), nullable=True))
        batch_op.add_column(sa.Column("pod_generation", sa.BigInteger(), nullable=True))
        batch_op.create_index("ix_charger_api_instance", ["api_instance"], unique=False)
        batch_op.create_index("ix_charger_cpo_status", ["cpo_id", "status"], unique=False)

    with op.batch_alter_table("connector", schema=None) as batch_op:
        batch_op.add_column(sa.Column("ocpp_status", sa.String(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("connector", schema=None) as batch_op:
        batch_op.drop_column("ocpp_status")

    with op.batch_alter_table("charger", schema=None) as batch_op:
        batch_op.drop_index("ix_charger_cpo_status")
        batch_op.drop_index("ix_charger_api_instance")
        batch_op.drop_column("pod_generation")
        batch_op.drop_column("connection_id")
        batch_op.drop_column("api_instance")
        batch_op.drop_column("last_seen_at")
        batch_op.drop_column("last_boot_at")

    with op.batch_alter_table("ocpp_log", schema=None) as batch_op:
        batch_op.drop_index("ix_ocpp_log_charger")

    op.drop_table("ocpp_log")
    with op.batch_alter_table("ocpi_outbox", schema=None) as batch_op:
        batch_op.drop_index("ix_ocpi_outbox_object")
        batch_op.drop_index("ix_ocpi_outbox_due")

    op.drop_table("ocpi_outbox")
