"""Workflow tables: executions, FSM transitions, stamps and landed events.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB, UUID

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "workflow_executions",
        sa.Column("workflow_id", UUID(as_uuid=True), primary_key=True),
        sa.Column("namespace", sa.String(255), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("file_path", sa.Text),
        sa.Column("content_type", sa.String(255)),
        sa.Column("file_size", sa.BigInteger),
        sa.Column("file_hash", sa.String(64)),
        sa.Column("stamp_id", UUID(as_uuid=True)),
        sa.Column("stamp_type", sa.String(16)),
        sa.Column("error", sa.Text),
        sa.Column("steps_executed", JSONB, nullable=False, server_default="[]"),
        sa.Column("intelligence", JSONB),
        sa.Column("request_offset", sa.String(64)),
        sa.Column("run_id", sa.String(64)),
        sa.Column("duration_ms", sa.Integer),
        sa.Column("requested_at", sa.DateTime(timezone=True)),
        sa.Column("started_at", sa.DateTime(timezone=True)),
        sa.Column("completed_at", sa.DateTime(timezone=True)),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.CheckConstraint(
            "state IN ('pending', 'processing', 'completed', 'failed')",
            name="ck_workflow_executions_state",
        ),
    )
    op.create_index(
        "ix_workflow_executions_state_updated", "workflow_executions", ["state", "updated_at"]
    )
    op.create_index("ix_workflow_executions_namespace", "workflow_executions", ["namespace"])

    op.create_table(
        "fsm_transitions",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column(
            "workflow_id",
            UUID(as_uuid=True),
            sa.ForeignKey("workflow_executions.workflow_id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("from_state", sa.String(16)),
        sa.Column("to_state", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column(
            "transitioned_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.func.now(),
        ),
    )
    op.create_index(
        "ix_fsm_transitions_workflow", "fsm_transitions", ["workflow_id", "transitioned_at"]
    )

    op.create_table(
        "metadata_stamps",
        sa.Column("stamp_id", UUID(as_uuid=True), primary_key=True),
        sa.Column("workflow_id", UUID(as_uuid=True), unique=True),
        sa.Column("file_hash", sa.String(64), nullable=False),
        sa.Column("namespace", sa.String(255), nullable=False),
        sa.Column("stamp_type", sa.String(16), nullable=False),
        sa.Column("stamp", sa.Text, nullable=False),
        sa.Column("file_path", sa.Text),
        sa.Column("content_type", sa.String(255)),
        sa.Column("file_size", sa.BigInteger),
        sa.Column("metadata", JSONB, nullable=False, server_default="{}"),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
    )
    op.create_index("ix_metadata_stamps_file_hash", "metadata_stamps", ["file_hash"])

    op.create_table(
        "workflow_events",
        sa.Column("event_id", UUID(as_uuid=True), primary_key=True),
        sa.Column("event_type", sa.String(64), nullable=False),
        sa.Column("correlation_id", UUID(as_uuid=True)),
        sa.Column("namespace", sa.String(255)),
        sa.Column("event_timestamp", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source_service", sa.String(128)),
        sa.Column("topic", sa.String(255), nullable=False),
        sa.Column("partition", sa.Integer, nullable=False),
        sa.Column("offset", sa.BigInteger, nullable=False),
        sa.Column("payload", JSONB, nullable=False),
        sa.Column("envelope", JSONB, nullable=False),
        sa.Column(
            "landed_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
    )
    op.create_index("ix_workflow_events_event_timestamp", "workflow_events", ["event_timestamp"])
    op.create_index("ix_workflow_events_correlation", "workflow_events", ["correlation_id"])


def downgrade() -> None:
    op.drop_table("workflow_events")
    op.drop_table("metadata_stamps")
    op.drop_table("fsm_transitions")
    op.drop_table("workflow_executions")
