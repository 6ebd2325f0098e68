"""The workflow events' outbox: written in each step's transaction, relayed after its commit.

Each step's transaction writes one batch row and its events, one row per event id, so the
first committed bytes of an event are the only ones ever published. The envelope is kept as
its JSON text (JSON escapes every control character, so text holds the published bytes
exactly). A batch is sent, and marked sent, as a whole: one row to lock and update per step,
not one per event. The partial index finds the unsent batches; sent ones stay until every
workflow they name has ended.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01
"""

from __future__ import annotations

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

UPGRADE = """
CREATE TABLE workflow_outbox_batches (
    id bigserial PRIMARY KEY,
    events integer NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    sent_at timestamptz
);
CREATE INDEX ix_workflow_outbox_batches_unsent ON workflow_outbox_batches (id)
    WHERE sent_at IS NULL;
CREATE TABLE workflow_outbox (
    batch_id bigint NOT NULL,
    seq integer NOT NULL,
    event_id uuid NOT NULL,
    workflow_id uuid NOT NULL,
    topic varchar(255) NOT NULL,
    value text NOT NULL,
    signature text,
    PRIMARY KEY (batch_id, seq),
    CONSTRAINT uq_workflow_outbox_event_id UNIQUE (event_id)
);
"""

DOWNGRADE = "DROP TABLE workflow_outbox; DROP TABLE workflow_outbox_batches;"


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
