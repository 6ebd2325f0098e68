"""The ledger of request ranges the sensor handed out.

A row per run key the request sensor planned: its offset ranges, how many times they were
requested, and when the admission that took them closed it. A range whose runs all ended
without admitting it is open with no live run, which is how the sensor finds it again.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

UPGRADE = """
CREATE TABLE request_ranges (
    range_key varchar(600) PRIMARY KEY,
    topic varchar(255) NOT NULL,
    generation integer NOT NULL,
    ranges jsonb NOT NULL,
    size integer NOT NULL,
    requested integer NOT NULL DEFAULT 1,
    created_at timestamptz NOT NULL DEFAULT now(),
    requested_at timestamptz NOT NULL DEFAULT now(),
    closed_at timestamptz,
    closed_reason text
);
CREATE INDEX ix_request_ranges_open ON request_ranges (topic) WHERE closed_at IS NULL;
"""

DOWNGRADE = "DROP TABLE request_ranges;"


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
