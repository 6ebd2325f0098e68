"""SQLAlchemy Core tables. Alembic migrations in `db/migrations` create exactly these."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    func,
    text,
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
    Column("duration_ms", BigInteger),
    Column("requested_at", DateTime(timezone=True)),
    Column("started_at", DateTime(timezone=True)),
    Column("completed_at", DateTime(timezone=True)),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # Runs that took the workflow, and the one asked to take it over next (migration 0008).
    Column("attempts", SmallInteger, nullable=False, server_default="1"),
    Column("resume_key", String(600)),
    CheckConstraint(
        "state IN ('pending', 'processing', 'completed', 'failed')",
        name="ck_workflow_executions_state",
    ),
    Index("ix_workflow_executions_state_updated", "state", "updated_at"),
    Index("ix_workflow_executions_namespace", "namespace"),
    Index(
        "ix_workflow_executions_resume_key",
        "resume_key",
        postgresql_where=text("resume_key IS NOT NULL"),
    ),
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

# Range-partitioned by day of event_timestamp (migration 0004); a partition's unique keys must
# hold the partition column, so the key is (event_id, event_timestamp) and landing makes
# event_id unique on its own (reducer/landing.py).
workflow_events = Table(
    "workflow_events",
    metadata,
    Column("event_id", UUID(as_uuid=True), primary_key=True),
    Column("event_timestamp", DateTime(timezone=True), primary_key=True),
    Column("event_type", String(64), nullable=False),
    Column("correlation_id", UUID(as_uuid=True)),
    # The payload's namespace, else one another event of the workflow carries; NULL: unknown.
    Column("namespace", String(255)),
    # The FSM state the event implies (a transition's to_state; pending for a request;
    # completed / failed for those; processing for a step), and typed copies of the payload
    # fields the reducer aggregates, so its SQL reads no JSON.
    Column("state", String(16), nullable=False),
    Column("content_type", String(255)),
    Column("file_size", BigInteger),
    Column("latency_ms", Float),
    Column("topic", String(255), nullable=False),
    Column("partition", Integer, nullable=False),
    Column("offset", BigInteger, nullable=False),
    Column("envelope", JSONB, nullable=False),
    Column("landed_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    postgresql_partition_by="RANGE (event_timestamp)",
)

dead_letters = Table(
    "dead_letters",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    # "<topic>/<partition>/<offset>" for Kafka messages, "inline/<digest>" for Launchpad.
    Column("source", String(512), nullable=False, index=True),
    # What makes it the same dead letter (migration 0006): the position, the broker's write
    # time and a digest of the bytes, since a recreated topic reuses positions.
    Column("letter_key", String(600), nullable=False, unique=True),
    Column("workflow_id", UUID(as_uuid=True)),
    Column("code", String(64), nullable=False),
    Column("reason", Text, nullable=False),
    Column("dlq_topic", String(255), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # Landing's dead letters are an outbox: written with the batch, sent after its commit.
    Column("value", LargeBinary),
    Column("sent_at", DateTime(timezone=True)),
    # Why the broker refused this one letter for good; the relay no longer offers it.
    Column("send_error", Text),
)

# The workflow events' outbox (migration 0009): each step writes one batch of its events in
# its own transaction; a relay publishes a batch after the commit and marks it sent.
workflow_outbox_batches = Table(
    "workflow_outbox_batches",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("events", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("sent_at", DateTime(timezone=True)),
    Index("ix_workflow_outbox_batches_unsent", "id", postgresql_where=text("sent_at IS NULL")),
)

workflow_outbox = Table(
    "workflow_outbox",
    metadata,
    Column("batch_id", BigInteger, primary_key=True),
    # The event's place in its batch: the order it is published in.
    Column("seq", Integer, primary_key=True),
    # One row per event id: the first committed bytes are the only ones published.
    Column("event_id", UUID(as_uuid=True), nullable=False, unique=True),
    # The message key, and what says the batch may go once its workflows have ended.
    Column("workflow_id", UUID(as_uuid=True), nullable=False),
    Column("topic", String(255), nullable=False),
    # The envelope's JSON text, exactly as published.
    Column("value", Text, nullable=False),
    # The x-signature header when EVENT_SIGNING_KEY is set.
    Column("signature", Text),
)

# The request sensor's ledger (migration 0007): every range it handed out, open until the
# admission that made its requests rows or dead letters.
request_ranges = Table(
    "request_ranges",
    metadata,
    # The run key the sensor planned the range under.
    Column("range_key", String(600), primary_key=True),
    Column("topic", String(255), nullable=False),
    Column("generation", Integer, nullable=False),
    Column("ranges", JSONB, nullable=False),
    Column("size", Integer, nullable=False),
    # 1 when handed out; each re-request adds one.
    Column("requested", Integer, nullable=False, server_default="1"),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("requested_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("closed_at", DateTime(timezone=True)),
    Column("closed_reason", Text),
    Index("ix_request_ranges_open", "topic", postgresql_where=text("closed_at IS NULL")),
)

# --- landing bookkeeping --------------------------------------------------------------

landing_positions = Table(
    "landing_positions",
    metadata,
    Column("topic", String(255), primary_key=True),
    Column("partition", Integer, primary_key=True),
    # The next offset to land; written in the same transaction as the rows before it.
    Column("next_offset", BigInteger, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

workflow_namespaces = Table(
    "workflow_namespaces",
    metadata,
    Column("workflow_id", UUID(as_uuid=True), primary_key=True),
    Column("namespace", String(255), nullable=False),
    Column("first_seen", DateTime(timezone=True), nullable=False),
    Index("ix_workflow_namespaces_first_seen", "first_seen"),
)

unattributed_events = Table(
    "unattributed_events",
    metadata,
    Column("event_id", UUID(as_uuid=True), primary_key=True),
    Column("event_timestamp", DateTime(timezone=True), primary_key=True),
    Column("workflow_id", UUID(as_uuid=True), nullable=False),
    Index("ix_unattributed_events_workflow", "workflow_id"),
)

reducer_landed_hours = Table(
    "reducer_landed_hours",
    metadata,
    Column("hour", DateTime(timezone=True), primary_key=True),
    Column("events", BigInteger, nullable=False),
    # From sequence reducer_touch_seq, taken anew by every landing that touches the hour.
    Column("touch_seq", BigInteger, nullable=False),
    Column("last_landed_at", DateTime(timezone=True), nullable=False),
)

reducer_hour_state = Table(
    "reducer_hour_state",
    metadata,
    Column("asset", String(64), primary_key=True),
    Column("hour", DateTime(timezone=True), primary_key=True),
    # The hour's touch_seq when its aggregation read it: the hour is stale while lower.
    Column("aggregated_seq", BigInteger, nullable=False),
    Column("materialized_at", DateTime(timezone=True), nullable=False),
)

reducer_aggregations = Table(
    "reducer_aggregations",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("asset", String(64), nullable=False),
    Column("range_start", DateTime(timezone=True), nullable=False),
    Column("range_end", DateTime(timezone=True), nullable=False),
    Column("status", String(16), nullable=False),
    Column("events", BigInteger),
    Column("rows_written", BigInteger),
    Column("duration_ms", Float, nullable=False),
    Column("error", Text),
    Column("run_id", String(64)),
    Column("finished_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    CheckConstraint("status IN ('completed', 'failed')", name="ck_reducer_aggregations_status"),
    Index("ix_reducer_aggregations_finished", "finished_at"),
)

# --- reducer tables: a public interface, documented in the README -----------------------


def _computed_at() -> Column:
    return Column("computed_at", DateTime(timezone=True), nullable=False, server_default=func.now())


reducer_namespace_hourly = Table(
    "reducer_namespace_hourly",
    metadata,
    Column("hour", DateTime(timezone=True), primary_key=True),
    Column("namespace", String(255), primary_key=True),
    Column("events", BigInteger, nullable=False),
    Column("workflows_started", BigInteger, nullable=False),
    Column("workflows_completed", BigInteger, nullable=False),
    Column("workflows_failed", BigInteger, nullable=False),
    Column("stamps_created", BigInteger, nullable=False),
    Column("bytes_stamped", BigInteger, nullable=False),
    Column("distinct_content_types", Integer, nullable=False),
    Column("latency_avg_ms", Float),
    Column("latency_p50_ms", Float),
    Column("latency_p95_ms", Float),
    Column("latency_p99_ms", Float),
    _computed_at(),
)

reducer_content_type_hourly = Table(
    "reducer_content_type_hourly",
    metadata,
    Column("hour", DateTime(timezone=True), primary_key=True),
    Column("namespace", String(255), primary_key=True),
    Column("content_type", String(255), primary_key=True),
    Column("workflows_completed", BigInteger, nullable=False),
    Column("bytes_stamped", BigInteger, nullable=False),
    Column("latency_p95_ms", Float),
    _computed_at(),
)

reducer_size_bucket_hourly = Table(
    "reducer_size_bucket_hourly",
    metadata,
    Column("hour", DateTime(timezone=True), primary_key=True),
    Column("namespace", String(255), primary_key=True),
    Column("size_bucket", String(16), primary_key=True),
    Column("workflows_completed", BigInteger, nullable=False),
    Column("bytes_stamped", BigInteger, nullable=False),
    _computed_at(),
)

reducer_throughput_minutely = Table(
    "reducer_throughput_minutely",
    metadata,
    Column("minute", DateTime(timezone=True), primary_key=True),
    Column("namespace", String(255), primary_key=True),
    Column("workflows_completed", BigInteger, nullable=False),
    Column("stamps_created", BigInteger, nullable=False),
    Column("stamps_per_s", Float, nullable=False),
    _computed_at(),
)

reducer_workflow_projection = Table(
    "reducer_workflow_projection",
    metadata,
    Column("workflow_id", UUID(as_uuid=True), primary_key=True),
    Column("namespace", String(255), nullable=False),
    Column("state", String(16), nullable=False),
    # FSM order: pending 1 < processing 2 < completed 3 < failed 4; the state never goes down.
    Column("state_rank", SmallInteger, nullable=False),
    # One bit per state a workflow_state_transition event moved it to; transitions counts them.
    Column("states_seen", SmallInteger, nullable=False),
    Column("transitions", Integer, nullable=False),
    Column("first_event_at", DateTime(timezone=True), nullable=False),
    Column("last_event_at", DateTime(timezone=True), nullable=False),
    Column("latency_ms", Float),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("ix_reducer_workflow_projection_namespace_state", "namespace", "state"),
)

reducer_bridge_state = Table(
    "reducer_bridge_state",
    metadata,
    Column("namespace", String(255), primary_key=True),
    Column("events", BigInteger, nullable=False),
    Column("workflows_completed", BigInteger, nullable=False),
    Column("workflows_failed", BigInteger, nullable=False),
    Column("stamps_created", BigInteger, nullable=False),
    Column("bytes_stamped", BigInteger, nullable=False),
    Column("first_hour", DateTime(timezone=True), nullable=False),
    Column("last_hour", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
