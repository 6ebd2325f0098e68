"""`/health`: PostgreSQL, Kafka and the Dagster daemon, checked at once and time-bounded."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import text

from bridge_dagster.exporter.dagster_state import HEARTBEAT_TOLERANCE_S, daemon_health
from bridge_dagster.exporter.sources import CALL_TIMEOUT_S, Sources

# Longer than one call's timeout, so a check that times out reports its own error.
DEADLINE_S = CALL_TIMEOUT_S + 2


@dataclass(frozen=True)
class Component:
    up: bool
    detail: dict[str, Any] = field(default_factory=dict)


def check_postgres(sources: Sources) -> Component:
    started = time.monotonic()
    try:
        with sources.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # any failure to answer is the finding, whatever its type
        return Component(False, {"error": _first_line(exc), "fix": _POSTGRES_FIX})
    return Component(True, {"latency_ms": _ms_since(started)})


def check_kafka(sources: Sources) -> Component:
    started = time.monotonic()
    kafka = sources.kafka
    try:
        with kafka.consumer() as consumer:
            metadata = consumer.list_topics(timeout=CALL_TIMEOUT_S)
    except Exception as exc:  # the client raises KafkaException, and RuntimeError when closed
        return Component(
            False,
            {
                "error": f"broker {kafka.bootstrap_servers} did not answer: {_first_line(exc)}",
                "fix": "check that the broker runs and KAFKA_BOOTSTRAP_SERVERS (and the"
                " KAFKA_SECURITY_PROTOCOL / KAFKA_SASL_* settings) reach it",
            },
        )
    return Component(True, {"latency_ms": _ms_since(started), "brokers": len(metadata.brokers)})


def check_daemon(sources: Sources) -> Component:
    try:
        health = daemon_health(sources.instance.get())
    except Exception as exc:  # the instance's storage could not be read
        return Component(
            False,
            {
                "error": f"Dagster's instance could not be read: {_first_line(exc)}",
                "fix": "set DAGSTER_HOME to the deployment's, or check POSTGRES_* when Dagster"
                " keeps its storage in the project's database",
            },
        )
    detail: dict[str, Any] = {"heartbeat_age_s": health.heartbeat_age_s}
    if health.late:
        detail["error"] = (
            f"no heartbeat within {HEARTBEAT_TOLERANCE_S:.0f} s from {', '.join(health.late)}"
        )
        detail["fix"] = (
            "start `dagster-daemon run` (the compose service `daemon`) and check its log"
        )
    return Component(not health.late, detail)


CHECKS: dict[str, Callable[[Sources], Component]] = {
    "postgres": check_postgres,
    "kafka": check_kafka,
    "daemon": check_daemon,
}


def health_report(sources: Sources, pool: ThreadPoolExecutor) -> tuple[bool, dict[str, Any]]:
    """Whether everything is up, and the JSON body that says so per component."""
    futures = {name: pool.submit(check, sources) for name, check in CHECKS.items()}
    wait(futures.values(), timeout=DEADLINE_S)
    components = {
        name: future.result()
        if future.done()
        else Component(False, {"error": f"no answer within {DEADLINE_S:.0f} s"})
        for name, future in futures.items()
    }
    failing = [name for name, component in components.items() if not component.up]
    body = {
        "status": "unhealthy" if failing else "healthy",
        "failing": failing,
        "components": {
            name: {"status": "up" if c.up else "down", **c.detail} for name, c in components.items()
        },
        "checked_at": datetime.now(UTC).isoformat(),
    }
    return not failing, body


_POSTGRES_FIX = "check that PostgreSQL runs and POSTGRES_HOST/PORT/USER/PASSWORD/SSL_MODE reach it"


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _ms_since(started: float) -> float:
    return round((time.monotonic() - started) * 1000, 1)
