"""Failing workflows whose run died and was not retried in time.

A crashed run is retried by Dagster (run_retries in dagster.yaml), and the retry resumes
the workflows the crash left unfinished. A workflow still in pending or processing after
ORCHESTRATOR_WORKFLOW_TIMEOUT_MS has outlived those retries: it is failed with a reason and
a stamp_workflow_failed event, never silently re-driven, so a request that crashes its run
every time cannot crash runs forever. Its producer may resubmit it under a new workflow id.
"""

import dagster as dg

from bridge_dagster.orchestrator import workflow
from bridge_dagster.orchestrator.events_out import ProducerSink, WorkflowEvents
from bridge_dagster.orchestrator.ops import WorkflowSettings
from bridge_dagster.orchestrator.store import stale_workflows
from bridge_dagster.resources.kafka import KafkaResource
from bridge_dagster.resources.postgres import PostgresResource


@dg.op
def sweep_stale(
    context: dg.OpExecutionContext,
    postgres: PostgresResource,
    kafka: KafkaResource,
    workflow_settings: WorkflowSettings,
) -> int:
    """Fail every workflow unfinished for longer than the timeout; return how many."""
    with postgres.engine().connect() as conn:
        stale = stale_workflows(conn, workflow_settings.workflow_timeout_ms)
    sink = ProducerSink(kafka.producer())
    events = WorkflowEvents(
        sink,
        kafka.workflow_topic,
        environment=workflow_settings.environment,
        signing_key=workflow_settings.signing_key,
    )
    swept = workflow.fail_stale(
        postgres.engine(), events, stale, workflow_settings.workflow_timeout_ms
    )
    sink.flush()
    context.add_output_metadata({"stale_found": len(stale), "failed": swept})
    return swept
