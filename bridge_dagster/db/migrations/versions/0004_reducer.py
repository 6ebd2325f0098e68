"""Reducer: workflow_events partitioned by day, landing bookkeeping, the reducer's tables.

workflow_events held nothing before this revision (nothing landed events yet), so it is
re-created rather than converted.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

UPGRADE = """
DROP TABLE workflow_events;

CREATE TABLE workflow_events (
    event_id uuid NOT NULL,
    event_timestamp timestamptz NOT NULL,
    event_type varchar(64) NOT NULL,
    correlation_id uuid,
    namespace varchar(255),
    state varchar(16) NOT NULL,
    content_type varchar(255),
    file_size bigint,
    latency_ms double precision,
    topic varchar(255) NOT NULL,
    partition integer NOT NULL,
    "offset" bigint NOT NULL,
    envelope jsonb NOT NULL,
    landed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (event_id, event_timestamp)
) PARTITION BY RANGE (event_timestamp);
-- Events arrive in about time order, so a BRIN index finds an hour for almost no write cost.
CREATE INDEX ix_workflow_events_event_timestamp ON workflow_events
    USING brin (event_timestamp) WITH (pages_per_range = 16);

ALTER TABLE dead_letters ADD COLUMN value bytea, ADD COLUMN sent_at timestamptz;
CREATE INDEX ix_dead_letters_unsent ON dead_letters (dlq_topic) WHERE sent_at IS NULL
    AND value IS NOT NULL;

CREATE TABLE landing_positions (
    topic varchar(255) NOT NULL,
    partition integer NOT NULL,
    next_offset bigint NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (topic, partition)
);

CREATE TABLE workflow_namespaces (
    workflow_id uuid PRIMARY KEY,
    namespace varchar(255) NOT NULL,
    first_seen timestamptz NOT NULL
);
CREATE INDEX ix_workflow_namespaces_first_seen ON workflow_namespaces (first_seen);

CREATE TABLE unattributed_events (
    event_id uuid NOT NULL,
    event_timestamp timestamptz NOT NULL,
    workflow_id uuid NOT NULL,
    PRIMARY KEY (event_id, event_timestamp)
);
CREATE INDEX ix_unattributed_events_workflow ON unattributed_events (workflow_id);

CREATE SEQUENCE reducer_touch_seq;
CREATE TABLE reducer_landed_hours (
    hour timestamptz PRIMARY KEY,
    events bigint NOT NULL,
    touch_seq bigint NOT NULL,
    last_landed_at timestamptz NOT NULL
);
CREATE TABLE reducer_hour_state (
    asset varchar(64) NOT NULL,
    hour timestamptz NOT NULL,
    aggregated_seq bigint NOT NULL,
    materialized_at timestamptz NOT NULL,
    PRIMARY KEY (asset, hour)
);
CREATE TABLE reducer_aggregations (
    id bigserial PRIMARY KEY,
    asset varchar(64) NOT NULL,
    range_start timestamptz NOT NULL,
    range_end timestamptz NOT NULL,
    status varchar(16) NOT NULL,
    events bigint,
    rows_written bigint,
    duration_ms double precision NOT NULL,
    error text,
    run_id varchar(64),
    finished_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT ck_reducer_aggregations_status CHECK (status IN ('completed', 'failed'))
);
CREATE INDEX ix_reducer_aggregations_finished ON reducer_aggregations (finished_at);

CREATE TABLE reducer_namespace_hourly (
    hour timestamptz NOT NULL,
    namespace varchar(255) NOT NULL,
    events bigint NOT NULL,
    workflows_started bigint NOT NULL,
    workflows_completed bigint NOT NULL,
    workflows_failed bigint NOT NULL,
    stamps_created bigint NOT NULL,
    bytes_stamped bigint NOT NULL,
    distinct_content_types integer NOT NULL,
    latency_avg_ms double precision,
    latency_p50_ms double precision,
    latency_p95_ms double precision,
    latency_p99_ms double precision,
    computed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (hour, namespace)
);
CREATE TABLE reducer_content_type_hourly (
    hour timestamptz NOT NULL,
    namespace varchar(255) NOT NULL,
    content_type varchar(255) NOT NULL,
    workflows_completed bigint NOT NULL,
    bytes_stamped bigint NOT NULL,
    latency_p95_ms double precision,
    computed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (hour, namespace, content_type)
);
CREATE TABLE reducer_size_bucket_hourly (
    hour timestamptz NOT NULL,
    namespace varchar(255) NOT NULL,
    size_bucket varchar(16) NOT NULL,
    workflows_completed bigint NOT NULL,
    bytes_stamped bigint NOT NULL,
    computed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (hour, namespace, size_bucket)
);
CREATE TABLE reducer_throughput_minutely (
    minute timestamptz NOT NULL,
    namespace varchar(255) NOT NULL,
    workflows_completed bigint NOT NULL,
    stamps_created bigint NOT NULL,
    stamps_per_s double precision NOT NULL,
    computed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (minute, namespace)
);
CREATE TABLE reducer_workflow_projection (
    workflow_id uuid PRIMARY KEY,
    namespace varchar(255) NOT NULL,
    state varchar(16) NOT NULL,
    state_rank smallint NOT NULL,
    states_seen smallint NOT NULL,
    transitions integer NOT NULL,
    first_event_at timestamptz NOT NULL,
    last_event_at timestamptz NOT NULL,
    latency_ms double precision,
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ix_reducer_workflow_projection_namespace_state
    ON reducer_workflow_projection (namespace, state);
CREATE TABLE reducer_bridge_state (
    namespace varchar(255) PRIMARY KEY,
    events bigint NOT NULL,
    workflows_completed bigint NOT NULL,
    workflows_failed bigint NOT NULL,
    stamps_created bigint NOT NULL,
    bytes_stamped bigint NOT NULL,
    first_hour timestamptz NOT NULL,
    last_hour timestamptz NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
"""

DOWNGRADE = """
DROP TABLE reducer_bridge_state, reducer_workflow_projection, reducer_throughput_minutely,
    reducer_size_bucket_hourly, reducer_content_type_hourly, reducer_namespace_hourly,
    reducer_aggregations, reducer_hour_state, reducer_landed_hours, unattributed_events,
    workflow_namespaces, landing_positions;
DROP SEQUENCE reducer_touch_seq;
DROP INDEX ix_dead_letters_unsent;
ALTER TABLE dead_letters DROP COLUMN value, DROP COLUMN sent_at;
DROP TABLE workflow_events;
CREATE TABLE workflow_events (
    event_id uuid PRIMARY KEY,
    event_type varchar(64) NOT NULL,
    correlation_id uuid,
    namespace varchar(255),
    event_timestamp timestamptz NOT NULL,
    source_service varchar(128),
    topic varchar(255) NOT NULL,
    partition integer NOT NULL,
    "offset" bigint NOT NULL,
    payload jsonb NOT NULL,
    envelope jsonb NOT NULL,
    landed_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ix_workflow_events_event_timestamp ON workflow_events (event_timestamp);
CREATE INDEX ix_workflow_events_correlation ON workflow_events (correlation_id);
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
