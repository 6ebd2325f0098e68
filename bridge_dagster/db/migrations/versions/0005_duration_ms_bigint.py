"""workflow_executions.duration_ms as bigint: an int of milliseconds overflows after 24.8 days.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.alter_column(
        "workflow_executions", "duration_ms", type_=sa.BigInteger, existing_type=sa.Integer
    )


def downgrade() -> None:
    # Durations past the int range would not fit back; they are cut to its largest value.
    op.execute(
        "UPDATE workflow_executions SET duration_ms = 2147483647 WHERE duration_ms > 2147483647"
    )
    op.alter_column(
        "workflow_executions", "duration_ms", type_=sa.Integer, existing_type=sa.BigInteger
    )
