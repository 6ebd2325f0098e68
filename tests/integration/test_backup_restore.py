"""`bridge-dagster backup` and `restore` against the real PostgreSQL, every row compared."""

from __future__ import annotations

import json
import stat
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest
from click.testing import CliRunner, Result
from sqlalchemy import Engine, create_engine, text

from bridge_dagster.cli.main import main
from bridge_dagster.devstack.postgres import PostgresAddress
from bridge_dagster.reducer import event_days

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC).replace(microsecond=0)
Rows = dict[str, list[str]]


@dg.asset
def stamped_files() -> None:
    """Dagster's own storage lives in the same database; it must come back too."""


@pytest.fixture
def cli(pg_address: PostgresAddress, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    # Away from the repository: no `.env` and no running dev stack is picked up.
    monkeypatch.chdir(tmp_path)
    return CliRunner(env=pg_address.env())


@pytest.fixture
def engine(pg_address: PostgresAddress) -> Engine:
    engine = create_engine(pg_address.url())
    yield engine
    engine.dispose()


@pytest.fixture
def filled(pg_address: PostgresAddress, engine: Engine) -> Rows:
    """A Dagster run and rows in the workflow tables, workflow_events over two days."""
    storage = {"storage": {"postgres": {"postgres_url": pg_address.url()}}}
    with dg.instance_for_test(overrides=storage) as instance:
        assert dg.materialize([stamped_files], instance=instance).success
    fill_workflow_tables(engine)
    return every_row(engine)


def fill_workflow_tables(engine: Engine) -> None:
    workflow = uuid.uuid4()
    yesterday = NOW - timedelta(days=1)
    with engine.begin() as conn:
        event_days.ensure_days(conn, [yesterday.date(), NOW.date()], event_days.existing_days(conn))
        conn.execute(
            text(
                "INSERT INTO workflow_executions (workflow_id, namespace, state, file_hash,"
                " steps_executed) VALUES (:w, 'omninode.bridge', 'completed', :h,"
                " CAST(:steps AS jsonb))"
            ),
            {"w": workflow, "h": "ab" * 32, "steps": json.dumps(["validate", "hash"])},
        )
        for from_state, to_state in [(None, "pending"), ("pending", "processing")]:
            conn.execute(
                text(
                    "INSERT INTO fsm_transitions (workflow_id, from_state, to_state)"
                    " VALUES (:w, :f, :t)"
                ),
                {"w": workflow, "f": from_state, "t": to_state},
            )
        for offset, at in enumerate([yesterday, NOW]):
            conn.execute(
                text(
                    "INSERT INTO workflow_events (event_id, event_timestamp, event_type,"
                    ' correlation_id, namespace, state, topic, partition, "offset", envelope)'
                    " VALUES (:e, :at, 'stamp_workflow_completed', :w, 'omninode.bridge',"
                    " 'completed', 'workflows', 0, :o, CAST(:env AS jsonb))"
                ),
                {
                    "e": uuid.uuid4(),
                    "at": at,
                    "w": workflow,
                    "o": offset,
                    "env": json.dumps({"payload": {"note": "ünïcode ✓"}}),
                },
            )
        conn.execute(
            text(
                "INSERT INTO dead_letters (source, letter_key, code, reason, dlq_topic, value)"
                " VALUES ('workflows:0:9', 'workflows:0:9/0f3a', 'malformed', 'not JSON',"
                " 'workflows.dlq', :v)"
            ),
            {"v": b"\x00\xffraw"},
        )


def every_row(engine: Engine) -> Rows:
    """Every row of every table (each partition on its own), as text, in a stable order."""
    with engine.connect() as conn:
        tables = conn.execute(
            text(
                "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n"
                " ON n.oid = c.relnamespace WHERE c.relkind = 'r'"
                " AND n.nspname NOT IN ('pg_catalog', 'information_schema')"
                " AND n.nspname NOT LIKE 'pg_toast%' ORDER BY 1"
            )
        ).scalars()
        return {
            table: sorted(conn.execute(text(f"SELECT t::text FROM {table} t")).scalars())
            for table in list(tables)
        }


def rows_of(rows: Rows, prefix: str) -> int:
    return sum(len(values) for table, values in rows.items() if table.startswith(prefix))


def recreate_empty(postgres: PostgresAddress, database: str, *, create: bool = True) -> None:
    admin = create_engine(postgres.url("postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE "{database}" WITH (FORCE)')
        if create:
            conn.exec_driver_sql(f'CREATE DATABASE "{database}"')
    admin.dispose()


def bridge(cli: CliRunner, *args: str) -> Result:
    return cli.invoke(main, list(args), catch_exceptions=False)


def test_a_backup_restored_into_a_recreated_database_keeps_every_row(
    cli: CliRunner, pg_address: PostgresAddress, filled: Rows, tmp_path: Path
) -> None:
    dump = tmp_path / "bridge.dump"

    backed_up = bridge(cli, "backup", "--output", str(dump))
    recreate_empty(pg_address, pg_address.database)
    restored = bridge(cli, "restore", str(dump))

    assert backed_up.exit_code == 0, backed_up.output
    assert restored.exit_code == 0, restored.output
    restored_engine = create_engine(pg_address.url())
    assert every_row(restored_engine) == filled
    restored_engine.dispose()
    # The comparison covers real content: both event days, the workflow, Dagster's run.
    assert rows_of(filled, "public.workflow_events_") == 2
    assert rows_of(filled, "public.workflow_executions") == 1
    assert rows_of(filled, "public.runs") == 1
    assert stat.S_IMODE(dump.stat().st_mode) == 0o600
    assert f"Wrote {dump}" in backed_up.output
    assert "Restored" in restored.output


def test_a_restore_refuses_a_database_with_tables_unless_told_to_clean(
    cli: CliRunner, engine: Engine, filled: Rows, tmp_path: Path
) -> None:
    dump = tmp_path / "bridge.dump"
    assert bridge(cli, "backup", "--output", str(dump)).exit_code == 0
    with engine.begin() as conn:
        conn.execute(text("UPDATE workflow_executions SET state = 'failed'"))
        conn.execute(text("DELETE FROM fsm_transitions"))

    refused = bridge(cli, "restore", str(dump))
    cleaned = bridge(cli, "restore", "--clean", str(dump))

    assert refused.exit_code != 0
    assert "already holds" in refused.output
    assert "--clean" in refused.output
    assert cleaned.exit_code == 0, cleaned.output
    engine.dispose()  # its pooled connections were to the database the restore replaced
    assert every_row(engine) == filled


def test_a_restore_creates_a_database_the_server_lacks(
    cli: CliRunner, pg_address: PostgresAddress, filled: Rows, tmp_path: Path
) -> None:
    dump = tmp_path / "bridge.dump"
    assert bridge(cli, "backup", "--output", str(dump)).exit_code == 0
    recreate_empty(pg_address, pg_address.database, create=False)

    restored = bridge(cli, "restore", str(dump))

    assert restored.exit_code == 0, restored.output
    engine = create_engine(pg_address.url())
    assert every_row(engine) == filled
    engine.dispose()


def test_a_backup_never_overwrites_a_file(cli: CliRunner, tmp_path: Path) -> None:
    existing = tmp_path / "bridge.dump"
    existing.write_text("an older backup")

    result = bridge(cli, "backup", "--output", str(existing))

    assert result.exit_code != 0
    assert "already exists" in result.output
    assert existing.read_text() == "an older backup"


def test_a_file_that_is_no_backup_is_refused_with_the_fix(cli: CliRunner, tmp_path: Path) -> None:
    junk = tmp_path / "notes.txt"
    junk.write_text("not an archive")

    result = bridge(cli, "restore", "--clean", str(junk))

    assert result.exit_code != 0
    assert "bridge-dagster backup" in result.output
