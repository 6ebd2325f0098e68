"""`/metrics`: the deployment guide's metrics, computed from what is stored at each scrape.

Nothing is counted in this process: workflows come from `workflow_executions`, aggregations
from `reducer_aggregations`, the queues from the Dagster instance and the stale hours, and
lag from the broker's high watermarks against each reader's stored position. Any number of
exporters therefore agree, and a restart loses nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from sqlalchemy import Connection, text

from bridge_dagster.exporter.dagster_state import request_sensor_cursor, requests_waiting_in_runs
from bridge_dagster.exporter.lag import consumer_lag, request_sensor_positions
from bridge_dagster.exporter.sources import Sources
from bridge_dagster.reducer.aggregate import HOURLY_TABLE_NAMES
from bridge_dagster.reducer.sql import query

_log = logging.getLogger(__name__)

# A workflow takes milliseconds to minutes; the upper buckets reach the workflow timeout.
WORKFLOW_BUCKETS_MS = (10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000)
# One aggregation statement over an hour of events: milliseconds to tens of seconds.
AGGREGATION_BUCKETS_MS = (5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000)


def _bucket_columns(column: str, bounds: Sequence[int]) -> str:
    # Cumulative counts, as Prometheus buckets are; the bounds are constants of this module.
    return ", ".join(
        f"count(*) FILTER (WHERE {column} <= {bound}) AS le_{i}" for i, bound in enumerate(bounds)
    )


WORKFLOWS_SQL = text(f"""
SELECT namespace, state, count(*) AS finished, count(duration_ms) AS timed,
       COALESCE(sum(duration_ms), 0) AS duration_sum,
       {_bucket_columns("duration_ms", WORKFLOW_BUCKETS_MS)}
FROM workflow_executions
WHERE state IN ('completed', 'failed')
GROUP BY namespace, state
""")

# A failure's error starts with its code ("bad_stamp_type: …", "timeout: …").
WORKFLOW_ERRORS_SQL = text("""
SELECT namespace, COALESCE(substring(error FROM '^([a-z0-9_]+):'), 'unknown') AS code,
       count(*) AS failed
FROM workflow_executions
WHERE state = 'failed'
GROUP BY 1, 2
""")

# The partial index on unsent batches keeps this small however many were sent.
OUTBOX_UNSENT_SQL = text(
    "SELECT COALESCE(sum(events), 0) FROM workflow_outbox_batches WHERE sent_at IS NULL"
)

AGGREGATIONS_SQL = text(f"""
SELECT asset, status, count(*) AS attempts, sum(duration_ms) AS duration_sum,
       COALESCE(sum(events), 0) AS items, {_bucket_columns("duration_ms", AGGREGATION_BUCKETS_MS)}
FROM reducer_aggregations
GROUP BY asset, status
""")


class BridgeCollector(Collector):
    """Reads every metric afresh at each scrape. A source that cannot be read leaves its
    metrics out and sets `bridge_exporter_source_up{source}` to 0, so one broken part does not
    hide the others."""

    def __init__(self, sources: Sources) -> None:
        self.sources = sources

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "bridge_exporter_source_up",
            "1 when the exporter could read the source at this scrape, else 0",
            labels=["source"],
        )
        for source, read in (
            ("postgres", self._from_postgres),
            ("dagster", self._from_dagster),
            ("kafka", self._from_kafka),
        ):
            try:
                metrics = list(read())
            except Exception as exc:  # a source that fails is reported, not raised
                _log.warning("metrics from %s left out of this scrape: %s", source, exc)
                up.add_metric([source], 0)
                continue
            up.add_metric([source], 1)
            yield from metrics
        yield up

    def _from_postgres(self) -> Iterator[Metric]:
        with self.sources.engine.connect() as conn:
            workflows = conn.execute(WORKFLOWS_SQL).mappings().all()
            errors = conn.execute(WORKFLOW_ERRORS_SQL).all()
            aggregations = conn.execute(AGGREGATIONS_SQL).mappings().all()
            stale_hours = self._stale_hours(conn)
            unsent = conn.execute(OUTBOX_UNSENT_SQL).scalar_one()
        yield from _workflow_metrics(workflows)
        yield _counter(
            "workflow_orchestration_errors_total",
            "Failed workflows, by namespace and the code their error starts with",
            ["namespace", "code"],
            [([namespace, code], failed) for namespace, code, failed in errors],
        )
        yield from _aggregation_metrics(aggregations)
        yield _gauge(
            "aggregation_queue_size",
            "Hours with landed events that some reducer table has not aggregated since",
            stale_hours,
        )
        yield _gauge(
            "bridge_workflow_outbox_unsent_events",
            "Workflow events committed but not yet on the broker (workflow_outbox); it grows"
            " while the broker is away and drains with the next step or sweep",
            unsent,
        )

    def _stale_hours(self, conn: Connection) -> int:
        params = {
            "start": self.sources.settings.reducer_partitions_start,
            "end": datetime.now(UTC) + timedelta(hours=1),
            "tables": list(HOURLY_TABLE_NAMES),
        }
        return len(conn.execute(query("stale_hours"), params).all())

    def _from_dagster(self) -> Iterator[Metric]:
        instance = self.sources.instance.get()
        yield _gauge(
            "workflow_queue_size",
            "Requests held by queued or running stamp_workflow runs (MAX_WORKFLOW_QUEUE_SIZE"
            " bounds it; requests not yet handed to a run are in bridge_consumer_lag)",
            requests_waiting_in_runs(instance),
        )

    def _from_kafka(self) -> Iterator[Metric]:
        kafka = self.sources.kafka
        with kafka.consumer() as consumer:
            request_marks = kafka.watermarks(consumer, kafka.request_topic)
            workflow_marks = kafka.watermarks(consumer, kafka.workflow_topic)
        cursor = request_sensor_cursor(self.sources.instance.get())
        with self.sources.engine.connect() as conn:
            landed = dict(
                conn.execute(query("landing_positions"), {"topic": kafka.workflow_topic}).all()
            )
        readers = (
            (
                "stamp_request_sensor",
                kafka.request_topic,
                consumer_lag(request_sensor_positions(cursor, kafka.request_topic), request_marks),
            ),
            ("landing", kafka.workflow_topic, consumer_lag(landed, workflow_marks)),
        )
        lag = GaugeMetricFamily(
            "bridge_consumer_lag",
            "Messages between where a reader resumes and the partition's high watermark",
            labels=["consumer", "topic", "partition"],
        )
        for consumer_name, topic, per_partition in readers:
            for partition, behind in sorted(per_partition.items()):
                lag.add_metric([consumer_name, topic, str(partition)], behind)
        yield lag


def _workflow_metrics(rows: Sequence[Any]) -> Iterator[Metric]:
    labels = ["namespace", "status"]
    duration = HistogramMetricFamily(
        "workflow_orchestration_duration_ms",
        "Time from a workflow's creation to its end, of finished workflows that recorded it",
        labels=labels,
    )
    total = CounterMetricFamily(
        "workflow_orchestration_total",
        "Finished workflows, by namespace and status (completed or failed)",
        labels=labels,
    )
    for row in rows:
        names = [row["namespace"], row["state"]]
        total.add_metric(names, row["finished"])
        duration.add_metric(
            names,
            buckets=_buckets(row, WORKFLOW_BUCKETS_MS, row["timed"]),
            sum_value=float(row["duration_sum"]),
        )
    yield duration
    yield total


def _aggregation_metrics(rows: Sequence[Any]) -> Iterator[Metric]:
    duration = HistogramMetricFamily(
        "aggregation_duration_ms",
        "Time of one reducer table's aggregation over a range of hours, by outcome",
        labels=["asset", "status"],
    )
    items: dict[str, int] = {}
    errors: dict[str, int] = {}
    for row in rows:
        asset = row["asset"]
        duration.add_metric(
            [asset, row["status"]],
            buckets=_buckets(row, AGGREGATION_BUCKETS_MS, row["attempts"]),
            sum_value=float(row["duration_sum"]),
        )
        if row["status"] == "completed":
            items[asset] = int(row["items"])
        else:
            errors[asset] = int(row["attempts"])
    yield duration
    yield _counter(
        "aggregation_items_total",
        "Events read by completed aggregations, per reducer table (a re-aggregated hour counts"
        " again)",
        ["asset"],
        [([asset], n) for asset, n in sorted(items.items())],
    )
    yield _counter(
        "aggregation_errors_total",
        "Failed aggregation attempts, per reducer table",
        ["asset"],
        [([asset], n) for asset, n in sorted(errors.items())],
    )


def _buckets(row: Any, bounds: Sequence[int], count: int) -> list[tuple[str, float]]:
    cumulative = [(str(bound), float(row[f"le_{i}"])) for i, bound in enumerate(bounds)]
    return [*cumulative, ("+Inf", float(count))]


def _counter(
    name: str, documentation: str, labels: list[str], samples: list[tuple[list[str], int]]
) -> CounterMetricFamily:
    counter = CounterMetricFamily(name, documentation, labels=labels)
    for values, number in samples:
        counter.add_metric(values, number)
    return counter


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)
