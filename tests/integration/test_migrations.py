"""The Alembic chain against the real PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, inspect

from bridge_dagster.db.migrate import current_revision, downgrade, upgrade
from bridge_dagster.db.tables import metadata

pytestmark = pytest.mark.integration


def test_head_creates_every_table_the_code_defines(pg_url: str) -> None:
    engine = create_engine(pg_url)
    assert set(metadata.tables) <= set(inspect(engine).get_table_names())
    engine.dispose()


def test_downgrade_to_base_and_upgrade_again_round_trips(pg_url: str) -> None:
    engine = create_engine(pg_url)
    downgrade(pg_url, "base")
    assert current_revision(engine) is None
    assert not set(metadata.tables) & set(inspect(engine).get_table_names())
    upgrade(pg_url)
    assert current_revision(engine) is not None
    assert set(metadata.tables) <= set(inspect(engine).get_table_names())
    engine.dispose()


def test_tables_match_the_migrated_columns(pg_url: str) -> None:
    engine = create_engine(pg_url)
    inspector = inspect(engine)
    for name, table in metadata.tables.items():
        migrated = {c["name"] for c in inspector.get_columns(name)}
        assert migrated == {c.name for c in table.columns}, name
    engine.dispose()
