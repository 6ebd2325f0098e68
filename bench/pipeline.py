"""End-to-end stamping throughput through the Dagster daemon, against a bare Python loop.

Starts a private stack on free ports (embedded PostgreSQL, the embedded broker, and the
Dagster daemon with the request sensor), produces N varied demo requests, and waits until
every workflow is terminal. In the same run, on the same servers, a bare loop without Dagster
does the same consume → hash → stamp → write → publish work by calling the workflow steps
directly, batch by batch. The ratio is Dagster's throughput over the bare loop's.

Then, on the same idle daemon, the light load: one request a second (30; --quick 10), each
timed from its send to its completed_at. light_latency_p50_s is what one user waits for one
request: the request sensor's tick (Dagster's sensor loop runs every 5 s whatever a sensor's
interval), the run queue, the run's process start and the run itself.

Prints progress to stderr and one JSON object as the last line of stdout:
  workflows, workflows_per_s, bare_workflows_per_s, ratio, latency_p50_s, latency_p95_s,
  light_latency_p50_s
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import UTC
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from servers import start_servers
from sqlalchemy import Engine, create_engine, text

from bridge_dagster.cli.submit import produce_when_room
from bridge_dagster.db.migrate import upgrade
from bridge_dagster.devstack.kafka import ensure_topics
from bridge_dagster.devstack.postgres import PostgresAddress
from bridge_dagster.devstack.processes import spawn, stop
from bridge_dagster.devstack.stack import instance_config
from bridge_dagster.events.demo import demo_requests
from bridge_dagster.events.requests import build_request
from bridge_dagster.events.topics import dlq_topic
from bridge_dagster.orchestrator import workflow
from bridge_dagster.orchestrator.events_out import ProducerSink, WorkflowEvents
from bridge_dagster.settings import load_settings
from bridge_dagster.stamping import stamp_content

ROOT = Path(__file__).resolve().parents[1]
PARTITIONS = 3


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workflows", type=int, default=20_000)
    parser.add_argument(
        "--per-run",
        type=int,
        default=5_000,
        help="MAX_REQUESTS_PER_RUN for the sensor (default 5000)",
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=2,
        help="ORCHESTRATOR_CONCURRENCY: runs in progress at once",
    )
    parser.add_argument(
        "--light",
        type=int,
        default=30,
        help="requests of the light-load phase, one a second (default 30; --quick 10)",
    )
    parser.add_argument("--quick", action="store_true", help="2,000 workflows")
    args = parser.parse_args()
    count = 2_000 if args.quick else args.workflows
    if args.quick:
        args.light = min(args.light, 10)
    per_run = min(args.per_run, max(count // 4, 1)) if args.quick else args.per_run

    with tempfile.TemporaryDirectory(prefix="bridge-bench-") as tmp, ExitStack() as stack:
        data = Path(tmp)
        pg, bootstrap = start_servers(data, stack)
        requests = _requests(count)
        bare = _bare_loop(pg, bootstrap, requests, per_run)
        log(f"bare loop: {bare['workflows_per_s']:.0f} workflows/s")
        light = [(r.workflow_id, r.build_kwargs()) for r in demo_requests(args.light, seed=8)]
        daemon = _daemon_pass(
            pg, bootstrap, requests, data, stack, per_run, args.concurrency, light
        )
        log(f"dagster: {daemon['workflows_per_s']:.0f} workflows/s")

    result = {
        "workflows": count,
        "workflows_per_s": round(daemon["workflows_per_s"], 1),
        "bare_workflows_per_s": round(bare["workflows_per_s"], 1),
        "ratio": round(daemon["workflows_per_s"] / bare["workflows_per_s"], 3),
        "latency_p50_s": round(daemon["latency_p50_s"], 3),
        "latency_p95_s": round(daemon["latency_p95_s"], 3),
        "light_requests": len(daemon["light_latencies_s"]),
        "light_latency_p50_s": round(statistics.median(daemon["light_latencies_s"]), 3),
        "light_latency_max_s": round(max(daemon["light_latencies_s"]), 3),
        "completed": daemon["completed"],
        "runs": daemon["runs"],
        "max_requests_per_run": per_run,
        "orchestrator_concurrency": args.concurrency,
    }
    print(json.dumps(result))


def _requests(count: int) -> list[tuple[uuid.UUID, dict[str, Any]]]:
    return [(r.workflow_id, r.build_kwargs()) for r in demo_requests(count, seed=7)]


def _fresh_database(pg: PostgresAddress, name: str) -> PostgresAddress:
    admin = create_engine(pg.url("postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    admin.dispose()
    address = PostgresAddress(pg.host, pg.port, pg.user, pg.password, name)
    upgrade(address.url())
    return address


def _produce(bootstrap: str, topic: str, requests: list[tuple[uuid.UUID, dict[str, Any]]]) -> float:
    """Produce every request; return the time the first one was sent."""
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "linger.ms": 5,
            "compression.type": "lz4",
        }
    )
    started = time.time()
    for workflow_id, kwargs in requests:
        value = build_request(workflow_id, environment="bench", **kwargs)
        produce_when_room(producer, topic, str(workflow_id).encode(), value)
    producer.flush(60)
    return started


# --- the bare loop ---------------------------------------------------------------------


def _bare_loop(
    pg: PostgresAddress,
    bootstrap: str,
    requests: list[tuple[uuid.UUID, dict[str, Any]]],
    per_run: int,
) -> dict[str, float]:
    """consume → hash → stamp → write → publish, the same steps, no Dagster.

    Everything is connected and warmed up before the clock starts, as a long-running
    service would be; the clock runs from the first request produced to the last recorded.
    """
    address = _fresh_database(pg, "bare")
    topics = _topics(bootstrap, "bare")
    engine = create_engine(address.url(), pool_size=2)
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "linger.ms": 5,
            "compression.type": "lz4",
        }
    )
    sink = ProducerSink(producer)
    ctx = workflow.Context(
        engine=engine,
        events=WorkflowEvents(topics["workflow"], environment="bench"),
        sink=sink,
        dlq_topic=dlq_topic(topics["requests"]),
        run_id="bare-loop",
        default_namespace="omninode.bridge",
        max_content_bytes=100 * 1024 * 1024,
        allowed_roots=(ROOT,),
        warn=log,
    )
    stamp_content(b"warm up")
    with engine.connect():
        pass
    started = _produce(bootstrap, topics["requests"], requests)
    for batch in _consume_batches(bootstrap, topics["requests"], len(requests), per_run):
        admission = workflow.admit(ctx, batch)
        ready = workflow.start(ctx, admission.accepted)
        hashed = workflow.hash_all(ctx, ready)
        # ORCHESTRATOR_STEP_TIMEOUT_MS's default, as the Dagster path has it.
        deadline = workflow.Deadline.for_batch(120_000)
        stamped = workflow.stamp_all(ctx, hashed, stamp_content, deadline)
        workflow.record(ctx, stamped)
    elapsed = time.time() - started
    done = _terminal(engine)
    engine.dispose()
    return {"workflows_per_s": done / elapsed}


def _consume_batches(
    bootstrap: str, topic: str, total: int, per_batch: int
) -> Iterator[list[workflow.Incoming]]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "bare-loop",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    consumer.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
    seen = 0
    batch: list[workflow.Incoming] = []
    while seen < total:
        for m in consumer.consume(1000, timeout=5):
            if m.error() is not None and m.error().code() != KafkaError._PARTITION_EOF:
                raise RuntimeError(m.error().str())
            if m.error() is not None:
                continue
            batch.append(workflow.Incoming.from_message(m))
            seen += 1
            if len(batch) >= per_batch:
                yield batch
                batch = []
    if batch:
        yield batch
    consumer.close()


# --- through the daemon ----------------------------------------------------------------


def _daemon_pass(
    pg: PostgresAddress,
    bootstrap: str,
    requests: list[tuple[uuid.UUID, dict[str, Any]]],
    data: Path,
    stack: ExitStack,
    per_run: int,
    concurrency: int,
    light_requests: list[tuple[uuid.UUID, dict[str, Any]]],
) -> dict[str, Any]:
    address = _fresh_database(pg, "dagster_pass")
    topics = _topics(bootstrap, "dagster")
    env = _daemon_env(address, bootstrap, topics, data, per_run, concurrency)
    daemon = spawn(
        [
            str(Path(sys.executable).parent / "dagster-daemon"),
            "run",
            "-w",
            str(ROOT / "workspace.yaml"),
        ],
        log_path=data / "daemon.log",
        env=env,
        cwd=ROOT,
    )
    stack.callback(lambda: stop(daemon, signal.SIGINT, 30))
    engine = create_engine(address.url())
    _wait_for_first_tick(engine, daemon, data / "daemon.log")
    started = _produce(bootstrap, topics["requests"], requests)
    _wait_until_terminal(engine, len(requests), daemon, data / "daemon.log")
    light = _light_load(engine, bootstrap, topics["requests"], light_requests, daemon, data)
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT EXTRACT(EPOCH FROM completed_at - requested_at) AS latency,"
                " EXTRACT(EPOCH FROM completed_at) AS done FROM workflow_executions"
                " WHERE NOT (workflow_id = ANY(CAST(:light AS uuid[])))"
            ),
            {"light": list(light)},
        ).all()
        spans = conn.execute(
            text(
                "SELECT run_id, count(*) AS n, EXTRACT(EPOCH FROM min(created_at)) AS first,"
                " EXTRACT(EPOCH FROM max(completed_at)) AS last FROM workflow_executions"
                " WHERE NOT (workflow_id = ANY(CAST(:light AS uuid[])))"
                " GROUP BY run_id ORDER BY first"
            ),
            {"light": list(light)},
        ).all()
    engine.dispose()
    for span in spans:
        log(
            f"  run {span.run_id[:8]}: {span.n} workflows, admitted at"
            f" +{float(span.first) - started:.1f} s, done at +{float(span.last) - started:.1f} s"
        )
    runs = len(spans)
    latencies = sorted(float(r.latency) for r in rows)
    elapsed = max(float(r.done) for r in rows) - started
    return {
        "workflows_per_s": len(rows) / elapsed,
        "latency_p50_s": statistics.median(latencies),
        "latency_p95_s": latencies[int(len(latencies) * 0.95) - 1],
        "completed": len(rows),
        "runs": runs,
        "light_latencies_s": sorted(light.values()),
    }


def _log_light_stages(engine: Engine, sent: dict[str, float]) -> None:
    """Where a light-load request's time goes: send → its run created by the sensor tick →
    the run's process started → completed_at (medians, from Dagster's run storage)."""
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT w.workflow_id, r.create_timestamp, r.start_time,"
                " EXTRACT(EPOCH FROM w.completed_at) AS done"
                " FROM workflow_executions w JOIN runs r ON r.run_id = w.run_id"
                " WHERE w.workflow_id = ANY(CAST(:ids AS uuid[]))"
            ),
            {"ids": list(sent)},
        ).all()
    stages = {"tick": [], "queue_and_start": [], "run": []}
    for row in rows:
        created = row.create_timestamp.replace(tzinfo=UTC).timestamp()
        stages["tick"].append(created - sent[str(row.workflow_id)])
        stages["queue_and_start"].append(row.start_time - created)
        stages["run"].append(float(row.done) - row.start_time)
    medians = {k: round(statistics.median(v), 2) for k, v in stages.items() if v}
    log(f"  light load, median seconds per stage: {medians}")


def _light_load(
    engine: Engine,
    bootstrap: str,
    topic: str,
    requests: list[tuple[uuid.UUID, dict[str, Any]]],
    daemon: Any,
    data: Path,
) -> dict[str, float]:
    """One request a second on the idle stack, each sent at once (no batching on the client):
    seconds from its send to its workflow's completed_at, per workflow."""
    log(f"light load: {len(requests)} requests, one a second")
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    sent: dict[str, float] = {}
    for workflow_id, kwargs in requests:
        value = build_request(workflow_id, environment="bench", **kwargs)
        at = sent[str(workflow_id)] = time.time()
        producer.produce(topic, value, str(workflow_id).encode())
        producer.flush(10)
        time.sleep(max(0.0, at + 1.0 - time.time()))
    deadline = time.time() + 120
    while True:
        with engine.connect() as conn:
            done = {
                str(w): at
                for w, at in conn.execute(
                    text(
                        "SELECT workflow_id, EXTRACT(EPOCH FROM completed_at)"
                        " FROM workflow_executions"
                        " WHERE workflow_id = ANY(CAST(:ids AS uuid[]))"
                        " AND completed_at IS NOT NULL"
                    ),
                    {"ids": list(sent)},
                )
            }
        if len(done) == len(sent):
            _log_light_stages(engine, sent)
            return {w: float(done[w]) - sent[w] for w in sent}
        if time.time() > deadline or daemon.poll() is not None:
            raise RuntimeError(
                f"{len(sent) - len(done)} light-load workflows never completed; see"
                f" {data / 'daemon.log'}"
            )
        time.sleep(0.5)


def _daemon_env(
    address: PostgresAddress,
    bootstrap: str,
    topics: dict[str, str],
    data: Path,
    per_run: int,
    concurrency: int,
) -> dict[str, str]:
    home = data / "dagster_home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("POSTGRES_", "KAFKA_"))}
    env.update(address.env())
    env.update(
        {
            "DAGSTER_HOME": str(home),
            "DAGSTER_POSTGRES_URL": address.url(),
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "KAFKA_REQUEST_TOPIC": topics["requests"],
            "KAFKA_WORKFLOW_TOPIC": topics["workflow"],
            "MAX_REQUESTS_PER_RUN": str(per_run),
            "MAX_WORKFLOW_QUEUE_SIZE": str(per_run * concurrency * 2),
            "ORCHESTRATOR_CONCURRENCY": str(concurrency),
            "REQUEST_SENSOR_INTERVAL_S": "1",
            "BRIDGE_ALLOWED_ROOTS": str(ROOT),
        }
    )
    (home / "dagster.yaml").write_text(instance_config(load_settings(env)))
    return env


def _wait_for_first_tick(engine: Engine, daemon: Any, log_path: Path) -> None:
    """Measure a warmed-up deployment: wait until the daemon's request sensor has ticked."""
    deadline = time.time() + 120
    while time.time() < deadline:
        if daemon.poll() is not None:
            raise RuntimeError(f"the daemon exited; see {log_path}")
        with engine.connect() as conn:
            # Dagster creates its tables when the daemon first connects.
            ticked = conn.execute(text("SELECT to_regclass('job_ticks')")).scalar() and (
                conn.execute(text("SELECT count(*) FROM job_ticks")).scalar_one() > 0
            )
        if ticked:
            return
        time.sleep(0.5)
    raise RuntimeError(f"the request sensor never ticked within 120 s; see {log_path}")


def _wait_until_terminal(engine: Engine, total: int, daemon: Any, log_path: Path) -> None:
    deadline = time.time() + 900
    last = -1
    while time.time() < deadline:
        done = _terminal(engine)
        if done != last:
            log(f"  {done}/{total} workflows terminal")
            last = done
        if done >= total:
            return
        if daemon.poll() is not None:
            raise RuntimeError(f"the daemon exited; see {log_path}")
        time.sleep(1)
    raise RuntimeError(f"only {last}/{total} workflows finished in 900 s; see {log_path}")


def _terminal(engine: Engine) -> int:
    with engine.connect() as conn:
        return conn.execute(
            text("SELECT count(*) FROM workflow_executions WHERE state IN ('completed', 'failed')")
        ).scalar_one()


def _topics(bootstrap: str, prefix: str) -> dict[str, str]:
    topics = {"requests": f"{prefix}.requests", "workflow": f"{prefix}.workflows"}
    ensure_topics(
        bootstrap, [*topics.values(), dlq_topic(topics["requests"])], partitions=PARTITIONS
    )
    return topics


if __name__ == "__main__":
    main()
