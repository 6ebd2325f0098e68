"""Dead letters keyed by what makes them the same one, and per-letter send errors.

`letter_key` (position, the broker's write time, a digest of the bytes) replaces `source`
as the unique key: a recreated topic reuses offsets, so a position alone took a new bad
message for one already dead-lettered. `source` stays the position, indexed. `send_error`
holds why the broker refused one letter for good, so it costs only itself.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

UPGRADE = """
ALTER TABLE dead_letters ADD COLUMN letter_key varchar(600), ADD COLUMN send_error text;
UPDATE dead_letters SET letter_key = source;
ALTER TABLE dead_letters ALTER COLUMN letter_key SET NOT NULL;
ALTER TABLE dead_letters DROP CONSTRAINT dead_letters_source_key;
ALTER TABLE dead_letters ADD CONSTRAINT uq_dead_letters_letter_key UNIQUE (letter_key);
CREATE INDEX ix_dead_letters_source ON dead_letters (source);
"""

# Keys that differ only past the position collapse to one row per position again.
DOWNGRADE = """
DROP INDEX ix_dead_letters_source;
DELETE FROM dead_letters d USING dead_letters e WHERE d.source = e.source AND d.id > e.id;
ALTER TABLE dead_letters DROP CONSTRAINT uq_dead_letters_letter_key;
ALTER TABLE dead_letters ADD CONSTRAINT dead_letters_source_key UNIQUE (source);
ALTER TABLE dead_letters DROP COLUMN letter_key, DROP COLUMN send_error;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
