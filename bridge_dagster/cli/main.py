"""The `bridge-dagster` command: one entry point, a sub-command per task."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import click

from bridge_dagster.cli.backfill import backfill
from bridge_dagster.cli.backup import backup, restore
from bridge_dagster.cli.demo import demo
from bridge_dagster.cli.exporter import exporter
from bridge_dagster.cli.submit import status, submit
from bridge_dagster.devstack.processes import StackError
from bridge_dagster.settings import ConfigError, Settings, load_settings, read_env_file

if TYPE_CHECKING:
    from fastapi import FastAPI

T = TypeVar("T")

EPILOG = """\b
Examples:
  bridge-dagster dev                      start everything on 127.0.0.1:3000
  bridge-dagster demo                     see it work: 500 requests end to end, then a summary
  bridge-dagster migrate                  upgrade the database to the newest schema
  bridge-dagster serve stamping --port 8053
  bridge-dagster exporter --port 9090     /health and Prometheus /metrics
  bridge-dagster submit --content 'hello' submit one stamping request
  bridge-dagster submit --demo 200        submit 200 varied demo requests
  bridge-dagster status WORKFLOW_ID       show one workflow's state and stamp
  bridge-dagster status --failed --since 1h
                                          list the last hour's failed workflows, with reasons
  bridge-dagster backfill --from 2026-11-30-00:00 --to 2026-11-30-12:00 --wait
                                          re-aggregate those reducer hours via the daemon
  bridge-dagster backup                   pg_dump the database to bridge-<db>-<time>.dump
  bridge-dagster restore FILE             load a backup into an empty database
"""


@click.group(epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
@click.pass_context
def main(ctx: click.Context) -> None:
    """Run the OmniNode Bridge on Dagster: stamping workflows and their reducers.

    Configuration comes from environment variables (see the README's table), and from a
    `.env` file in this directory for those the environment leaves unset; a bad value stops
    the command with a message naming the variable. While `bridge-dagster dev`
    runs in this directory, the other commands reach its PostgreSQL and broker without
    any variable set.
    """
    if ctx.invoked_subcommand != "dev":
        from bridge_dagster.devstack.stack import adopt_running_stack

        adopt_running_stack(Path(".data"))
    # After the running stack's addresses: that stack read this `.env` when it started and
    # replaced what it runs itself (an embedded server's port, say), so its values are the
    # live ones.
    read_env_file()


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
main.add_command(backfill)
main.add_command(exporter)
main.add_command(backup)
main.add_command(restore)
main.add_command(demo)


@main.command(
    epilog="""\b
Examples:
  bridge-dagster serve stamping --port 8053     the MetadataStamping API (/docs for OpenAPI)
  bridge-dagster serve onextree --port 8058     the OnexTree API
"""
)
@click.argument("service", type=click.Choice(["stamping", "onextree"]))
@click.option("--port", type=click.IntRange(1, 65535), required=True, help="Port to listen on.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
def serve(service: str, port: int, host: str) -> None:
    """Serve the stamping or the tree engine over HTTP, speaking the original APIs.

    API_KEY, when set, is required in X-API-Key on every route but health (a key in
    API_KEY_PREVIOUS is accepted too, while clients move to a new one). The stamping
    service answers GET /stamp/{file_hash} from PostgreSQL when POSTGRES_HOST is set.
    """
    import uvicorn

    settings = _guarded(load_settings)
    uvicorn.run(_service_app(service, settings), host=host, port=port, log_level=settings.log_level)


def _service_app(service: str, settings: Settings) -> FastAPI:
    if service == "onextree":
        from bridge_dagster.services.onextree_app import create_onextree_app

        return create_onextree_app(
            allowed_roots=settings.allowed_roots,
            api_key=settings.api_key,
            previous_api_keys=settings.api_key_previous,
        )
    from sqlalchemy import create_engine

    from bridge_dagster.services.stamping_app import create_stamping_app, stamp_lookup_from_engine

    lookup = None
    if settings.postgres.host is not None:
        lookup = stamp_lookup_from_engine(
            create_engine(settings.postgres.url(), pool_pre_ping=True)
        )
    return create_stamping_app(
        api_key=settings.api_key,
        previous_api_keys=settings.api_key_previous,
        max_content_bytes=settings.max_content_bytes,
        stamp_lookup=lookup,
    )


def _guarded(action: Callable[[], T]) -> T:
    """Turn the project's expected errors into one clear line instead of a traceback."""
    try:
        return action()
    except (ConfigError, StackError) as exc:
        raise click.ClickException(str(exc)) from None
