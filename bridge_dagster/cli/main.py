"""The `bridge-dagster` command: one entry point, a sub-command per task."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import click

from bridge_dagster.cli.submit import status, submit
from bridge_dagster.devstack.processes import StackError
from bridge_dagster.settings import ConfigError, load_settings

T = TypeVar("T")

EPILOG = """\b
Examples:
  bridge-dagster dev                      start everything on 127.0.0.1:3000
  bridge-dagster migrate                  upgrade the database to the newest schema
  bridge-dagster serve stamping --port 8053
  bridge-dagster submit --content 'hello' submit one stamping request
  bridge-dagster submit --demo 200        submit 200 varied demo requests
  bridge-dagster status WORKFLOW_ID       show one workflow's state and stamp
"""


@click.group(epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Run the OmniNode Bridge on Dagster: stamping workflows and their reducers.

    Configuration comes from environment variables (see the README's table); a bad
    value stops the command with a message naming the variable.
    """


@main.command(
    epilog="""\b
Examples:
  bridge-dagster dev
  bridge-dagster dev --ui-port 3001 --data-dir /tmp/bridge
  POSTGRES_HOST=db.internal POSTGRES_PASSWORD=… bridge-dagster dev   (no embedded PostgreSQL)
"""
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(".data"),
    show_default=True,
    help="Where the embedded PostgreSQL, broker and Dagster keep their data.",
)
@click.option(
    "--ui-port",
    type=click.IntRange(1, 65535),
    default=3000,
    show_default=True,
    help="Port of the Dagster UI on 127.0.0.1.",
)
@click.option(
    "--postgres-port",
    type=click.IntRange(1, 65535),
    default=5436,
    show_default=True,
    help="Port of the embedded PostgreSQL (unless POSTGRES_HOST).",
)
@click.option(
    "--kafka-port",
    type=click.IntRange(1, 65535),
    default=29092,
    show_default=True,
    help="Port of the embedded broker (unless KAFKA_BOOTSTRAP_SERVERS).",
)
def dev(data_dir: Path, ui_port: int, postgres_port: int, kafka_port: int) -> None:
    """Start PostgreSQL, a Kafka broker, the migrations and Dagster; Ctrl-C stops them all.

    With POSTGRES_HOST or KAFKA_BOOTSTRAP_SERVERS set, that server is used and no
    embedded one starts. Data is kept in --data-dir, so a second start resumes.
    """
    from bridge_dagster.devstack.stack import DevOptions, run_dev_stack

    options = DevOptions(data_dir.resolve(), ui_port, postgres_port, kafka_port)
    code = _guarded(lambda: run_dev_stack(options, click.echo))
    raise SystemExit(code)


@main.command()
@click.option(
    "--revision", default="head", show_default=True, help="Alembic revision to upgrade to."
)
def migrate(revision: str) -> None:
    """Upgrade the database named by the POSTGRES_* variables to the newest schema."""
    from bridge_dagster.db.migrate import upgrade

    settings = _guarded(load_settings)
    _guarded(lambda: upgrade(settings.postgres.url(), revision))
    click.echo(f"Database {settings.postgres.database} on {settings.postgres.host}: at {revision}")


main.add_command(submit)
main.add_command(status)


def _guarded(action: Callable[[], T]) -> T:
    """Turn the project's expected errors into one clear line instead of a traceback."""
    try:
        return action()
    except (ConfigError, StackError) as exc:
        raise click.ClickException(str(exc)) from None
