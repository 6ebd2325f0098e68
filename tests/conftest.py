"""Session-wide real services: one PostgreSQL and one Kafka-protocol broker on free ports.

Each test that asks for `pg_url` gets its own database, cloned from a migrated template, and
each test that asks for `topics` gets topic names no other test uses.
"""

from __future__ import annotations

import shutil
import signal
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import settings
from sqlalchemy import create_engine

from bridge_dagster.db.migrate import upgrade
from bridge_dagster.devstack.kafka import EmbeddedKafka, ensure_topics
from bridge_dagster.devstack.postgres import EmbeddedPostgres, PostgresAddress
from bridge_dagster.devstack.processes import free_port

TEMPLATE_DB = "bridge_template"

# The machines are shared and noisy: a slow first example is not a failure of the property.
settings.register_profile("bridge", deadline=None)
settings.load_profile("bridge")


def pytest_configure(config: pytest.Config) -> None:
    """Give the test process Python's own SIGINT handling when it started with SIGINT ignored.

    A shell starts a background job (`make test &`, nohup) with SIGINT ignored, and children
    inherit ignored signals. A demo started by a test then ignored its Ctrl-C, and worse:
    Dagster's interrupt capture restores SIGINT's disposition onto SIGTERM as well, so every
    child spawned after the first in-process run ignored SIGTERM, and each run's clean-up
    waited 2 x 30 s for the log `tail` it could not terminate.
    """
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if signal.getsignal(signal.SIGTERM) is signal.SIG_IGN:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresAddress]:
    # Not under pytest's tmp dir: pytest resets that tree to 0700 at each session start,
    # which would lock out the unprivileged user PostgreSQL runs as when tests run as root.
    data_dir = Path(tempfile.mkdtemp(prefix="bridge-test-pg-"))
    server = EmbeddedPostgres(data_dir, free_port(), database=TEMPLATE_DB)
    address = server.start()
    upgrade(address.url())
    yield address
    server.stop()
    shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    broker = EmbeddedKafka(tmp_path_factory.mktemp("kafka"), free_port())
    yield broker.start()
    broker.stop()


@pytest.fixture
def pg_address(postgres: PostgresAddress) -> Iterator[PostgresAddress]:
    """A fresh, migrated database for this test alone, dropped afterwards."""
    name = f"t_{uuid.uuid4().hex[:16]}"
    admin = create_engine(postgres.url("postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}" TEMPLATE "{TEMPLATE_DB}"')
    yield PostgresAddress(postgres.host, postgres.port, postgres.user, postgres.password, name)
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.dispose()


@pytest.fixture
def pg_url(pg_address: PostgresAddress) -> str:
    return pg_address.url()


@dataclass(frozen=True)
class Topics:
    requests: str
    workflow: str

    @property
    def requests_dlq(self) -> str:
        return f"{self.requests}.dlq"


@pytest.fixture
def topics(kafka_bootstrap: str) -> Topics:
    suffix = uuid.uuid4().hex[:10]
    names = Topics(requests=f"test.requests.{suffix}", workflow=f"test.workflows.{suffix}")
    ensure_topics(kafka_bootstrap, [names.requests, names.workflow, names.requests_dlq])
    return names


@pytest.fixture
def project_root(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    root.mkdir()
    return root
