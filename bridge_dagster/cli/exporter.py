"""`bridge-dagster exporter`: /health and Prometheus /metrics for the deployment."""

from __future__ import annotations

import click

from bridge_dagster.settings import ConfigError, load_settings


@click.command(
    epilog="""\b
Examples:
  bridge-dagster exporter                         127.0.0.1:9090
  bridge-dagster exporter --host 0.0.0.0 --port 9090   in a container
  curl -s 127.0.0.1:9090/health                   200, or 503 naming what is down
  curl -s 127.0.0.1:9090/metrics                  Prometheus text format
"""
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option(
    "--port", type=click.IntRange(1, 65535), default=9090, show_default=True, help="Port."
)
def exporter(host: str, port: int) -> None:
    """Serve /health (PostgreSQL, Kafka, the Dagster daemon) and Prometheus /metrics.

    Every number is read from what is stored at each request, so any number of exporters
    agree. Reads the POSTGRES_* and KAFKA_* variables, and the Dagster instance from
    DAGSTER_HOME (unset: Dagster's storage in the project's PostgreSQL). With
    METRICS_REQUIRE_API_KEY=true, /metrics needs API_KEY (or a key in API_KEY_PREVIOUS).
    """
    import uvicorn

    from bridge_dagster.exporter.app import create_exporter_app
    from bridge_dagster.exporter.sources import open_sources

    try:
        settings = load_settings()
        sources = open_sources(settings)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    keys = ()
    if settings.metrics_require_api_key and settings.api_key is not None:
        keys = (settings.api_key, *settings.api_key_previous)
    app = create_exporter_app(sources, metrics_keys=keys)
    click.echo(f"Exporter on http://{host}:{port} (/health, /metrics)")
    uvicorn.run(app, host=host, port=port, log_level=settings.log_level)
