"""`bridge-dagster backup` and `restore`: the whole database, through pg_dump and pg_restore."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import click
from tqdm import tqdm

from bridge_dagster.db.dumps import BackupError, Outcome
from bridge_dagster.settings import ConfigError, PostgresSettings, load_settings


@click.command(
    epilog="""\b
Examples:
  bridge-dagster backup
      while `bridge-dagster dev` runs here: the embedded database, with its own pg_dump
  bridge-dagster backup --output /backups/bridge-nightly.dump
  POSTGRES_HOST=db.internal POSTGRES_PASSWORD=… bridge-dagster backup
      a server elsewhere, with the pg_dump of its version (from PATH)
\b
Restore it with:  bridge-dagster restore FILE
"""
)
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="File to write (never overwritten).  [default: bridge-<database>-<UTC time>.dump]",
)
def backup(output: Path | None) -> None:
    """Back up the database named by the POSTGRES_* variables with `pg_dump -Fc`.

    One file holds the bridge's tables and Dagster's runs, events and schedules, which
    live in the same database. The password reaches pg_dump through PGPASSWORD, never
    the command line; the file is readable by its owner only.
    """
    from bridge_dagster.db.dumps import backup as dump

    pg = _postgres()
    path = output or Path(f"bridge-{pg.database}-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.dump")
    click.echo(f"Backing up {pg.database} on {pg.host}:{pg.port} to {path}")
    outcome = _with_progress("tables", lambda step: dump(pg, path, step))
    click.echo(
        f"Wrote {path}: {outcome.tables} tables, about {outcome.rows:,} rows,"
        f" {outcome.bytes / 1e6:,.1f} MB in {outcome.seconds:.1f} s"
        f" (pg_dump {outcome.client.major}, {outcome.client.path})"
    )


@click.command(
    epilog="""\b
Examples:
  bridge-dagster restore bridge-omninode_bridge-20261201T020000Z.dump
      into an empty (or missing: it is created) database
  bridge-dagster restore --clean nightly.dump
      over the current database: what the backup holds is dropped and recreated
  POSTGRES_DATABASE=bridge_check bridge-dagster restore nightly.dump
      into a scratch database, to check a backup without touching the live one
\b
Stop Dagster (webserver, daemon, code server) and the services first: --clean waits for
every lock on the tables it drops.
"""
)
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--clean",
    is_flag=True,
    help="Restore over a database that already has tables, replacing the backup's objects.",
)
def restore(file: Path, clean: bool) -> None:
    """Restore a `bridge-dagster backup` file into the database named by POSTGRES_*.

    It runs in one transaction: if anything fails, the database stays as it was. A
    database that already holds tables is refused unless --clean is given.
    """
    from bridge_dagster.db.dumps import restore as load

    pg = _postgres()
    click.echo(f"Restoring {file} into {pg.database} on {pg.host}:{pg.port}")
    outcome = _with_progress("entries", lambda step: load(pg, file, clean=clean, progress=step))
    click.echo(
        f"Restored {outcome.tables} tables, about {outcome.rows:,} rows, into {pg.database}"
        f" in {outcome.seconds:.1f} s (pg_restore {outcome.client.major},"
        f" {outcome.client.path})"
    )


def _postgres() -> PostgresSettings:
    try:
        pg = load_settings().postgres
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    if pg.host is None:
        raise click.ClickException(
            "POSTGRES_HOST is not set; set it (and POSTGRES_PASSWORD) to the server, or run"
            " this in the directory where `bridge-dagster dev` runs, which it then finds"
        )
    return pg


def _with_progress(unit: str, work: Callable[[Callable[[int, int], None]], Outcome]) -> Outcome:
    bar = tqdm(unit=f" {unit}", leave=False, delay=0.5)

    def step(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()

    try:
        return work(step)
    except (BackupError, ConfigError) as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        bar.close()
