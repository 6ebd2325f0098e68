"""request_offset holds "<topic>/<partition>/<offset>": a 249-character topic needs Text.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.alter_column(
        "workflow_executions", "request_offset", type_=sa.Text, existing_type=sa.String(64)
    )


def downgrade() -> None:
    op.alter_column(
        "workflow_executions",
        "request_offset",
        type_=sa.String(64),
        existing_type=sa.Text,
        postgresql_using="left(request_offset, 64)",
    )
