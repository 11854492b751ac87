"""charging sessions: typed transactions, meter samples, 1.6 transaction ids and idTag mapping,
remote starts, pending CDRs

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29 20:00:59.020614
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "cdr_pending",
        sa.Column("cpo_id", sa.Integer(), nullable=False),
        sa.Column("session_id", sa.String(), nullable=False),
        sa.Column("charging_session_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("cpo_id", "session_id"),
    )
    op.create_table(
        "charging_meter_sample",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("cpo_id", sa.Integer(), nullable=False),
        sa.Column("charging_session_id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("energy_wh", sa.Float(), nullable=False),
        sa.Column("power_w", sa.Float(), nullable=False),
        sa.Column("current_a", sa.Float(), nullable=True),
        sa.Column("voltage_v", sa.Float(), nullable=True),
        sa.Column("soc_percent", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("charging_meter_sample", schema=None) as batch_op:
        batch_op.create_index("ix_charging_meter_sample_at", ["charging_session_id", "at"], unique=True)
        batch_op.create_index(batch_op.f("ix_charging_meter_sample_cpo_id"), ["cpo_id"], unique=False)

    op.create_table(
        "charging_remote_start",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("cpo_id", sa.Integer(), nullable=False),
        sa.Column("identity", sa.String(), nullable=False),
        sa.Column("ocpp_evse_id", sa.Integer(), nullable=True),
        sa.Column("ocpp_connector_id", sa.Integer(), nullable=True),
        sa.Column("id_tag", sa.String(), nullable=False),
        sa.Column("remote_start_id", sa.Integer(), nullable=True),
        sa.Column("token_uid", sa.String(), nullable=False),
        sa.Column("token_type", sa.String(), nullable=False),
        sa.Column("token_country_code", sa.String(), nullable=False),
        sa.Column("token_party_id", sa.String(), nullable=False),
        sa.Column("contract_id", sa.String(), nullable=False),
        sa.Column("authorization_reference", sa.String(), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_by", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("charging_remote_start", schema=None) as batch_op:
        batch_op.create_index("ix_charging_remote_start_charger", ["cpo_id", "identity"], unique=False)

    op.create_table(
        "charging_session",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("cpo_id", sa.Integer(), nullable=False),
        sa.Column("session_id", sa.String(), nullable=False),
        sa.Column("identity", sa.String(), nullable=False),
        sa.Column("ocpp_version", sa.String(), nullable=False),
        sa.Column("transaction_id", sa.String(), nullable=False),
        sa.Column("start_key", sa.String(), nullable=True),
        sa.Column("location_id", sa.String(), nullable=False),
        sa.Column("evse_uid", sa.String(), nullable=False),
        sa.Column("connector_id", sa.String(), nullable=False),
        sa.Column("ocpp_evse_id", sa.Integer(), nullable=False),
        sa.Column("ocpp_connector_id", sa.Integer(), nullable=False),
        sa.Column("id_tag", sa.String(), nullable=True),
        sa.Column("id_token_type", sa.String(), nullable=True),
        sa.Column("token_uid", sa.String(), nullable=True),
        sa.Column("token_type", sa.String(), nullable=True),
        sa.Column("token_country_code", sa.String(), nullable=True),
        sa.Column("token_party_id", sa.String(), nullable=True),
        sa.Column("contract_id", sa.String(), nullable=True),
        sa.Column("auth_method", sa.String(), nullable=True),
        sa.Column("authorization_reference", sa.String(), nullable=True),
        sa.Column("auth_status", sa.String(), nullable=True),
        sa.Column("remote_start_id", sa.Integer(), nullable=True),
        sa.Column("start_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("end_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("meter_start_wh", sa.Float(), nullable=True),
        sa.Column("meter_last_wh", sa.Float(), nullable=True),
        sa.Column("meter_last_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("meter_stop_wh", sa.Float(), nullable=True),
        sa.Column("kwh", sa.Float(), nullable=False),
        sa.Column("power_w", sa.Float(), nullable=True),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("stop_reason", sa.String(), nullable=True),
        sa.Column("seq_no", sa.Integer(), nullable=True),
        sa.Column("currency", sa.String(), nullable=False),
        sa.Column("period_start_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("period_start_wh", sa.Float(), nullable=False),
        sa.Column("period_charging", sa.Boolean(), nullable=False),
        sa.Column("period_max_power_w", sa.Float(), nullable=False),
        sa.Column("pushed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("sample_count", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_updated", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("charging_session", schema=None) as batch_op:
        batch_op.create_index("ix_charging_session_ocpi", ["cpo_id", "session_id"], unique=True)
        batch_op.create_index("ix_charging_session_start", ["cpo_id", "identity", "start_key"], unique=True)
        batch_op.create_index("ix_charging_session_tx", ["cpo_id", "identity", "transaction_id"], unique=True)

    op.create_table(
        "ocpp_id_tag",
        sa.Column("cpo_id", sa.Integer(), nullable=False),
        sa.Column("id_tag", sa.String(), nullable=False),
        sa.Column("uid", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("cpo_id", "id_tag"),
    )
    op.create_table(
        "ocpp_transaction_counter",
        sa.Column("cpo_id", sa.Integer(), nullable=False),
        sa.Column("last_id", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("cpo_id"),
    )


def downgrade() -> None:
    op.drop_table("ocpp_transaction_counter")
    op.drop_table("ocpp_id_tag")
    with op.batch_alter_table("charging_session", schema=None) as batch_op:
        batch_op.drop_index("ix_charging_session_tx")
        batch_op.drop_index("ix_charging_session_start")
        batch_op.drop_index("ix_charging_session_ocpi")

    op.drop_table("charging_session")
    with op.batch_alter_table("charging_remote_start", schema=None) as batch_op:
        batch_op.drop_index("ix_charging_remote_start_charger")

    op.drop_table("charging_remote_start")
    with op.batch_alter_table("charging_meter_sample", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_charging_meter_sample_cpo_id"))
        batch_op.drop_index("ix_charging_meter_sample_at")

    op.drop_table("charging_meter_sample")
    op.drop_table("cdr_pending")
