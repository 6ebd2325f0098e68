"""`workflow_event_landing_sensor`: new events on the workflow topic start a landing run.

The run reads its own starting offsets from PostgreSQL, so the request carries nothing but
the lag seen and how long to keep landing; at most one landing run is queued or running.
"""

import dagster as dg

from bridge_dagster.reducer.jobs import SENSOR_LANDING_RUN_S, LandingRunConfig
from bridge_dagster.reducer.sql import query
from bridge_dagster.resources.kafka import BrokerUnavailable, KafkaResource, TopicMissing
from bridge_dagster.resources.postgres import PostgresResource
from bridge_dagster.sensors.frequency import tick_frequency
from bridge_dagster.sensors.stamp_requests import IN_FLIGHT

LAG_TAG = "bridge/lag"


def build_landing_sensor(job: dg.JobDefinition, *, interval_s: int) -> dg.SensorDefinition:
    @dg.sensor(
        name="workflow_event_landing_sensor",
        job=job,
        minimum_interval_seconds=interval_s,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"Starts a `{job.name}` run when the workflow topic (KAFKA_WORKFLOW_TOPIC)"
        " holds events not yet landed in `workflow_events` and no landing is queued or running. "
        + tick_frequency(interval_s, "AGGREGATION_WINDOW_SIZE_MS"),
    )
    def workflow_event_landing_sensor(
        context: dg.SensorEvaluationContext, kafka: KafkaResource, postgres: PostgresResource
    ) -> dg.RunRequest | dg.SkipReason:
        busy = context.instance.get_runs(
            dg.RunsFilter(job_name=job.name, statuses=IN_FLIGHT), limit=1
        )
        if busy:
            return dg.SkipReason(
                f"landing run {busy[0].run_id[:8]} is {busy[0].status.value.lower()}; the next"
                " one starts when it ends"
            )
        lag = landing_lag(kafka, postgres)
        if isinstance(lag, dg.SkipReason):
            return lag
        waiting = sum(lag.values())
        if not waiting:
            return dg.SkipReason(f"no new events on {kafka.workflow_topic}; landing is caught up")
        context.log.info(
            f"{waiting} events on {kafka.workflow_topic} are not landed yet: starting {job.name}"
        )
        # The run keeps landing a pass per tick interval for a while: see SENSOR_LANDING_RUN_S.
        config = LandingRunConfig(keep_landing_s=SENSOR_LANDING_RUN_S, every_s=interval_s)
        return dg.RunRequest(
            tags={LAG_TAG: str(waiting)},
            run_config=dg.RunConfig(ops={"land_events": config}),
        )

    return workflow_event_landing_sensor


def landing_lag(kafka: KafkaResource, postgres: PostgresResource) -> dict[int, int] | dg.SkipReason:
    """Events per partition on the workflow topic that landing has not taken yet."""
    try:
        with kafka.consumer() as consumer:
            marks = kafka.watermarks(consumer, kafka.workflow_topic)
    except BrokerUnavailable as exc:
        return dg.SkipReason(f"{exc}; will retry next tick (check KAFKA_BOOTSTRAP_SERVERS)")
    except TopicMissing as exc:
        return dg.SkipReason(
            f"{exc}; it appears with the first workflow event, or set KAFKA_WORKFLOW_TOPIC"
        )
    with postgres.engine().connect() as conn:
        landed = dict(
            conn.execute(query("landing_positions"), {"topic": kafka.workflow_topic}).all()
        )
    # A position past the end means the topic was recreated; landing handles that itself.
    return {
        p: high - landed.get(p, low) if landed.get(p, low) <= high else high - low
        for p, (low, high) in marks.items()
    }
