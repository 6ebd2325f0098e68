"""Growth of Dagster's own storage (runs, event logs, tags) per million workflows.

Starts a private PostgreSQL and broker, keeps a Dagster instance in that PostgreSQL as the
stack does, and runs real cycles of the project's jobs at their default sizes: a
`stamp_workflow` run of MAX_REQUESTS_PER_RUN demo requests, a `land_workflow_events` run of
the events they published, and a `reducer_hourly` run of the hour. Each run's growth of
Dagster's tables (heap, TOAST and indexes) is measured on its own. Then `prune_runs` deletes
every run it may, and what it kept is measured after VACUUM FULL.

Extrapolation to a million workflows (say how, since it is not measured at that size):
1e6 / MAX_REQUESTS_PER_RUN stamp_workflow runs; and, at the guide's target of 100
workflows/s, one landing and one reducer run per AGGREGATION_WINDOW_SIZE_MS while events
flow (the sensors' pace), so 1e6 / 100 s / 5 s = 2,000 of each. The last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition
from servers import start_servers
from sqlalchemy import Engine, create_engine, text

from bridge_dagster.cli.submit import produce_when_room
from bridge_dagster.db.migrate import upgrade
from bridge_dagster.devstack.kafka import ensure_topics
from bridge_dagster.devstack.postgres import PostgresAddress
from bridge_dagster.events.demo import demo_requests
from bridge_dagster.events.requests import build_request
from bridge_dagster.events.topics import dlq_topic
from bridge_dagster.reducer.partitions import partition_key
from bridge_dagster.settings import load_settings

WORKFLOWS_PER_S = 100
MILLION = 1_000_000


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--cycles", type=int, default=8, help="stamp/land/reduce cycles (the first is warm-up)"
    )
    args = parser.parse_args()
    with ExitStack() as stack:
        data = Path(tempfile.mkdtemp(prefix="bench-retention-"))
        pg, bootstrap = start_servers(data, stack)
        print(json.dumps(_measure(pg, bootstrap, data, args.cycles)))


def _measure(pg: PostgresAddress, bootstrap: str, data: Path, cycles: int) -> dict[str, Any]:
    import dagster as dg

    upgrade(pg.url())
    engine = create_engine(pg.url())
    bridge_tables = _tables(engine)
    os.environ.update({**pg.env(), "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "ENVIRONMENT": "bench"})
    settings = load_settings()
    topics = [settings.request_topic, settings.workflow_topic, settings.reducer_topic]
    ensure_topics(bootstrap, [*topics, *map(dlq_topic, topics[:2])])
    from bridge_dagster.definitions import defs
    from bridge_dagster.maintenance.run_retention import (
        prune_runs,
        runs_holding_latest_materializations,
    )

    home = data / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(
        json.dumps({"storage": {"postgres": {"postgres_url": pg.url()}}, "telemetry": {}})
    )
    grown: dict[str, list[int]] = {"stamp_workflow": [], "landing": [], "reducer": []}
    with dg.DagsterInstance.from_config(str(home)) as instance:
        dagster_tables = _tables(engine) - bridge_tables
        baseline = _vacuumed_bytes(engine, dagster_tables)
        positions: dict[int, int] = {}
        for cycle in range(cycles):
            _produce(bootstrap, settings.request_topic, settings.max_requests_per_run, cycle)
            config = _new_ranges(bootstrap, settings.request_topic, positions)
            jobs = {
                "stamp_workflow": lambda c=config: defs.resolve_job_def(
                    "stamp_workflow"
                ).execute_in_process(instance=instance, run_config=c),
                "landing": lambda: defs.resolve_job_def("land_workflow_events").execute_in_process(
                    instance=instance
                ),
                "reducer": lambda: defs.resolve_job_def("reducer_hourly").execute_in_process(
                    instance=instance, partition_key=partition_key(_this_hour())
                ),
            }
            for kind, run in jobs.items():
                before = _bytes(engine, dagster_tables)
                assert run().success, kind
                grown[kind].append(_bytes(engine, dagster_tables) - before)
                log(f"cycle {cycle + 1}/{cycles}: {kind} run grew {grown[kind][-1]:,} bytes")
        runs = instance.get_runs_count()
        full = _vacuumed_bytes(engine, dagster_tables)
        started = time.monotonic()
        runs_holding_latest_materializations(instance)
        keep_s = time.monotonic() - started
        started = time.monotonic()
        pruned = prune_runs(instance, datetime.now(UTC) + timedelta(seconds=1), 1_000_000)
        # What a deletion costs, without the keep set that each pass computes once.
        prune_s = time.monotonic() - started - keep_s
        kept = _vacuumed_bytes(engine, dagster_tables)
    engine.dispose()
    return _result(grown, settings, runs, baseline, full, kept, pruned, prune_s)


def _result(
    grown: dict[str, list[int]],
    settings: Any,
    runs: int,
    baseline: int,
    full: int,
    kept: int,
    pruned: Any,
    prune_s: float,
) -> dict[str, Any]:
    # The first cycle also allocates the pages every later run fills: left out.
    per_run = {kind: round(statistics.mean(values[1:])) for kind, values in grown.items()}
    stamp_runs = MILLION // settings.max_requests_per_run
    window_s = settings.aggregation_window_ms / 1000
    paced_runs = round(MILLION / WORKFLOWS_PER_S / window_s)
    without = (
        stamp_runs * per_run["stamp_workflow"]
        + paced_runs * per_run["landing"]
        + paced_runs * per_run["reducer"]
    )
    hours = MILLION / WORKFLOWS_PER_S / 3600
    kept_per_hour = kept - baseline
    return {
        "benchmark": "dagster_storage_growth",
        "bytes_per_run": per_run,
        "runs_measured": runs,
        "cycles_averaged": len(grown["landing"]) - 1,
        "assumptions": {
            "requests_per_stamp_run": settings.max_requests_per_run,
            "workflows_per_s": WORKFLOWS_PER_S,
            "landing_and_reducer_runs_every_s": window_s,
            "runs_per_million": {
                "stamp_workflow": stamp_runs,
                "landing": paced_runs,
                "reducer": paced_runs,
            },
        },
        "without_job_bytes_per_million": without,
        "with_job": {
            "deleted_runs": pruned.deleted,
            "kept_runs": pruned.kept,
            "delete_ms_per_run": round(prune_s * 1000 / max(pruned.deleted, 1), 1),
            "kept_bytes_per_hour_touched": kept_per_hour,
            "kept_bytes_per_million_after_retention": round(kept_per_hour * max(hours, 1)),
            "stored_bytes_before_prune_vacuumed": full - baseline,
        },
        "note": "all cycles touch one hour, so what prune keeps is one hour's latest landing"
        f" and reducer runs; a million workflows at {WORKFLOWS_PER_S}/s span {hours:.1f} hours",
    }


def _produce(bootstrap: str, topic: str, count: int, seed: int) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for request in demo_requests(count, seed=1000 + seed):
        workflow_id = uuid.uuid4()
        value = build_request(workflow_id, environment="bench", **request.build_kwargs())
        produce_when_room(producer, topic, str(workflow_id).encode(), value)
    producer.flush(60)


def _new_ranges(bootstrap: str, topic: str, positions: dict[int, int]) -> dict[str, Any]:
    """Run config for the offsets produced since the last call, as the sensor would ask."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-retention"})
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    ranges = []
    for p in partitions:
        _, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
        if high > positions.get(p, 0):
            ranges.append(
                {"topic": topic, "partition": p, "start": positions.get(p, 0), "end": high}
            )
            positions[p] = high
    consumer.close()
    return {"ops": {"load_requests": {"config": {"ranges": ranges}}}}


def _this_hour() -> datetime:
    return datetime.now(UTC).replace(minute=0, second=0, microsecond=0)


def _tables(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        return set(
            conn.execute(
                text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
            ).scalars()
        )


def _bytes(engine: Engine, tables: set[str]) -> int:
    with engine.connect() as conn:
        return sum(
            conn.execute(text("SELECT pg_total_relation_size(:t)"), {"t": f'public."{t}"'}).scalar()
            for t in tables
        )


def _vacuumed_bytes(engine: Engine, tables: set[str]) -> int:
    """Bytes once dead rows are gone: what the live rows take."""
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        for table in tables:
            conn.exec_driver_sql(f'VACUUM FULL public."{table}"')
    return _bytes(engine, tables)


if __name__ == "__main__":
    main()
