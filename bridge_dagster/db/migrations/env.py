"""Alembic environment: the URL comes from the caller (bridge-dagster migrate) or settings."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool

# Dagster keeps its own `alembic_version` when its storage shares this database.
from bridge_dagster.db.migrate import VERSION_TABLE
from bridge_dagster.db.tables import metadata


def _url() -> str:
    url = context.config.get_main_option("sqlalchemy.url")
    if url:
        return url
    from bridge_dagster.settings import load_settings

    return load_settings().postgres.url()


def run_migrations_offline() -> None:
    context.configure(
        url=_url(), target_metadata=metadata, literal_binds=True, version_table=VERSION_TABLE
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = create_engine(_url(), poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(
            connection=connection, target_metadata=metadata, version_table=VERSION_TABLE
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
