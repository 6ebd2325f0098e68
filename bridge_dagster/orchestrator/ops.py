"""The ops of `stamp_workflow`: each a short recipe around one step of `workflow.py`."""

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import dagster as dg
from pydantic import Field

from bridge_dagster.events.requests import build_request
from bridge_dagster.events.topics import dlq_topic
from bridge_dagster.orchestrator import store, workflow
from bridge_dagster.orchestrator.context import workflow_context
from bridge_dagster.orchestrator.range_ledger import RANGE_TAG
from bridge_dagster.orchestrator.resumption import RESUME_TAG
from bridge_dagster.resources.kafka import KafkaResource
from bridge_dagster.resources.postgres import PostgresResource
from bridge_dagster.resources.stamping import StampingResource
from bridge_dagster.resources.tree import TreeResource
from bridge_dagster.resources.workflow_settings import WorkflowSettings

# Outputs pass between ops in memory: the job runs in process, and a re-execution starts
# from load_requests anyway, since every step is idempotent.
IO = "workflow_io"
# A run that failed workflows carries their count, so the runs list shows it at a glance.
FAILED_TAG = "bridge/failed_workflows"
# Enough to see what went wrong from the run's log; the rest are one command away.
MAX_FAILURE_WARNINGS = 20
MAX_REASON_CHARS = 500
# The failures are looked up by time (indexed) and run id; this allows for a database clock
# behind the run's.
CLOCK_SKEW = timedelta(minutes=10)


class OffsetRange(dg.Config):
    topic: str
    partition: int
    start: int
    end: int


class InlineRequest(dg.Config):
    """One request typed into the Launchpad; the fields of the request message payload."""

    workflow_id: str
    content: str | None = None
    content_b64: str | None = None
    file_path: str | None = None
    namespace: str | None = None
    content_type: str | None = None
    stamp_type: str = "lightweight"
    enable_intelligence: bool = False
    intelligence_context: str | None = None
    metadata: dict[str, str] = Field(default_factory=dict)
    write_back: bool = False


class LoadRequestsConfig(dg.Config):
    ranges: list[OffsetRange] = Field(default_factory=list)
    requests: list[InlineRequest] = Field(default_factory=list)


@dataclass
class Batch:
    """What flows from op to op: the live workflows and the run's running totals."""

    workflows: list[workflow.Workflow]
    # When its steps stop calling the stamping and tree services.
    deadline: workflow.Deadline
    counts: dict[str, int] = field(default_factory=dict)
    timings_s: dict[str, float] = field(default_factory=dict)
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def advance(self, step: str, survivors: list[workflow.Workflow], started: float) -> None:
        """Keep the workflows that came through `step`; the others failed in it."""
        self.counts["failed"] += len(self.workflows) - len(survivors)
        self.workflows = survivors
        self.timings_s[step] = time.perf_counter() - started


@dg.op(out=dg.Out(io_manager_key=IO))
def load_requests(
    context: dg.OpExecutionContext, config: LoadRequestsConfig, kafka: KafkaResource
) -> list[workflow.Incoming]:
    """Read the run's offset ranges from the request topic, or take the Launchpad requests."""
    started = time.perf_counter()
    incoming = [
        workflow.inline_incoming(_inline_raw(r, index), index, r.model_dump_json())
        for index, r in enumerate(config.requests)
    ]
    with kafka.consumer() as consumer:
        for r in config.ranges:
            messages = kafka.read_range(consumer, r.topic, r.partition, r.start, r.end)
            incoming += [workflow.Incoming.from_message(m) for m in messages]
    context.add_output_metadata(
        {
            "requests": len(incoming),
            # Half-open like every range here: `end` is the first offset not read.
            "offsets [start, end)": ", ".join(
                f"{r.topic}[{r.partition}] [{r.start}, {r.end})" for r in config.ranges
            )
            or "inline",
            "read_s": round(time.perf_counter() - started, 4),
        }
    )
    return incoming


@dg.op(out=dg.Out(io_manager_key=IO))
def validate_requests(
    context: dg.OpExecutionContext,
    incoming: list[workflow.Incoming],
    postgres: PostgresResource,
    kafka: KafkaResource,
    workflow_settings: WorkflowSettings,
) -> Batch:
    """Parse and admit each request (pending), then load its content (processing)."""
    started = time.perf_counter()
    # Its dead letters must have somewhere to go, even on a broker that creates no topics.
    kafka.ensure_topic(dlq_topic(kafka.request_topic), like=kafka.request_topic)
    with workflow_context(context, postgres, kafka, workflow_settings) as ctx:
        admission = workflow.admit(
            ctx, incoming, context.run.tags.get(RANGE_TAG), context.run.tags.get(RESUME_TAG)
        )
        ready = workflow.start(ctx, admission.accepted)
    batch = Batch(ready, workflow.Deadline.for_batch(workflow_settings.step_timeout_ms))
    batch.counts = {
        "received": len(incoming),
        "duplicates": admission.duplicates,
        "failed": admission.failed + len(admission.accepted) - len(ready),
        "dead_lettered": admission.dead_lettered,
    }
    batch.timings_s["validate"] = time.perf_counter() - started
    context.add_output_metadata({**batch.counts, "processing": len(ready)})
    return batch


@dg.op(out=dg.Out(io_manager_key=IO))
def gather_intelligence(
    context: dg.OpExecutionContext,
    batch: Batch,
    postgres: PostgresResource,
    kafka: KafkaResource,
    workflow_settings: WorkflowSettings,
    tree: TreeResource,
) -> Batch:
    """Ask the project tree about each workflow that enabled intelligence."""
    started = time.perf_counter()
    with workflow_context(context, postgres, kafka, workflow_settings) as ctx:
        moving = workflow.gather_intelligence(ctx, batch.workflows, tree, batch.deadline)
    batch.advance("intelligence", moving, started)
    asked = [w for w in batch.workflows if w.intelligence is not None]
    degraded = sum(1 for w in asked if w.intelligence and w.intelligence.get("degraded"))
    context.add_output_metadata({"asked": len(asked), "degraded": degraded})
    return batch


@dg.op(out=dg.Out(io_manager_key=IO))
def hash_content(
    context: dg.OpExecutionContext,
    batch: Batch,
    postgres: PostgresResource,
    kafka: KafkaResource,
    workflow_settings: WorkflowSettings,
) -> Batch:
    """BLAKE3 of each workflow's canonical content."""
    started = time.perf_counter()
    with workflow_context(context, postgres, kafka, workflow_settings) as ctx:
        hashed = workflow.hash_all(ctx, batch.workflows)
    batch.advance("hash", hashed, started)
    context.add_output_metadata({"hashed": len(hashed), "bytes": sum(w.file_size for w in hashed)})
    return batch


@dg.op(out=dg.Out(io_manager_key=IO))
def stamp_content(
    context: dg.OpExecutionContext,
    batch: Batch,
    postgres: PostgresResource,
    kafka: KafkaResource,
    workflow_settings: WorkflowSettings,
    stamping: StampingResource,
) -> Batch:
    """Stamp each workflow's content, lightweight or rich as it asked."""
    started = time.perf_counter()
    with workflow_context(context, postgres, kafka, workflow_settings) as ctx:
        stamped = workflow.stamp_all(ctx, batch.workflows, stamping.stamp, batch.deadline)
    batch.advance("stamp", stamped, started)
    context.add_output_metadata({"stamped": len(stamped)})
    return batch


@dg.op
def record_results(
    context: dg.OpExecutionContext,
    batch: Batch,
    postgres: PostgresResource,
    kafka: KafkaResource,
    workflow_settings: WorkflowSettings,
) -> dg.Output[dict[str, Any]]:
    """Store stamps, complete the workflows, and report the run's numbers."""
    started = time.perf_counter()
    with workflow_context(context, postgres, kafka, workflow_settings) as ctx:
        done = workflow.record(ctx, batch.workflows)
    batch.advance("record", done, started)
    batch.counts["completed"] = len(done)
    summary = {**batch.counts, **{f"{step}_s": round(s, 4) for step, s in batch.timings_s.items()}}
    context.log.info(
        f"{summary['completed']} completed, {summary['failed']} failed,"
        f" {summary['duplicates']} duplicates skipped, {summary['dead_lettered']} dead-lettered"
    )
    if batch.counts["failed"]:
        _report_failures(context, postgres, kafka, batch)
    return dg.Output(summary, metadata=summary)


def _report_failures(
    context: dg.OpExecutionContext, postgres: PostgresResource, kafka: KafkaResource, batch: Batch
) -> None:
    """Tag the run with its failed count and name each failed workflow in a WARNING."""
    failed = batch.counts["failed"]
    context.instance.add_run_tags(context.run_id, {FAILED_TAG: str(failed)})
    since = batch.started_at - CLOCK_SKEW
    with postgres.engine().connect() as conn:
        listed, total = store.failed_in_run(
            conn, context.run.root_run_id or context.run_id, since, MAX_FAILURE_WARNINGS
        )
    for w in listed:
        code, _, reason = w.error.partition(": ")
        context.log.warning(
            f"workflow {w.workflow_id} failed ({code}): {reason[:MAX_REASON_CHARS]}"
        )
    if total > len(listed):
        context.log.warning(
            f"{total - len(listed)} more workflows failed in this run; list them all with"
            f" `bridge-dagster status --failed --since {since.isoformat(timespec='seconds')}`"
        )
    if failed > total:
        context.log.warning(
            f"{failed - total} failed requests created no workflow of their own (no usable"
            " workflow id, or one that another request holds); their messages are on"
            f" {dlq_topic(kafka.request_topic)} with the reason"
        )


def _inline_raw(request: InlineRequest, index: int) -> bytes:
    try:
        workflow_id = UUID(request.workflow_id)
    except ValueError:
        raise dg.Failure(
            f"requests[{index}].workflow_id {request.workflow_id!r} is not a UUID; use one like"
            " 0b6e3f5c-8a1d-4c2e-9f7a-2d4b6c8e0a1f"
        ) from None
    fields = request.model_dump(exclude={"workflow_id"})
    if not fields["metadata"]:
        fields["metadata"] = None
    return build_request(
        workflow_id, environment="launchpad", source_service="dagster-launchpad", **fields
    )
