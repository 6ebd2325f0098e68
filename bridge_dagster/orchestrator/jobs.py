"""The stamp_workflow job and the stale-workflow sweeper, with its schedule."""

import dagster as dg

from bridge_dagster.k8s_config import k8s_resources_tag
from bridge_dagster.orchestrator.ops import (
    gather_intelligence,
    hash_content,
    load_requests,
    record_results,
    stamp_content,
    validate_requests,
)
from bridge_dagster.orchestrator.sweeper import sweep_stale
from bridge_dagster.settings import load_settings

# Retries absorb a broker or database blip inside the run; every step is idempotent.
INFRA_RETRY = dg.RetryPolicy(max_retries=3, delay=2, backoff=dg.Backoff.EXPONENTIAL)
# Checked once, like definitions.py does: a bad STAMP_WORKFLOW_K8S_* stops the load by name.
_settings = load_settings()


@dg.job(
    executor_def=dg.in_process_executor,
    op_retry_policy=INFRA_RETRY,
    # Outputs live in memory, so a retry must run every step again, not resume from the
    # failed one; the steps are idempotent and resume the workflows themselves.
    tags={
        "bridge/kind": "stamping",
        "dagster/retry_strategy": "ALL_STEPS",
        # A batch of MAX_REQUESTS_PER_RUN hashes and stamps in memory: sized by settings.
        **k8s_resources_tag(_settings.stamp_workflow_k8s_cpu, _settings.stamp_workflow_k8s_memory),
    },
)
def stamp_workflow() -> None:
    """Stamp a batch of requests: load → validate → intelligence → hash → stamp → record.

    Runs come from `stamp_request_sensor` (a bounded offset range of the request topic per
    run) or from the Launchpad, with requests typed inline, for example:

        ops:
          load_requests:
            config:
              requests:
                - workflow_id: 0b6e3f5c-8a1d-4c2e-9f7a-2d4b6c8e0a1f
                  content: "print('hello')"
                  file_path: hello.py
                  content_type: text/x-python

    Each workflow moves pending → processing → completed | failed on its own; a bad request
    fails only its workflow and is dead-lettered with the reason. A run with failed
    workflows carries the tag `bridge/failed_workflows` and names each in a warning.

    Writes PostgreSQL tables `workflow_executions`, `fsm_transitions`, `metadata_stamps`
    and `dead_letters`; publishes to `KAFKA_WORKFLOW_TOPIC` and `<KAFKA_REQUEST_TOPIC>.dlq`.
    """
    batch = validate_requests(load_requests())
    record_results(stamp_content(hash_content(gather_intelligence(batch))))


@dg.job(executor_def=dg.in_process_executor, tags={"bridge/kind": "maintenance"})
def sweep_stale_workflows() -> None:
    """Fail workflows left in pending or processing past `ORCHESTRATOR_WORKFLOW_TIMEOUT_MS`
    whose run has ended, with reason `timeout`.

    Writes PostgreSQL tables `workflow_executions` and `fsm_transitions`; publishes
    `stamp_workflow_failed` to `KAFKA_WORKFLOW_TOPIC`."""
    sweep_stale()


sweep_schedule = dg.ScheduleDefinition(
    name="sweep_stale_workflows_every_5_minutes",
    job=sweep_stale_workflows,
    cron_schedule="*/5 * * * *",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Every 5 minutes, fail the workflows that outlived their runs.",
)
