"""SQLAlchemy Core tables. Alembic migrations in `db/migrations` create exactly these."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID

metadata = MetaData()

WORKFLOW_STATES = ("pending", "processing", "completed", "failed")

workflow_executions = Table(
    "workflow_executions",
    metadata,
    Column("workflow_id", UUID(as_uuid=True), primary_key=True),
    Column("namespace", String(255), nullable=False),
    Column("state", String(16), nullable=False),
    Column("file_path", Text),
    Column("content_type", String(255)),
    Column("file_size", BigInteger),
    Column("file_hash", String(64)),
    Column("stamp_id", UUID(as_uuid=True)),
    Column("stamp_type", String(16)),
    Column("error", Text),
    Column("steps_executed", JSONB, nullable=False, server_default="[]"),
    Column("intelligence", JSONB),
    Column("request_offset", Text),
    Column("run_id", String(64)),
    Column("duration_ms", Integer),
    Column("requested_at", DateTime(timezone=True)),
    Column("started_at", DateTime(timezone=True)),
    Column("completed_at", DateTime(timezone=True)),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    CheckConstraint(
        "state IN ('pending', 'processing', 'completed', 'failed')",
        name="ck_workflow_executions_state",
    ),
    Index("ix_workflow_executions_state_updated", "state", "updated_at"),
    Index("ix_workflow_executions_namespace", "namespace"),
)

fsm_transitions = Table(
    "fsm_transitions",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column(
        "workflow_id",
        UUID(as_uuid=True),
        ForeignKey("workflow_executions.workflow_id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("from_state", String(16)),
    Column("to_state", String(16), nullable=False),
    Column("reason", Text),
    Column("transitioned_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("ix_fsm_transitions_workflow", "workflow_id", "transitioned_at"),
)

metadata_stamps = Table(
    "metadata_stamps",
    metadata,
    Column("stamp_id", UUID(as_uuid=True), primary_key=True),
    Column("workflow_id", UUID(as_uuid=True), unique=True),
    Column("file_hash", String(64), nullable=False),
    Column("namespace", String(255), nullable=False),
    Column("stamp_type", String(16), nullable=False),
    Column("stamp", Text, nullable=False),
    Column("file_path", Text),
    Column("content_type", String(255)),
    Column("file_size", BigInteger),
    Column("metadata", JSONB, nullable=False, server_default="{}"),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("ix_metadata_stamps_file_hash", "file_hash"),
)

workflow_events = Table(
    "workflow_events",
    metadata,
    Column("event_id", UUID(as_uuid=True), primary_key=True),
    Column("event_type", String(64), nullable=False),
    Column("correlation_id", UUID(as_uuid=True)),
    Column("namespace", String(255)),
    Column("event_timestamp", DateTime(timezone=True), nullable=False),
    Column("source_service", String(128)),
    Column("topic", String(255), nullable=False),
    Column("partition", Integer, nullable=False),
    Column("offset", BigInteger, nullable=False),
    Column("payload", JSONB, nullable=False),
    Column("envelope", JSONB, nullable=False),
    Column("landed_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("ix_workflow_events_event_timestamp", "event_timestamp"),
    Index("ix_workflow_events_correlation", "correlation_id"),
)

dead_letters = Table(
    "dead_letters",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    # "<topic>/<partition>/<offset>" for Kafka messages, "inline/<run>/<index>" for Launchpad.
    Column("source", String(512), nullable=False, unique=True),
    Column("workflow_id", UUID(as_uuid=True)),
    Column("code", String(64), nullable=False),
    Column("reason", Text, nullable=False),
    Column("dlq_topic", String(255), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
