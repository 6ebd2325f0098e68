"""The workflow Context for an op: the engine, the event sink and the limits, from resources."""

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg

from bridge_dagster.events.topics import dlq_topic
from bridge_dagster.orchestrator import workflow
from bridge_dagster.orchestrator.events_out import ProducerSink, WorkflowEvents
from bridge_dagster.resources.kafka import KafkaResource
from bridge_dagster.resources.postgres import PostgresResource
from bridge_dagster.resources.workflow_settings import WorkflowSettings


@contextmanager
def workflow_context(
    context: dg.OpExecutionContext,
    postgres: PostgresResource,
    kafka: KafkaResource,
    settings: WorkflowSettings,
) -> Iterator[workflow.Context]:
    sink = ProducerSink(kafka.producer())
    events = WorkflowEvents(
        kafka.workflow_topic,
        environment=settings.environment,
        signing_key=settings.signing_key,
    )
    yield workflow.Context(
        engine=postgres.engine(),
        events=events,
        sink=sink,
        dlq_topic=dlq_topic(kafka.request_topic),
        # A retried run carries its root's id, so it may resume the workflows the crashed
        # attempt left unfinished.
        run_id=context.run.root_run_id or context.run_id,
        default_namespace=settings.default_namespace,
        max_content_bytes=settings.max_content_bytes,
        max_run_content_bytes=settings.max_run_content_bytes,
        allowed_roots=tuple(Path(r) for r in settings.allowed_roots),
        warn=context.log.warning,
    )
