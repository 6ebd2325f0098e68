"""The stamping workflow for a batch of requests, step by step, without Dagster.

The `stamp_workflow` ops call these steps, and so does the benchmark's bare loop, so the
two measure the same work. A step never raises for one bad request: the workflow is failed
with its reason (persisted, published, dead-lettered) and the batch goes on. Only an
infrastructure failure (PostgreSQL, Kafka, or a stamping service that no attempt reached)
raises, which fails the run so a retry can take it over; every write is idempotent, so the
retry neither loses nor duplicates a workflow.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol
from uuid import UUID

import blake3
from confluent_kafka import Message
from sqlalchemy import Connection, Engine

from bridge_dagster.events.requests import (
    RequestRejected,
    StampRequest,
    is_valid_namespace,
    parse_request,
)
from bridge_dagster.events.topics import dead_letter_key, dead_letter_value
from bridge_dagster.events.types import EventType
from bridge_dagster.onextree import TreeError
from bridge_dagster.onextree.rooted_files import (
    FileChanged,
    FileTooLarge,
    RootedFile,
    read_rooted_file,
    replace_rooted_file,
    reread_rooted_file,
)
from bridge_dagster.orchestrator import (
    dead_letter_outbox,
    event_outbox,
    range_ledger,
    resumption,
    store,
)
from bridge_dagster.orchestrator.events_out import Sink, WorkflowEvents
from bridge_dagster.orchestrator.fsm import (
    IllegalTransition,
    WorkflowState,
    is_terminal,
    transition,
)
from bridge_dagster.resources.http_client import ServiceTimedOut, ServiceUnreachable
from bridge_dagster.stamping import StampResult, canonical_hash

# Fixed forever: stamp ids derive from workflow ids, so a re-run stamps with the same id.
STAMP_ID_NAMESPACE = UUID("2d0f0c36-7c55-5f0e-a3f2-6a1e5c0b9d41")
# BRIDGE_MAX_RUN_CONTENT_BYTES's default.
DEFAULT_MAX_RUN_CONTENT_BYTES = 256 * 1024 * 1024
# A batch calls no service once this many step timeouts (ORCHESTRATOR_STEP_TIMEOUT_MS) have
# passed since it started: a healthy batch of MAX_REQUESTS_PER_RUN needs a fraction of one
# (milliseconds a call), while ten calls that each take the whole timeout mean the service
# is failing; at the default 120 s that is 20 minutes, inside the hour of run monitoring's
# max_runtime_seconds, so the unfinished workflows fail with a reason before the run is
# ended. A call under way when the deadline passes still ends within its own timeout.
BATCH_DEADLINE_CALLS = 10


@dataclass(frozen=True)
class Incoming:
    """One request message as read: where it came from and its raw value."""

    source: str
    raw: bytes | None
    topic: str
    partition: int
    offset: int
    # Tells a re-read of this message from a new one at a reused offset (recreated topic).
    letter_key: str

    @classmethod
    def from_message(cls, message: Message) -> Incoming:
        topic, partition, offset = message.topic(), message.partition(), message.offset()
        source, raw = f"{topic}/{partition}/{offset}", message.value()
        _, written_at_ms = message.timestamp()
        key = dead_letter_key(source, written_at_ms, raw)
        return cls(source, raw, topic, partition, offset, key)


@dataclass
class Workflow:
    """One request on its way through the steps."""

    request: StampRequest
    incoming: Incoming
    state: WorkflowState = WorkflowState.PENDING
    # The bytes hashed and stamped: inline content, or a file's as read once at validation
    # while the run's budget (BRIDGE_MAX_RUN_CONTENT_BYTES) has room; a file beyond it is
    # re-read by each step and must still be the file first read.
    content: bytes | None = None
    file: RootedFile | None = None
    file_size: int = 0
    intelligence: dict[str, Any] | None = None
    file_hash: str | None = None
    stamp: StampResult | None = None
    steps: list[str] = field(default_factory=list)

    @property
    def workflow_id(self) -> UUID:
        return self.request.workflow_id

    def did(self, step: str) -> None:
        """Note a finished step once: an op retried in the same process runs it again on
        these very objects, and `steps_executed` must not grow with retries."""
        if step not in self.steps:
            self.steps.append(step)


@dataclass(frozen=True)
class Failure:
    """A workflow (or an unparseable message) that will never succeed as sent."""

    incoming: Incoming
    code: str
    reason: str
    workflow_id: UUID | None
    namespace: str | None
    step: str


class Stamp(Protocol):
    """`stamping.stamp_content`, or a resource's `stamp` that may call a service."""

    def __call__(
        self,
        content: bytes,
        *,
        stamp_type: str,
        file_path: str | None,
        content_type: str,
        stamp_id: UUID,
        now: datetime,
    ) -> StampResult: ...


class Tree(Protocol):
    def intelligence(
        self, file_path: str | None, context: str, project_root: str | None = None
    ) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Context:
    """What every step needs: where to write, what to publish to, and the limits."""

    engine: Engine
    events: WorkflowEvents
    sink: Sink
    dlq_topic: str
    run_id: str
    default_namespace: str
    max_content_bytes: int
    allowed_roots: tuple[Path, ...]
    warn: Callable[[str], None]
    max_run_content_bytes: int = DEFAULT_MAX_RUN_CONTENT_BYTES


@dataclass(frozen=True)
class Deadline:
    """When a batch stops calling services (`BATCH_DEADLINE_CALLS` step timeouts after it
    started); the workflows it has not reached by then fail with `batch_deadline`."""

    at: float  # on the time.monotonic() clock
    budget_s: float

    @classmethod
    def for_batch(cls, step_timeout_ms: int) -> Deadline:
        budget_s = BATCH_DEADLINE_CALLS * step_timeout_ms / 1000
        return cls(time.monotonic() + budget_s, budget_s)

    def passed(self) -> bool:
        return time.monotonic() >= self.at


@dataclass
class Admission:
    accepted: list[Workflow]
    failed: int
    duplicates: int
    dead_lettered: int


def admit(
    ctx: Context,
    incoming: Sequence[Incoming],
    range_key: str | None = None,
    resume_key: str | None = None,
) -> Admission:
    """Parse, de-duplicate and create workflows (pending); reject the unparseable.

    `range_key` names the request sensor's ledger entry for these requests: it is closed in
    the transaction that makes them rows or dead letters. `resume_key` names the workflows
    the sensor handed to this run because their own run ended: this run takes them over.
    """
    parsed, failures = _parse_all(ctx, incoming)
    unique, duplicates = _first_of_each(parsed)
    # A bad message may name a workflow that a valid message (here or earlier) owns; only
    # the first bad message for an id nobody else claims creates, and fails, that workflow.
    failures = _own_ids_only(failures, {w.workflow_id for w in unique})
    with publishing(ctx) as conn:
        created = store.insert_pending(
            conn,
            [_new_row(w) for w in unique]
            + [_rejected_row(f) for f in failures if f.workflow_id is not None],
            ctx.run_id,
        )
        claimed = resumption.claim(conn, resume_key, ctx.run_id) if resume_key else {}
        known = store.existing(conn, {w.workflow_id for w in unique} - created)
        resumed = [
            w
            for w in unique
            if not claimed.get(w.workflow_id) and _resumable(known.get(w.workflow_id), ctx.run_id)
        ]
        for w in resumed:
            w.state = known[w.workflow_id].state
        for workflow_id in [w.workflow_id for w in unique] + [f.workflow_id for f in failures]:
            if workflow_id in created:
                ctx.events.transition(workflow_id, None, WorkflowState.PENDING, "request accepted")
        # One that names an existing workflow (running or finished) leaves it alone.
        failures = [
            f if f.workflow_id in created else replace(f, workflow_id=None) for f in failures
        ]
        # Handed over more times than allowed: it fails with the reason the sensor gave it.
        given_up = [
            _failure(w, *claimed[w.workflow_id].split(": ", 1), step="admit")
            for w in unique
            if claimed.get(w.workflow_id)
        ]
        outcome = _fail(conn, ctx, [*failures, *given_up])
        if range_key is not None:
            range_ledger.close(conn, [range_key], "admitted")
    accepted = [w for w in unique if w.workflow_id in created] + resumed
    # A rejection seen before (its workflow already failed, or its dead letter already sent)
    # is a duplicate like any other re-read message.
    fresh = sum(
        1
        for f in failures
        if f.workflow_id is not None or f.incoming.letter_key in outcome.dead_lettered
    )
    return Admission(
        accepted=accepted,
        failed=fresh + len(given_up),
        duplicates=duplicates + len(unique) - len(accepted) - len(given_up) + len(failures) - fresh,
        dead_lettered=len(outcome.dead_lettered),
    )


def start(ctx: Context, workflows: Sequence[Workflow]) -> list[Workflow]:
    """Load each workflow's content and move it pending → processing; return those moving on."""
    loaded, failures = [], []
    budget = _ContentBudget(ctx.max_run_content_bytes)
    for w in workflows:
        problem = _load_content(ctx, w, budget)
        if problem is None:
            loaded.append(w)
        else:
            failures.append(_failure(w, *problem, step="validate"))
    pending = [w.workflow_id for w in loaded if w.state is WorkflowState.PENDING]
    with publishing(ctx) as conn:
        moved = store.move(conn, pending, WorkflowState.PROCESSING, "validated", started=True)
        _warn_refused(ctx, conn, set(pending) - moved, WorkflowState.PROCESSING)
        ready = [w for w in loaded if w.workflow_id in moved or w.state is WorkflowState.PROCESSING]
        for w in ready:
            if w.workflow_id in moved:
                _announce_start(ctx, w)
            w.state = WorkflowState.PROCESSING
            w.did("validate")
            ctx.events.step_completed(w.workflow_id, "validate")
        _fail(conn, ctx, failures)
    return ready


def gather_intelligence(
    ctx: Context, workflows: Sequence[Workflow], tree: Tree, deadline: Deadline
) -> list[Workflow]:
    """Ask the tree about each workflow that wants it; a failing tree degrades, never fails.
    Return the workflows moving on: those asked for after the batch's deadline fail."""
    moving, failures = [], []
    for w in workflows:
        if not w.request.enable_intelligence:
            moving.append(w)
            continue
        if deadline.passed():
            failures.append(_past_deadline(w, deadline, "intelligence"))
            continue
        context = w.request.intelligence_context or ""
        ctx.events.emit(
            w.workflow_id,
            EventType.ONEXTREE_INTELLIGENCE_REQUESTED,
            {"file_path": w.request.file_path, "context": context},
        )
        w.intelligence = tree.intelligence(w.request.file_path, context)
        ctx.events.emit(
            w.workflow_id,
            EventType.ONEXTREE_INTELLIGENCE_RECEIVED,
            {
                "degraded": bool(w.intelligence.get("degraded")),
                "purpose": w.intelligence.get("purpose"),
                "reason": w.intelligence.get("reason"),
            },
        )
        w.did("intelligence")
        ctx.events.step_completed(w.workflow_id, "intelligence")
        moving.append(w)
    fail(ctx, failures)
    return moving


def hash_all(ctx: Context, workflows: Sequence[Workflow]) -> list[Workflow]:
    """Hash each workflow's canonical content; return those hashed."""
    hashed, failures = [], []
    for w in workflows:
        content = _read(ctx, w, "hash")
        if isinstance(content, Failure):
            failures.append(content)
            continue
        w.file_hash = canonical_hash(content)
        w.file_size = len(content)
        ctx.events.emit(
            w.workflow_id,
            EventType.BLAKE3_HASH_GENERATED,
            {"file_hash": w.file_hash, "file_size": w.file_size, "namespace": w.request.namespace},
        )
        w.did("hash")
        ctx.events.step_completed(w.workflow_id, "hash")
        hashed.append(w)
    fail(ctx, failures)
    return hashed


def stamp_all(
    ctx: Context, workflows: Sequence[Workflow], stamp: Stamp, deadline: Deadline
) -> list[Workflow]:
    """Stamp each workflow; return those stamped. A hash that disagrees, a stamping failure
    for its request, or the batch's deadline passing before it fails the workflow; only an
    unreachable stamping service raises, which fails the run so its retry takes the batch."""
    stamped, failures = [], []
    now = datetime.now(UTC)
    for w in workflows:
        if deadline.passed():
            failures.append(_past_deadline(w, deadline, "stamp"))
            continue
        content = _read(ctx, w, "stamp")
        if isinstance(content, Failure):
            failures.append(content)
            continue
        try:
            w.stamp = stamp(
                content,
                stamp_type=w.request.stamp_type,
                file_path=w.request.file_path,
                content_type=w.request.content_type,
                now=now,
                stamp_id=uuid.uuid5(STAMP_ID_NAMESPACE, str(w.workflow_id)),
            )
        except ValueError as exc:
            failures.append(_failure(w, "stamp_rejected", str(exc), step="stamp"))
            continue
        except ServiceUnreachable:
            raise
        except ServiceTimedOut as exc:
            failures.append(_failure(w, "stamp_timeout", str(exc), step="stamp"))
            continue
        # Anything else (5xx after the retries, a malformed answer, a bug the content
        # triggers) is this request's failure: the batch goes on without it.
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}"
            failures.append(_failure(w, "stamp_failed", reason, step="stamp"))
            continue
        if w.stamp.file_hash != w.file_hash:
            failures.append(
                _failure(
                    w,
                    "hash_mismatch",
                    f"the stamp carries hash {w.stamp.file_hash} but the content hashed to"
                    f" {w.file_hash}; the file changed while it was stamped, or the stamping"
                    " service runs another version",
                    step="stamp",
                )
            )
            continue
        if w.file is not None:
            w.content = None  # hashed and stamped: the run need not hold it any longer
        if not w.request.write_back:
            # Only a write-back needs the stamped content; keep just the stamp.
            w.stamp = replace(w.stamp, content_parts=None)
        ctx.events.emit(
            w.workflow_id,
            EventType.METADATA_STAMP_CREATED,
            {
                "stamp_id": str(w.stamp.stamp_id),
                "stamp_type": w.stamp.stamp_type,
                "file_hash": w.stamp.file_hash,
                "namespace": w.request.namespace,
            },
        )
        w.did("stamp")
        ctx.events.step_completed(w.workflow_id, "stamp")
        stamped.append(w)
    fail(ctx, failures)
    return stamped


def record(ctx: Context, workflows: Sequence[Workflow]) -> list[Workflow]:
    """Write back stamped files, store the stamps and complete the workflows."""
    written, failures = [], []
    for w in workflows:
        problem = _write_back(w)
        if problem is None:
            written.append(w)
        else:
            failures.append(_failure(w, *problem, step="record"))
    with publishing(ctx) as conn:
        _fail(conn, ctx, failures)
        completed = store.complete(conn, [_completion(w) for w in written])
        _warn_refused(
            ctx, conn, {w.workflow_id for w in written} - completed, WorkflowState.COMPLETED
        )
        done = [w for w in written if w.workflow_id in completed]
        for w in done:
            w.did("record")
            w.state = WorkflowState.COMPLETED
            ctx.events.step_completed(w.workflow_id, "record")
            ctx.events.transition(
                w.workflow_id, WorkflowState.PROCESSING, WorkflowState.COMPLETED, "stamp recorded"
            )
            ctx.events.emit(w.workflow_id, EventType.STAMP_WORKFLOW_COMPLETED, _summary(w))
    return done


@contextmanager
def publishing(ctx: Context) -> Iterator[Connection]:
    """A transaction that stores its events and dead letters, both sent after it commits.

    The events emitted since the last step's commit, and inside this transaction, are
    written to the outbox in it (`event_outbox`): a rollback or a failed commit stores none
    and publishes none, and a retry emits them again. After the commit the relays send what
    is unsent, this step's and whatever an earlier step or run left.
    """
    try:
        with ctx.engine.begin() as conn:
            yield conn
            batch = event_outbox.write(conn, ctx.events.take())
    except BaseException:
        ctx.events.discard()
        raise
    event_outbox.relay(ctx.engine, ctx.sink, batch)
    relayed = dead_letter_outbox.relay(ctx.engine, ctx.sink, ctx.dlq_topic)
    for key, error in relayed.refused.items():
        ctx.warn(
            f"the broker refused the dead letter {key} for {ctx.dlq_topic} ({error}); it stays"
            " in dead_letters with its send_error, and the batch goes on"
        )


def _warn_refused(ctx: Context, conn: Connection, ids: set[UUID], target: WorkflowState) -> None:
    """Report each transition the FSM refused; the refused workflows stop here."""
    if not ids:
        return
    for workflow_id, row in store.existing(conn, ids).items():
        try:
            transition(row.state, target, workflow_id=workflow_id)
        except IllegalTransition as exc:
            ctx.warn(f"refused: {exc}")


@dataclass(frozen=True)
class FailOutcome:
    failed: set[UUID]
    dead_lettered: set[str]


def fail(ctx: Context, failures: Sequence[Failure]) -> FailOutcome:
    """Persist, publish and dead-letter failures not handled before; say which were new."""
    with publishing(ctx) as conn:
        return _fail(conn, ctx, failures)


def _fail(conn: Connection, ctx: Context, failures: Sequence[Failure]) -> FailOutcome:
    if not failures:
        return FailOutcome(set(), set())
    failed = store.fail(
        conn,
        {f.workflow_id: f"{f.code}: {f.reason}" for f in failures if f.workflow_id is not None},
    )
    # Stored with the step's transaction and sent after its commit (`publishing`), so a
    # rollback sends none and a retry finds them stored.
    fresh = store.new_dead_letters(conn, [_letter(ctx, f) for f in failures])
    for f in failures:
        if f.workflow_id in failed:
            ctx.events.transition(
                f.workflow_id, failed[f.workflow_id], WorkflowState.FAILED, f.reason
            )
            ctx.events.emit(
                f.workflow_id,
                EventType.STAMP_WORKFLOW_FAILED,
                {"code": f.code, "error": f.reason, "step": f.step, "namespace": f.namespace},
            )
    return FailOutcome(set(failed), fresh)


def fail_stale(ctx: Context, stale: Sequence[store.StaleWorkflow], timeout_ms: int) -> int:
    """Fail workflows that outlived their run; return how many were failed."""
    reason = (
        f"timed out: unfinished {timeout_ms} ms after its last change and its run has ended;"
        " resubmit the request under a new workflow id"
    )
    namespaces = {s.workflow_id: s.namespace for s in stale}
    with publishing(ctx) as conn:
        failed = store.fail(conn, dict.fromkeys(namespaces, f"timeout: {reason}"))
        for workflow_id, before in failed.items():
            ctx.events.transition(workflow_id, before, WorkflowState.FAILED, reason)
            ctx.events.emit(
                workflow_id,
                EventType.STAMP_WORKFLOW_FAILED,
                {
                    "code": "timeout",
                    "error": reason,
                    "step": "sweep",
                    "namespace": namespaces[workflow_id],
                },
            )
    return len(failed)


# --- admission -------------------------------------------------------------------------


def _parse_all(ctx: Context, incoming: Sequence[Incoming]) -> tuple[list[Workflow], list[Failure]]:
    parsed, failures = [], []
    for item in incoming:
        try:
            request = parse_request(
                item.raw,
                default_namespace=ctx.default_namespace,
                max_content_bytes=ctx.max_content_bytes,
            )
        except RequestRejected as exc:
            workflow_id, namespace = _salvage(item.raw, ctx.default_namespace)
            failures.append(
                Failure(item, str(exc.code), exc.reason, workflow_id, namespace, "admit")
            )
            continue
        parsed.append(Workflow(request=request, incoming=item))
    return parsed, failures


def _salvage(raw: bytes | None, default_namespace: str) -> tuple[UUID | None, str | None]:
    """The workflow id (and namespace) of a rejected message, when it names a usable one."""
    try:
        payload = json.loads(raw or b"")["payload"]
        workflow_id = UUID(str(payload["workflow_id"]))
    except (ValueError, KeyError, TypeError):
        return None, None
    namespace = payload.get("namespace")
    if not isinstance(namespace, str) or not is_valid_namespace(namespace):
        namespace = default_namespace
    return workflow_id, namespace


def _own_ids_only(failures: Sequence[Failure], taken: set[UUID]) -> list[Failure]:
    seen = set(taken)
    owned = []
    for f in failures:
        if f.workflow_id is not None and f.workflow_id in seen:
            f = replace(f, workflow_id=None)
        seen.add(f.workflow_id)
        owned.append(f)
    return owned


def _first_of_each(workflows: Sequence[Workflow]) -> tuple[list[Workflow], int]:
    seen: dict[UUID, Workflow] = {}
    for w in workflows:
        seen.setdefault(w.workflow_id, w)
    return list(seen.values()), len(workflows) - len(seen)


def _resumable(row: store.ExistingWorkflow | None, run_id: str) -> bool:
    # Only this run's own unfinished workflows resume (after a crash, the retry carries the
    # same root run id); anything else is a duplicate, finished or owned by another run.
    return row is not None and not is_terminal(row.state) and row.run_id == run_id


def _new_row(w: Workflow) -> store.NewWorkflow:
    r = w.request
    return store.NewWorkflow(
        r.workflow_id,
        r.namespace,
        r.file_path,
        r.content_type,
        r.stamp_type,
        w.incoming.source,
        r.requested_at,
    )


def _rejected_row(f: Failure) -> store.NewWorkflow:
    assert f.workflow_id is not None and f.namespace is not None
    return store.NewWorkflow(f.workflow_id, f.namespace, None, None, None, f.incoming.source, None)


# --- content ---------------------------------------------------------------------------


@dataclass
class _ContentBudget:
    """The file bytes a run may still hold in memory between its steps."""

    left: int

    def take(self, size: int) -> bool:
        if size > self.left:
            return False
        self.left -= size
        return True


def _load_content(ctx: Context, w: Workflow, budget: _ContentBudget) -> tuple[str, str] | None:
    """Take inline content, or read the file once: the bytes later steps hash and stamp."""
    inline = w.request.content_bytes()
    if inline is not None:
        w.content = inline
        return None
    requested = w.request.file_path or ""
    if not Path(requested).is_absolute():
        # A relative path would resolve against whichever directory the run worker has.
        return (
            "path_refused",
            f"file_path {requested!r} is relative; send an absolute path"
            " under BRIDGE_ALLOWED_ROOTS, or send the content inline",
        )
    try:
        content, w.file = read_rooted_file(requested, ctx.allowed_roots, ctx.max_content_bytes)
    except (FileChanged, FileTooLarge, TreeError, OSError) as exc:
        return _file_problem(requested, exc)
    if budget.take(len(content)):
        w.content = content
    return None


def _read(ctx: Context, w: Workflow, step: str) -> bytes | Failure:
    if w.content is not None:
        return w.content
    assert w.file is not None
    try:
        return reread_rooted_file(w.file, ctx.max_content_bytes)
    except (FileChanged, FileTooLarge, TreeError, OSError) as exc:
        return _failure(w, *_file_problem(str(w.file.path), exc), step=step)


def _file_problem(path: str, exc: Exception) -> tuple[str, str]:
    """The reason code and text for a file that cannot be taken as it was checked."""
    if isinstance(exc, FileChanged):
        return "file_changed", f"{exc}; send the request again once the file is settled"
    if isinstance(exc, FileTooLarge):
        return "content_too_large", str(exc)
    if isinstance(exc, TreeError):
        return "path_refused", str(exc)
    assert isinstance(exc, OSError)
    return (
        "file_unreadable",
        f"{path} could not be read ({exc.strerror or exc});"
        " check that it exists and the workflow's user may read it",
    )


def _write_back(w: Workflow) -> tuple[str, str] | None:
    if not w.request.write_back:
        return None
    assert w.stamp is not None and w.file is not None
    if w.stamp.stamped_content is None:
        return (
            "write_back_failed",
            "the file is not UTF-8 text, so the stamp cannot be written into it",
        )
    try:
        replace_rooted_file(w.file, w.stamp.stamped_content.encode())
    except FileChanged as exc:
        return "file_changed", str(exc)
    except (TreeError, OSError) as exc:
        return "write_back_failed", f"could not write the stamped file: {exc}"
    return None


# --- events and rows -------------------------------------------------------------------


def _announce_start(ctx: Context, w: Workflow) -> None:
    r = w.request
    ctx.events.emit(
        w.workflow_id,
        EventType.STAMP_WORKFLOW_STARTED,
        {
            "namespace": r.namespace,
            "file_path": r.file_path,
            "content_type": r.content_type,
            "stamp_type": r.stamp_type,
            "run_id": ctx.run_id,
            "source": w.incoming.source,
        },
        causation_id=r.request_event_id,
    )
    ctx.events.transition(
        w.workflow_id, WorkflowState.PENDING, WorkflowState.PROCESSING, "validated"
    )


def _failure(w: Workflow, code: str, reason: str, *, step: str) -> Failure:
    return Failure(w.incoming, code, reason, w.workflow_id, w.request.namespace, step)


def _past_deadline(w: Workflow, deadline: Deadline, step: str) -> Failure:
    reason = (
        f"the batch stopped calling services {deadline.budget_s:g} s after it started"
        f" ({BATCH_DEADLINE_CALLS} times ORCHESTRATOR_STEP_TIMEOUT_MS) before reaching this"
        " request; check the stamping and tree services' response times, then resubmit it"
        " under a new workflow id"
    )
    return _failure(w, "batch_deadline", reason, step=step)


def _letter(ctx: Context, f: Failure) -> dict[str, Any]:
    # Made once, when first stored: every later send of this letter is these bytes.
    value = dead_letter_value(
        f.incoming.raw,
        f"{f.code}: {f.reason}",
        topic=f.incoming.topic,
        partition=f.incoming.partition,
        offset=f.incoming.offset,
    )
    return {
        "source": f.incoming.source,
        "letter_key": f.incoming.letter_key,
        "workflow_id": f.workflow_id,
        "code": f.code,
        "reason": f.reason,
        "dlq_topic": ctx.dlq_topic,
        "value": base64.b64encode(value).decode("ascii"),
    }


def _completion(w: Workflow) -> store.Completion:
    assert w.stamp is not None
    r = w.request
    return store.Completion(
        workflow_id=w.workflow_id,
        file_size=w.file_size,
        file_hash=w.stamp.file_hash,
        stamp_id=w.stamp.stamp_id,
        stamp_type=w.stamp.stamp_type,
        stamp=w.stamp.stamp,
        namespace=r.namespace,
        file_path=r.file_path,
        content_type=r.content_type,
        metadata=r.metadata,
        intelligence=w.intelligence,
        # A record step retried after its commit failed already noted "record".
        steps=[*(step for step in w.steps if step != "record"), "record"],
    )


def _summary(w: Workflow) -> dict[str, Any]:
    assert w.stamp is not None
    r = w.request
    requested = r.requested_at
    latency_ms = None
    if requested is not None:
        latency_ms = round((datetime.now(UTC) - requested).total_seconds() * 1000, 3)
    return {
        "namespace": r.namespace,
        "file_hash": w.stamp.file_hash,
        "stamp_id": str(w.stamp.stamp_id),
        "stamp_type": w.stamp.stamp_type,
        "file_path": r.file_path,
        "content_type": r.content_type,
        "file_size": w.file_size,
        "steps": w.steps,
        "requested_at": None if requested is None else requested.isoformat(),
        "latency_ms": latency_ms,
    }


def inline_incoming(raw: bytes, index: int, typed: str) -> Incoming:
    """An Incoming for a request given in run config; its source is the hash of the request
    as `typed`, not of `raw`, whose envelope carries the time it was built: a re-execution
    of the run then finds its rejected requests already dead-lettered."""
    digest = blake3.blake3(typed.encode()).hexdigest()[:32]
    source = f"inline/{digest}"
    return Incoming(source, raw, topic="inline", partition=-1, offset=index, letter_key=source)
