"""`stamp_request_sensor`: new offsets on the request topic become `stamp_workflow` runs.

A run carries offset ranges, never message bodies; its first op reads them from Kafka.
"""

from __future__ import annotations

import uuid
from collections import defaultdict

import dagster as dg
from sqlalchemy import Connection
from sqlalchemy.exc import SQLAlchemyError

from bridge_dagster.orchestrator import range_ledger, resumption
from bridge_dagster.orchestrator.range_ledger import RANGE_TAG, REQUESTED_TAG
from bridge_dagster.orchestrator.resumption import ATTEMPT_TAG, RESUME_TAG
from bridge_dagster.resources.kafka import BrokerUnavailable, KafkaResource, TopicMissing
from bridge_dagster.resources.postgres import PostgresResource
from bridge_dagster.sensors.cursor import (
    MAX_RUNS_PER_TICK,
    Cursor,
    CursorError,
    Plan,
    PlannedRun,
    plan_runs,
)
from bridge_dagster.sensors.frequency import tick_frequency
from bridge_dagster.sensors.range_recovery import ended, run_key_again, stalled

REQUESTS_TAG = "bridge/requests"
SOURCE_TAG = "bridge/source"

# Runs that hold requests not yet finished: waiting in the run queue or executing.
IN_FLIGHT = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


def build_stamp_request_sensor(
    job: dg.JobDefinition,
    *,
    max_requests_per_run: int,
    max_queue_size: int,
    interval_s: int,
    max_workflow_attempts: int,
) -> dg.SensorDefinition:
    """The sensor for `job`, which must take `ranges` config on its `load_requests` op."""

    @dg.sensor(
        name="stamp_request_sensor",
        job=job,
        minimum_interval_seconds=interval_s,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            f"Turns new offsets on the request topic (KAFKA_REQUEST_TOPIC) into `{job.name}`"
            f" runs of at most {max_requests_per_run} requests (MAX_REQUESTS_PER_RUN); pauses"
            f" while {max_queue_size} requests (MAX_WORKFLOW_QUEUE_SIZE) are queued or running. "
            + tick_frequency(interval_s, "REQUEST_SENSOR_INTERVAL_S")
        ),
    )
    def stamp_request_sensor(
        context: dg.SensorEvaluationContext, kafka: KafkaResource, postgres: PostgresResource
    ) -> dg.SensorResult | dg.SkipReason:
        in_flight, runs = requests_in_flight(context.instance, job.name)
        if in_flight >= max_queue_size:
            return dg.SkipReason(
                f"backpressure: {in_flight} requests in {runs} {job.name} runs are queued or"
                f" running, at the limit of {max_queue_size}; new requests wait on the topic"
                " (raise MAX_WORKFLOW_QUEUE_SIZE or ORCHESTRATOR_CONCURRENCY to admit more)"
            )
        try:
            cursor = Cursor.from_json(context.cursor)
        except CursorError as exc:
            return dg.SkipReason(str(exc))
        watermarks = read_watermarks(kafka)
        if isinstance(watermarks, dg.SkipReason):
            return watermarks

        try:
            with postgres.engine().begin() as conn:
                again, plan = hand_out(
                    conn,
                    context.instance,
                    cursor,
                    watermarks,
                    topic=kafka.request_topic,
                    max_per_run=max_requests_per_run,
                    budget=max_queue_size - in_flight,
                )
                resumes = resume_workflows(conn, context.instance, max_workflow_attempts)
        except SQLAlchemyError as exc:
            return dg.SkipReason(
                f"the ledger of handed-out ranges in PostgreSQL could not be written"
                f" ({type(exc).__name__}: {str(exc).splitlines()[0]}); will retry next tick"
                " (check POSTGRES_HOST, POSTGRES_PORT and that the database is running)"
            )
        if again:
            context.log.warning(
                f"requested again {len(again)} ranges ({sum(e.size for e in again)} requests)"
                " whose runs all ended without admitting them: "
                + ", ".join(f"{e.range_key} (request {e.requested + 1})" for e in again)
            )
        for message in plan_warnings(plan, kafka.request_topic):
            context.log.warning(message)
        if plan.new_partitions:
            context.log.info(
                f"{kafka.request_topic}: partitions {list(plan.new_partitions)} start at their"
                " oldest retained offsets"
            )
        if resumes:
            context.log.warning(
                f"handed the unfinished workflows of ended runs to {len(resumes)} new runs: "
                + ", ".join(
                    f"{r.tags[REQUESTS_TAG]} workflows (attempt {r.tags[ATTEMPT_TAG]})"
                    for r in resumes
                )
            )
        if not plan.runs and not again and not resumes:
            return dg.SensorResult(
                skip_reason=f"no new requests on {kafka.request_topic}",
                cursor=plan.cursor.to_json(),
            )
        context.log.info(
            f"requested {len(plan.runs)} {job.name} runs for {plan.size} new requests on"
            f" {kafka.request_topic}; {plan.backlog} wait for later ticks"
        )
        return dg.SensorResult(
            run_requests=resumes
            + [run_request_again(e) for e in again]
            + [run_request(run, kafka.request_topic) for run in plan.runs],
            cursor=plan.cursor.to_json(),
        )

    return stamp_request_sensor


def hand_out(
    conn: Connection,
    instance: dg.DagsterInstance,
    cursor: Cursor,
    watermarks: dict[int, tuple[int, int]],
    *,
    topic: str,
    max_per_run: int,
    budget: int,
) -> tuple[list[range_ledger.Entry], Plan]:
    """The ledger's ranges to request again and the plan of new ones, recorded in `conn`'s
    transaction, which commits before the tick returns and so before its cursor is saved."""
    entries = range_ledger.open_entries(conn, topic, limit=MAX_RUNS_PER_TICK * 40)
    handed = [
        e
        for e in entries
        if cursor.topic == topic and range_ledger.handed_out(e, cursor.generation, cursor.offsets)
    ]
    again = stalled(instance, handed)[:MAX_RUNS_PER_TICK]
    plan = plan_runs(
        cursor,
        watermarks,
        topic=topic,
        max_per_run=max_per_run,
        budget=max(0, budget - sum(e.size for e in again)),
    )
    # Recorded by a tick whose cursor was never saved: this plan hands those offsets out.
    range_ledger.forget(conn, [e.range_key for e in entries if e not in handed])
    range_ledger.requested_again(conn, [e.range_key for e in again])
    range_ledger.record(
        conn,
        [
            range_ledger.Entry(
                run.run_key,
                topic,
                plan.cursor.generation,
                tuple(r.as_config(topic) for r in run.ranges),
                run.size,
            )
            for run in plan.runs
        ],
    )
    return again, plan


def requests_in_flight(instance: dg.DagsterInstance, job_name: str) -> tuple[int, int]:
    """Requests held by unfinished runs of the job, and how many runs hold them."""
    runs = instance.get_runs(dg.RunsFilter(job_name=job_name, statuses=IN_FLIGHT))
    # A run launched by hand may lack the tag or carry text; it must not fail every tick.
    sizes = [run.tags.get(REQUESTS_TAG, "") for run in runs]
    return sum(int(size) for size in sizes if size.isdigit()), len(runs)


def read_watermarks(kafka: KafkaResource) -> dict[int, tuple[int, int]] | dg.SkipReason:
    """Watermarks of the request topic, or why they could not be read and what to do."""
    try:
        with kafka.consumer() as consumer:
            return kafka.watermarks(consumer, kafka.request_topic)
    except BrokerUnavailable as exc:
        return dg.SkipReason(
            f"{exc}; will retry next tick (check KAFKA_BOOTSTRAP_SERVERS and that the broker is"
            " running)"
        )
    except TopicMissing as exc:
        return dg.SkipReason(
            f"{exc}; create it or set KAFKA_REQUEST_TOPIC to the topic producers write to"
        )


def resume_workflows(
    conn: Connection, instance: dg.DagsterInstance, max_attempts: int
) -> list[dg.RunRequest]:
    """Runs taking over the unfinished workflows whose runs have all ended; a workflow past
    `max_attempts` goes to one too, which fails it with its reason."""
    owners = resumption.unfinished_owners(conn, max_attempts, limit=MAX_RUNS_PER_TICK * 40)
    requests = []
    for owner in ended(instance, owners)[:MAX_RUNS_PER_TICK]:
        key = f"resume/{uuid.uuid4()}"
        handed = resumption.hand_over(conn, owner, key, max_attempts)
        if handed:
            requests.append(resume_request(key, handed))
    return requests


def resume_request(key: str, handed: list[resumption.HandedOver]) -> dg.RunRequest:
    """A run reading the handed-over workflows' own request offsets."""
    offsets: dict[tuple[str, int], list[int]] = defaultdict(list)
    for w in handed:
        topic, partition, offset = w.request_offset.rsplit("/", 2)
        offsets[topic, int(partition)].append(int(offset))
    ranges = [
        {"topic": topic, "partition": partition, "start": start, "end": end}
        for (topic, partition), found in sorted(offsets.items())
        for start, end in _runs_of(sorted(set(found)))
    ]
    return dg.RunRequest(
        run_key=key,
        run_config={"ops": {"load_requests": {"config": {"ranges": ranges}}}},
        tags={
            REQUESTS_TAG: str(len(handed)),
            SOURCE_TAG: "kafka",
            RESUME_TAG: key,
            ATTEMPT_TAG: str(max(w.attempts for w in handed)),
        },
    )


def _runs_of(offsets: list[int]) -> list[tuple[int, int]]:
    """Sorted offsets as half-open ranges of consecutive ones."""
    ranges: list[tuple[int, int]] = []
    for offset in offsets:
        if ranges and ranges[-1][1] == offset:
            ranges[-1] = (ranges[-1][0], offset + 1)
        else:
            ranges.append((offset, offset + 1))
    return ranges


def run_request(run: PlannedRun, topic: str) -> dg.RunRequest:
    ranges = [r.as_config(topic) for r in run.ranges]
    return dg.RunRequest(
        run_key=run.run_key,
        run_config={"ops": {"load_requests": {"config": {"ranges": ranges}}}},
        tags={REQUESTS_TAG: str(run.size), SOURCE_TAG: "kafka", RANGE_TAG: run.run_key},
    )


def run_request_again(entry: range_ledger.Entry) -> dg.RunRequest:
    """The same ranges under a new run key, tagged with how many times they were requested."""
    return dg.RunRequest(
        run_key=run_key_again(entry),
        run_config={"ops": {"load_requests": {"config": {"ranges": list(entry.ranges)}}}},
        tags={
            REQUESTS_TAG: str(entry.size),
            SOURCE_TAG: "kafka",
            RANGE_TAG: entry.range_key,
            REQUESTED_TAG: str(entry.requested + 1),
        },
    )


def plan_warnings(plan: Plan, topic: str) -> list[str]:
    """What an operator should know about offsets that were not handed out in order."""
    warnings = [
        f"{topic}[{r.partition}]: cursor {r.cursor} is past the high watermark {r.high}; the"
        f" topic was recreated, so reading starts again at offset {r.low}"
        for r in plan.resets
    ]
    warnings += [
        f"{topic}[{lost.partition}]: {lost.count} requests (offsets [{lost.cursor}, {lost.low}))"
        " were deleted by retention before they were read; raise the topic's retention.ms or"
        " ORCHESTRATOR_CONCURRENCY if this repeats"
        for lost in plan.lost
    ]
    if plan.vanished_partitions:
        warnings.append(
            f"{topic}: partitions {list(plan.vanished_partitions)} no longer exist; the topic was"
            " recreated with fewer partitions"
        )
    if plan.topic_changed_from:
        warnings.append(
            f"request topic changed from {plan.topic_changed_from} to {topic}; reading {topic}"
            " from its oldest retained offsets"
        )
    return warnings
