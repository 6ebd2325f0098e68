"""Failing workflows whose run died and was not retried in time.

A crashed run is retried by Dagster (run_retries in dagster.yaml), and the retry resumes
the workflows the crash left unfinished; once every retry has ended, the request sensor
hands them to a new run, up to BRIDGE_MAX_WORKFLOW_ATTEMPTS runs. A workflow still in
pending or processing after ORCHESTRATOR_WORKFLOW_TIMEOUT_MS has outlived all of those: it
is failed with a reason and a stamp_workflow_failed event, the last resort, so a request
that crashes its run every time cannot crash runs forever. Its producer may resubmit it
under a new workflow id.

The sweep also relays the workflow events a crash left in the outbox unsent (its own
transaction relays like any step's), and deletes the sent events of workflows that have
ended, which bounds the outbox by the workflows in flight.
"""

import dagster as dg

from bridge_dagster.orchestrator import event_outbox, workflow
from bridge_dagster.orchestrator.context import workflow_context
from bridge_dagster.orchestrator.store import stale_workflows
from bridge_dagster.resources.kafka import KafkaResource
from bridge_dagster.resources.postgres import PostgresResource
from bridge_dagster.resources.workflow_settings import WorkflowSettings

# A run with any of these statuses may still be working on its workflows (or admit its range).
UNFINISHED = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]


@dg.op
def sweep_stale(
    context: dg.OpExecutionContext,
    postgres: PostgresResource,
    kafka: KafkaResource,
    workflow_settings: WorkflowSettings,
) -> int:
    """Fail every workflow unfinished past the timeout whose run has ended; return how many."""
    timeout_ms = workflow_settings.workflow_timeout_ms
    with postgres.engine().connect() as conn:
        stale = stale_workflows(conn, timeout_ms)
    alive = {run_id for run_id in {s.run_id for s in stale} if _run_alive(context.instance, run_id)}
    orphaned = [s for s in stale if s.run_id not in alive]
    with workflow_context(context, postgres, kafka, workflow_settings) as ctx:
        swept = workflow.fail_stale(ctx, orphaned, timeout_ms)
    pruned = event_outbox.prune_sent(postgres.engine())
    context.add_output_metadata(
        {
            "stale_found": len(stale),
            "still_running": len(stale) - len(orphaned),
            "failed": swept,
            "outbox_events_pruned": pruned,
        }
    )
    return swept


def _run_alive(instance: dg.DagsterInstance, root_run_id: str | None) -> bool:
    """Whether the run that owns a workflow, or a retry of it, may still finish it."""
    if root_run_id is None:
        return False
    runs = instance.get_runs(dg.RunsFilter(run_ids=[root_run_id], statuses=UNFINISHED))
    retries = instance.get_runs(
        dg.RunsFilter(tags={"dagster/root_run_id": root_run_id}, statuses=UNFINISHED)
    )
    return bool(runs or retries)
