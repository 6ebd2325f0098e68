"""Workflows resumed by a new run when the run that admitted them ended unfinished.

`attempts` counts the runs that took the workflow (1 at admission); `resume_key` names the
run the request sensor asked to take it over, which claims it at admission.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

UPGRADE = """
ALTER TABLE workflow_executions
    ADD COLUMN attempts smallint NOT NULL DEFAULT 1, ADD COLUMN resume_key varchar(600);
CREATE INDEX ix_workflow_executions_resume_key ON workflow_executions (resume_key)
    WHERE resume_key IS NOT NULL;
"""

DOWNGRADE = """
DROP INDEX ix_workflow_executions_resume_key;
ALTER TABLE workflow_executions DROP COLUMN attempts, DROP COLUMN resume_key;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
