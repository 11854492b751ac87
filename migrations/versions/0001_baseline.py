"""Baseline: the schema every process created with create_all before migrations existed.

A database made by that code has these tables but no alembic_version: `app.store.migrate` stamps it
with this revision and upgrades from there.

Revision ID: 0001
Revises:
Create Date: 2026-11-29 13:28:09.892765
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "charger",
        sa.Column("cpo_id", sa.Integer(), nullable=False),
        sa.Column("identity", sa.String(), nullable=False),
        sa.Column("location_id", sa.String(), nullable=False),
        sa.Column("model_id", sa.String(), nullable=False),
        sa.Column("vendor", sa.String(), nullable=False),
        sa.Column("model", sa.String(), nullable=False),
        sa.Column("ocpp_version", sa.String(), nullable=False),
        sa.Column("serial_number", sa.String(), nullable=False),
        sa.Column("password_hash", sa.String(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("cpo_id", "identity"),
    )
    with op.batch_alter_table("charger", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_charger_location_id"), ["location_id"], unique=False)

    op.create_table(
        "charger_route",
        sa.Column("cpo_id", sa.Integer(), nullable=False),
        sa.Column("identity", sa.String(), nullable=False),
        sa.Column("ocpp_evse_id", sa.Integer(), nullable=False),
        sa.Column("location_id", sa.String(), nullable=False),
        sa.Column("evse_uid", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("cpo_id", "identity", "ocpp_evse_id"),
    )
    op.create_table(
        "connector",
        sa.Column("cpo_id", sa.Integer(), nullable=False),
        sa.Column("evse_uid", sa.String(), nullable=False),
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("location_id", sa.String(), nullable=False),
        sa.Column("standard", sa.String(), nullable=False),
        sa.Column("format", sa.String(), nullable=False),
        sa.Column("power_type", sa.String(), nullable=False),
        sa.Column("max_voltage", sa.Integer(), nullable=False),
        sa.Column("max_amperage", sa.Integer(), nullable=False),
        sa.Column("max_electric_power", sa.Integer(), nullable=True),
        sa.Column("tariff_id", sa.String(), nullable=True),
        sa.Column("last_updated", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("cpo_id", "evse_uid", "id"),
    )
    with op.batch_alter_table("connector", schema=None) as batch_op:
        batch_op.create_index("ix_connector_cpo_location", ["cpo_id", "location_id"], unique=False)

    op.create_table(
        "cpo",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("org", sa.String(), nullable=False),
        sa.Column("country_code", sa.String(), nullable=False),
        sa.Column("party_id", sa.String(), nullable=False),
        sa.Column("requested_party_id", sa.String(), nullable=False),
        sa.Column("role", sa.String(), nullable=False),
        sa.Column("name_prefix", sa.String(), nullable=False),
        sa.Column("template", sa.String(), nullable=False),
        sa.Column("template_version", sa.Integer(), nullable=False),
        sa.Column("seed", sa.Integer(), nullable=False),
        sa.Column("overrides", sa.JSON(), nullable=True),
        sa.Column("ocpi_version", sa.String(), nullable=False),
        sa.Column("ttl_seconds", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("error", sa.JSON(), nullable=True),
        sa.Column("progress", sa.JSON(), nullable=True),
        sa.Column("workflow_id", sa.String(), nullable=True),
        sa.Column("workflow_run_id", sa.String(), nullable=True),
        sa.Column("locations", sa.Integer(), nullable=False),
        sa.Column("chargers", sa.Integer(), nullable=False),
        sa.Column("evses", sa.Integer(), nullable=False),
        sa.Column("connectors", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("provisioned_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("destroyed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("cpo", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_cpo_org"), ["org"], unique=False)
        batch_op.create_index(batch_op.f("ix_cpo_status"), ["status"], unique=False)

    op.create_table(
        "cpo_blueprint",
        sa.Column("cpo_id", sa.Integer(), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("cpo_id"),
    )
    op.create_table(
        "credential_token",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("cpo_id", sa.Integer(), nullable=False),
        sa.Column("token_hash", sa.String(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("peer_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token_hash"),
    )
    with op.batch_alter_table("credential_token", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_credential_token_cpo_id"), ["cpo_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_credential_token_peer_id"), ["peer_id"], unique=False)

    op.create_table(
        "evse",
        sa.Column("cpo_id", sa.Integer(), nullable=False),
        sa.Column("uid", sa.String(), nullable=False),
        sa.Column("location_id", sa.String(), nullable=False),
        sa.Column("evse_id", sa.String(), nullable=False),
        sa.Column("charger_identity", sa.String(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("last_updated", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("cpo_id", "uid"),
    )
    with op.batch_alter_table("evse", schema=None) as batch_op:
        batch_op.create_index("ix_evse_cpo_location", ["cpo_id", "location_id"], unique=False)

    op.create_table(
        "location",
        sa.Column("cpo_id", sa.Integer(), nullable=False),
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("idx", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("city", sa.String(), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("last_updated", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("cpo_id", "id"),
    )
    with op.batch_alter_table("location", schema=None) as batch_op:
        batch_op.create_index("ix_location_cpo_idx", ["cpo_id", "idx"], unique=False)
        batch_op.create_index("ix_location_cpo_updated", ["cpo_id", "last_updated"], unique=False)

    op.create_table(
        "ocpi_cdr",
        sa.Column("cpo_id", sa.Integer(), nullable=False),
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_updated", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("cpo_id", "id"),
    )
    with op.batch_alter_table("ocpi_cdr", schema=None) as batch_op:
        batch_op.create_index("ix_ocpi_cdr_cpo_order", ["cpo_id", "created_at", "id"], unique=False)

    op.create_table(
        "ocpi_log",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("cpo_id", sa.Integer(), nullable=False),
        sa.Column("timestamp", sa.DateTime(timezone=True), nullable=False),
        sa.Column("direction", sa.String(), nullable=False),
        sa.Column("method", sa.String(), nullable=False),
        sa.Column("url", sa.String(), nullable=False),
        sa.Column("http_status", sa.Integer(), nullable=True),
        sa.Column("ocpi_status_code", sa.Integer(), nullable=True),
        sa.Column("duration_ms", sa.Float(), nullable=False),
        sa.Column("request_id", sa.String(), nullable=True),
        sa.Column("correlation_id", sa.String(), nullable=True),
        sa.Column("error", sa.String(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("ocpi_log", schema=None) as batch_op:
        batch_op.create_index("ix_ocpi_log_cpo_time", ["cpo_id", "timestamp"], unique=False)

    op.create_table(
        "ocpi_peer",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("cpo_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.String(), nullable=False),
        sa.Column("token_b", sa.String(), nullable=False),
        sa.Column("versions_url", sa.String(), nullable=False),
        sa.Column("version_url", sa.String(), nullable=False),
        sa.Column("endpoints", sa.JSON(), nullable=False),
        sa.Column("roles", sa.JSON(), nullable=False),
        sa.Column("country_code", sa.String(), nullable=True),
        sa.Column("party_id", sa.String(), nullable=True),
        sa.Column("registered", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("unregistered_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("ocpi_peer", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_ocpi_peer_cpo_id"), ["cpo_id"], unique=False)

    op.create_table(
        "ocpi_rejected_count",
        sa.Column("cpo_id", sa.Integer(), nullable=False),
        sa.Column("rejected", sa.Integer(), nullable=False),
        sa.Column("last_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("cpo_id"),
    )
    op.create_table(
        "ocpi_session",
        sa.Column("cpo_id", sa.Integer(), nullable=False),
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_updated", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("cpo_id", "id"),
    )
    with op.batch_alter_table("ocpi_session", schema=None) as batch_op:
        batch_op.create_index("ix_ocpi_session_cpo_order", ["cpo_id", "created_at", "id"], unique=False)

    op.create_table(
        "ocpi_token",
        sa.Column("cpo_id", sa.Integer(), nullable=False),
        sa.Column("country_code", sa.String(), nullable=False),
        sa.Column("party_id", sa.String(), nullable=False),
        sa.Column("uid", sa.String(), nullable=False),
        sa.Column("type", sa.String(), nullable=False),
        sa.Column("peer_id", sa.Integer(), nullable=True),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("last_updated", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("cpo_id", "country_code", "party_id", "uid", "type"),
    )
    op.create_table(
        "party_reservation",
        sa.Column("org", sa.String(), nullable=False),
        sa.Column("country_code", sa.String(), nullable=False),
        sa.Column("party_id", sa.String(), nullable=False),
        sa.Column("cpo_id", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("org", "country_code", "party_id"),
    )
    with op.batch_alter_table("party_reservation", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_party_reservation_cpo_id"), ["cpo_id"], unique=False)

    op.create_table(
        "tariff",
        sa.Column("cpo_id", sa.Integer(), nullable=False),
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("currency", sa.String(), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("last_updated", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("cpo_id", "id"),
    )


def downgrade() -> None:
    op.drop_table("tariff")
    with op.batch_alter_table("party_reservation", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_party_reservation_cpo_id"))

    op.drop_table("party_reservation")
    op.drop_table("ocpi_token")
    with op.batch_alter_table("ocpi_session", schema=None) as batch_op:
        batch_op.drop_index("ix_ocpi_session_cpo_order")

    op.drop_table("ocpi_session")
    op.drop_table("ocpi_rejected_count")
    with op.batch_alter_table("ocpi_peer", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ocpi_peer_cpo_id"))

    op.drop_table("ocpi_peer")
    with op.batch_alter_table("ocpi_log", schema=None) as batch_op:
        batch_op.drop_index("ix_ocpi_log_cpo_time")

    op.drop_table("ocpi_log")
    with op.batch_alter_table("ocpi_cdr", schema=None) as batch_op:
        batch_op.drop_index("ix_ocpi_cdr_cpo_order")

    op.drop_table("ocpi_cdr")
    with op.batch_alter_table("location", schema=None) as batch_op:
        batch_op.drop_index("ix_location_cpo_updated")
        batch_op.drop_index("ix_location_cpo_idx")

    op.drop_table("location")
    with op.batch_alter_table("evse", schema=None) as batch_op:
        batch_op.drop_index("ix_evse_cpo_location")

    op.drop_table("evse")
    with op.batch_alter_table("credential_token", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_credential_token_peer_id"))
        batch_op.drop_index(batch_op.f("ix_credential_token_cpo_id"))

    op.drop_table("credential_token")
    op.drop_table("cpo_blueprint")
    with op.batch_alter_table("cpo", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_cpo_status"))
        batch_op.drop_index(batch_op.f("ix_cpo_org"))

    op.drop_table("cpo")
    with op.batch_alter_table("connector", schema=None) as batch_op:
        batch_op.drop_index("ix_connector_cpo_location")

    op.drop_table("connector")
    op.drop_table("charger_route")
    with op.batch_alter_table("charger", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_charger_location_id"))

    op.drop_table("charger")
