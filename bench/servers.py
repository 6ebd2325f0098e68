"""The private servers a benchmark runs on: an embedded PostgreSQL and broker on free ports."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

from bridge_dagster.devstack.kafka import EmbeddedKafka
from bridge_dagster.devstack.postgres import EmbeddedPostgres, PostgresAddress
from bridge_dagster.devstack.processes import free_port


def start_servers(data: Path, stack: ExitStack) -> tuple[PostgresAddress, str]:
    """PostgreSQL (database `bench`) and the broker under `data`, stopped when `stack` closes."""
    postgres = EmbeddedPostgres(data / "postgres", free_port(), database="bench")
    pg = postgres.start()
    stack.callback(postgres.stop)
    broker = EmbeddedKafka(data / "kafka", free_port())
    bootstrap = broker.start()
    stack.callback(broker.stop)
    return pg, bootstrap
