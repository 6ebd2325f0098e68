"""The exporter's connections: PostgreSQL, the broker and the Dagster instance, each with
short timeouts so that a scrape or a probe answers even when one of them hangs."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine, create_engine

from bridge_dagster.exporter.dagster_state import InstanceSource
from bridge_dagster.resources.kafka import KafkaResource
from bridge_dagster.settings import ConfigError, Settings

# Each outside call gets this long; /health waits for all of them together no longer.
CALL_TIMEOUT_S = 3.0


@dataclass
class Sources:
    settings: Settings
    engine: Engine
    kafka: KafkaResource
    instance: InstanceSource

    def close(self) -> None:
        self.instance.close()
        self.engine.dispose()


def open_sources(settings: Settings) -> Sources:
    """Connections for the configured deployment; ConfigError naming what is missing."""
    if settings.kafka_bootstrap_servers is None:
        raise ConfigError(
            "KAFKA_BOOTSTRAP_SERVERS is not set; set it to the broker the deployment uses, or"
            " start `bridge-dagster dev` in this directory first"
        )
    url = settings.postgres.url()
    security = settings.kafka_security
    return Sources(
        settings=settings,
        engine=create_engine(
            url,
            pool_size=2,
            max_overflow=2,
            pool_timeout=CALL_TIMEOUT_S,
            pool_pre_ping=True,
            connect_args={
                "connect_timeout": int(CALL_TIMEOUT_S),
                "options": f"-c statement_timeout={int(CALL_TIMEOUT_S * 1000)}",
            },
        ),
        kafka=KafkaResource(
            bootstrap_servers=settings.kafka_bootstrap_servers,
            request_topic=settings.request_topic,
            workflow_topic=settings.workflow_topic,
            timeout_s=CALL_TIMEOUT_S,
            security_protocol=security.protocol,
            sasl_mechanism=security.sasl_mechanism,
            sasl_username=security.sasl_username,
            sasl_password=security.sasl_password,
            ssl_ca_location=security.ssl_ca_location,
        ),
        instance=InstanceSource(url),
    )
