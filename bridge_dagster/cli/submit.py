"""`bridge-dagster submit` sends stamp requests; `bridge-dagster status` shows one workflow."""

from __future__ import annotations

import json
import mimetypes
import os
import random
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from uuid import UUID, uuid5

import blake3
import click
from confluent_kafka import KafkaError, KafkaException, Message, Producer
from sqlalchemy import Engine, create_engine, func, select
from sqlalchemy.exc import OperationalError, ProgrammingError, SQLAlchemyError
from tqdm import tqdm

from bridge_dagster.db.tables import dead_letters, fsm_transitions, workflow_executions
from bridge_dagster.events.demo import demo_requests
from bridge_dagster.events.requests import STAMP_TYPES, build_request, is_valid_namespace
from bridge_dagster.events.topics import dlq_topic
from bridge_dagster.onextree import (
    TreeError,
    TreeNode,
    build_tree,
    resolve_allowed_file,
    resolve_allowed_root,
)
from bridge_dagster.onextree.roots import DATA_DIR_MARKER
from bridge_dagster.settings import ConfigError, KafkaSecurity, Settings, load_settings

MAX_DEMO_REQUESTS = 1_000_000
# Where `bridge-dagster dev` starts its broker when KAFKA_BOOTSTRAP_SERVERS is unset.
DEV_BOOTSTRAP_SERVERS = "127.0.0.1:29092"
BROKER_TIMEOUT_S = 10.0
POLL_INTERVAL_S = 0.5
# Ids per query while waiting: keeps each statement's parameter list small.
IDS_PER_QUERY = 5_000
TERMINAL_STATES = ("completed", "failed")
# Fixed forever: a request's id derives from what it asks for, so sending the same request
# again (after a partial failure, say) names the same workflow and the bridge skips it.
REQUEST_ID_NAMESPACE = UUID("8c1f4e2a-3b5d-5e6f-9a0b-1c2d3e4f5a6b")

T = TypeVar("T")


@dataclass(frozen=True)
class Sent:
    workflow_ids: list[UUID]
    total_bytes: int
    seconds: float


@click.command(
    epilog="""\b
Examples:
  bridge-dagster submit --content 'hello, bridge'
  bridge-dagster submit --content 'hello, bridge' --id 0b6e3f5c-8a1d-4c2e-9f7a-2d4b6c8e0a1f
  bridge-dagster submit --file src/app.py --stamp-type rich --write-back
  bridge-dagster submit --path . --namespace team.alpha --wait
  bridge-dagster submit --demo 200 --wait --timeout 600
  bridge-dagster status $(bridge-dagster submit --content 'hello')
"""
)
@click.option("--content", help="Text to stamp, sent inline.")
@click.option(
    "--file",
    "file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A file under BRIDGE_ALLOWED_ROOTS; the workflow reads it.",
)
@click.option(
    "--path",
    "directory",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="A directory under BRIDGE_ALLOWED_ROOTS: one request per file, skipping .git,"
    " node_modules, virtualenvs, caches, build outputs, the bridge's data directory and, in a"
    " git work tree, what .gitignore ignores.",
)
@click.option(
    "--demo",
    type=click.IntRange(1, MAX_DEMO_REQUESTS),
    metavar="N",
    help="N varied synthetic requests: namespaces, content types, sizes, stamp types.",
)
@click.option(
    "--namespace",
    metavar="NAME",
    help="Namespace of every request. Default: DEFAULT_NAMESPACE (--demo: its own mix).",
)
@click.option(
    "--stamp-type",
    type=click.Choice(STAMP_TYPES),
    help="Stamp format. Default: lightweight (--demo: a mix).",
)
@click.option(
    "--intelligence/--no-intelligence",
    default=None,
    help="Ask for project-tree intelligence. Default: no (--demo: a mix).",
)
@click.option(
    "--write-back", is_flag=True, help="Write the stamped file back (--file and --path only)."
)
@click.option(
    "--id",
    "workflow_id",
    type=click.UUID,
    help="Workflow id of a single request (--content or --file). Default: derived from the"
    " request (path, content and options), so the same request sent again is the same"
    " workflow and is not stamped twice; give a new id to stamp it again.",
)
@click.option("--wait", is_flag=True, help="Wait until every workflow has completed or failed.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=300.0,
    show_default=True,
    metavar="SECONDS",
    help="How long --wait waits before giving up.",
)
def submit(
    content: str | None,
    file: Path | None,
    directory: Path | None,
    demo: int | None,
    namespace: str | None,
    stamp_type: str | None,
    intelligence: bool | None,
    write_back: bool,
    workflow_id: UUID | None,
    wait: bool,
    timeout: float,
) -> None:
    """Put stamp requests on the request topic (KAFKA_REQUEST_TOPIC); give exactly one source.

    Prints the workflow id of a single request, or a summary of many. With --wait it then
    follows the workflows in PostgreSQL and prints how many completed and failed.
    """
    sources = {"--content": content, "--file": file, "--path": directory, "--demo": demo}
    given = [name for name, value in sources.items() if value is not None]
    if len(given) != 1:
        raise click.UsageError(
            f"give exactly one of {', '.join(sources)} (got {', '.join(given) or 'none'})"
        )
    if write_back and file is None and directory is None:
        raise click.UsageError(f"--write-back applies to --file and --path, not {given[0]}")
    if workflow_id is not None and content is None and file is None:
        raise click.UsageError(f"--id applies to one request (--content, --file), not {given[0]}")
    if namespace is not None and not is_valid_namespace(namespace):
        raise click.BadParameter(
            f"{namespace!r} is not a namespace; use 1-255 letters, digits, '.', '_' or '-'",
            param_hint="--namespace",
        )
    settings = _settings()
    # With --wait, an unreachable database is refused before anything is sent.
    engine = _reachable_engine(settings) if wait else None
    chosen = {"namespace": namespace, "stamp_type": stamp_type, "enable_intelligence": intelligence}
    overrides = {name: value for name, value in chosen.items() if value is not None}
    if demo is not None:
        # A fresh seed each time: a repeated seed repeats the workflow ids, and the bridge
        # processes a workflow id once, so a second demo would do nothing.
        total, fields = demo, _demo_fields(demo, overrides, seed=random.randrange(1 << 32))
    elif content is not None:
        _check_content_size(content, settings.max_content_bytes)
        request = {"content": content} | overrides
        total, fields = 1, iter([(workflow_id or _derived_id(request), request)])
    else:
        paths = _paths(file, directory, settings)
        total, fields = len(paths), _file_fields(paths, write_back, overrides, workflow_id)
    sent = _send(settings, _messages(settings, fields), total)
    _report_sent(sent, settings.request_topic)
    if engine is not None:
        try:
            _wait_and_report(engine, sent, timeout)
        finally:
            engine.dispose()


@click.command(
    epilog="""\b
Examples:
  bridge-dagster status 0b6e3f5c-8a1d-4c2e-9f7a-2d4b6c8e0a1f
  bridge-dagster status 0b6e3f5c-8a1d-4c2e-9f7a-2d4b6c8e0a1f --json | jq .state
  bridge-dagster status --failed                      the newest failed workflows, with reasons
  bridge-dagster status --failed --since 2h           failed in the last two hours
  bridge-dagster status --failed --since 2026-11-30T08:00:00Z --json
"""
)
@click.argument("workflow_id", required=False, callback=lambda _c, _p, v: _workflow_id(v))
@click.option("--failed", is_flag=True, help="List failed workflows with their reasons instead.")
@click.option(
    "--since",
    metavar="WHEN",
    callback=lambda _c, _p, v: _since(v),
    help="With --failed: only those failed since WHEN, an ISO time (UTC unless it says) or an"
    " age like 30m, 2h, 7d.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the same as JSON.")
def status(workflow_id: UUID | None, failed: bool, since: datetime | None, as_json: bool) -> None:
    """Show one workflow from PostgreSQL (state, stamp, error, duration from its request and
    transitions), or with --failed the failed workflows, newest first, with their reasons."""
    if failed == (workflow_id is not None):
        raise click.UsageError("give a WORKFLOW_ID or --failed, not both or neither")
    if since is not None and not failed:
        raise click.UsageError("--since applies to --failed only")
    settings = _settings()
    engine = _engine(settings)
    try:
        if failed:
            listing = _database_call(lambda: _failed_workflows(engine, settings, since))
            click.echo(json.dumps(listing, indent=2) if as_json else _format_failed(listing))
            return
        assert workflow_id is not None
        report = _database_call(lambda: _workflow_report(engine, workflow_id))
    finally:
        engine.dispose()
    if report is None:
        raise click.ClickException(
            f"no workflow {workflow_id} in the database; check the id, or if it was just"
            " submitted, try again once the request sensor has picked it up (a few seconds)"
        )
    click.echo(json.dumps(report, indent=2) if as_json else _format_report(report))


# --- requests ------------------------------------------------------------------------------


def _demo_fields(
    count: int, overrides: dict[str, Any], *, seed: int
) -> Iterator[tuple[UUID, dict[str, Any]]]:
    for request in demo_requests(count, seed=seed):
        yield request.workflow_id, request.build_kwargs() | overrides


def _file_fields(
    paths: Sequence[Path], write_back: bool, overrides: dict[str, Any], workflow_id: UUID | None
) -> Iterator[tuple[UUID, dict[str, Any]]]:
    for path in paths:
        content_type, _ = mimetypes.guess_type(path.name)
        fields = {"file_path": str(path), "content_type": content_type, "write_back": write_back}
        fields |= overrides
        yield workflow_id or _derived_id(fields | {"file_blake3": _file_digest(path)}), fields


def _derived_id(request: dict[str, Any]) -> UUID:
    """The same id for the same request: its fields, and for a file the digest of its bytes,
    so a file that changed since it was last sent is a new workflow."""
    digest = blake3.blake3(json.dumps(request, sort_keys=True).encode()).hexdigest()
    return uuid5(REQUEST_ID_NAMESPACE, digest)


def _file_digest(path: Path) -> str:
    try:
        return blake3.blake3(max_threads=1).update_mmap(path).hexdigest()
    except OSError as exc:
        raise click.ClickException(
            f"{path} could not be read ({exc.strerror or exc}); check that it exists and that"
            " you may read it"
        ) from None


def _check_content_size(content: str, limit: int) -> None:
    size = len(content.encode("utf-8", "surrogatepass"))
    if size > limit:
        raise click.UsageError(
            f"--content is {size:,} bytes, over the {limit:,}-byte limit"
            " (BRIDGE_MAX_CONTENT_BYTES of the running stack, which refuses larger content);"
            " save it to a file under BRIDGE_ALLOWED_ROOTS and send it with --file, or raise"
            " the limit in the stack's environment (BRIDGE_MAX_CONTENT_BYTES=… make run)"
        )


def _paths(file: Path | None, directory: Path | None, settings: Settings) -> list[Path]:
    """The real paths to request, checked here so a refusal comes now rather than as a failure."""
    try:
        if file is not None:
            return [resolve_allowed_file(file, settings.allowed_roots)]
        assert directory is not None  # submit checked that exactly one source was given
        root = resolve_allowed_root(directory, settings.allowed_roots)
        paths = [root / node.path for node in _file_nodes(build_tree(root).root_node)]
    except TreeError as exc:
        raise click.ClickException(str(exc)) from None
    paths = _not_ignored(root, _outside_data_dirs(paths))
    if not paths:
        raise click.ClickException(
            f"{str(directory)!r} holds no files outside the excluded directories (.git,"
            " node_modules, virtualenvs, caches, build outputs, what .gitignore ignores, the"
            " bridge's data directory); pass a directory with files"
        )
    return paths


def _outside_data_dirs(paths: list[Path]) -> list[Path]:
    """Drop the files of the bridge's data directories: its database, broker and secrets."""
    data_dirs = {path.parent for path in paths if path.name == DATA_DIR_MARKER}
    return [path for path in paths if data_dirs.isdisjoint(path.parents)]


def _not_ignored(root: Path, paths: list[Path]) -> list[Path]:
    """Drop what the repository's .gitignore ignores (tracked files stay); outside a git work
    tree, or without git, there is nothing to ask and every path stays."""
    try:
        listed = subprocess.run(
            [
                "git",
                "-C",
                str(root),
                "ls-files",
                "-z",
                "--cached",
                "--others",
                "--exclude-standard",
            ],
            capture_output=True,
            check=True,
        ).stdout
    except (FileNotFoundError, subprocess.CalledProcessError):
        return paths
    kept = {root / name for name in os.fsdecode(listed).split("\0") if name}
    return [path for path in paths if path in kept]


def _file_nodes(node: TreeNode) -> Iterator[TreeNode]:
    pending = [node]
    while pending:
        current = pending.pop()
        if current.is_file:
            yield current
        pending.extend(reversed(current.children))


def _messages(
    settings: Settings, fields: Iterable[tuple[UUID, dict[str, Any]]]
) -> Iterator[tuple[UUID, bytes]]:
    for workflow_id, request in fields:
        yield workflow_id, build_request(workflow_id, environment=settings.environment, **request)


# --- Kafka ---------------------------------------------------------------------------------


def _send(settings: Settings, messages: Iterable[tuple[UUID, bytes]], total: int) -> Sent:
    bootstrap = settings.kafka_bootstrap_servers or DEV_BOOTSTRAP_SERVERS
    topic = settings.request_topic
    producer = _connected_producer(bootstrap, topic, settings.kafka_security)
    failures: list[KafkaError] = []
    workflow_ids: list[UUID] = []
    sizes: list[int] = []
    started = time.monotonic()
    with _progress(total, "submitting", "req") as bar:

        def delivered(error: KafkaError | None, message: Message) -> None:
            if error is None:
                workflow_ids.append(UUID(message.key().decode()))
                sizes.append(len(message.value()))
                bar.update()
            else:
                failures.append(error)

        for workflow_id, value in messages:
            if failures:
                break  # the broker is refusing or gone: stop queueing more
            try:
                produce_when_room(producer, topic, str(workflow_id).encode(), value, delivered)
            except KafkaException as exc:
                failures.append(exc.args[0])  # refused before queueing: too large, say
        producer.flush(BROKER_TIMEOUT_S * 3)
    if failures or len(workflow_ids) < total:
        raise click.ClickException(
            _undelivered(len(workflow_ids), total, failures, topic, bootstrap)
        )
    return Sent(workflow_ids, sum(sizes), time.monotonic() - started)


def _undelivered(
    delivered: int, total: int, failures: list[KafkaError], topic: str, bootstrap: str
) -> str:
    """What reached the topic, why the rest did not, and how to send the rest."""
    reason = failures[0].str() if failures else "still queued when the broker stopped answering"
    if failures and failures[0].code() == KafkaError.MSG_SIZE_TOO_LARGE:
        fix = "a request is larger than the broker's message limit; send large content with --file"
    else:
        fix = _broker_fix()
    return (
        f"{delivered:,} of {total:,} requests were delivered to {topic!r} on {bootstrap}; the"
        f" rest were not ({reason}); {fix}. Then send the same command again: --content,"
        " --file and --path requests keep their ids, so the delivered ones are not stamped twice"
    )


def _connected_producer(bootstrap: str, topic: str, security: KafkaSecurity) -> Producer:
    """An idempotent producer whose broker has answered and holds `topic`."""
    errors: list[KafkaError] = []
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            **security.client_config(),
            # Idempotence keeps a retried send from putting a request on the topic twice.
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            "compression.type": "lz4",
            "message.timeout.ms": int(BROKER_TIMEOUT_S * 3 * 1000),
            # Connection errors reach the user as one clear message, not librdkafka log lines.
            "log_level": 0,
            "error_cb": errors.append,
        }
    )
    if topic not in _topic_names(producer, errors, bootstrap):
        raise click.ClickException(
            f"the request topic {topic!r} does not exist on {bootstrap}; `bridge-dagster dev`"
            " creates it, or set KAFKA_REQUEST_TOPIC to the topic the request sensor reads"
        )
    return producer


def _topic_names(producer: Producer, errors: list[KafkaError], bootstrap: str) -> set[str]:
    # Short metadata requests in a loop, because a refused connection shows up in `errors`
    # within a second while one long request would wait out the whole timeout.
    deadline = time.monotonic() + BROKER_TIMEOUT_S
    while True:
        try:
            return set(producer.list_topics(timeout=0.5).topics)
        except KafkaException as exc:
            producer.poll(0)  # serves error_cb
            if errors or time.monotonic() > deadline:
                reason = errors[0].str() if errors else str(exc)
                raise click.ClickException(
                    f"cannot reach the Kafka broker at {bootstrap} ({reason}); " + _broker_fix()
                ) from None


def produce_when_room(
    producer: Producer,
    topic: str,
    key: bytes,
    value: bytes,
    on_delivery: Callable[[KafkaError | None, Message], None] | None = None,
) -> None:
    """Produce one message, waiting while the producer's local queue is full."""
    while True:
        try:
            producer.produce(topic, value, key, on_delivery=on_delivery)
        except BufferError:
            producer.poll(0.1)  # the local queue is full: let deliveries drain it
        else:
            producer.poll(0)
            return


def _broker_fix() -> str:
    return (
        "start the stack with `bridge-dagster dev`, or set KAFKA_BOOTSTRAP_SERVERS to a"
        f" running broker (unset, it is {DEV_BOOTSTRAP_SERVERS}, the dev stack's broker)"
    )


def _report_sent(sent: Sent, topic: str) -> None:
    count = len(sent.workflow_ids)
    if count == 1:
        click.echo(str(sent.workflow_ids[0]))
        return
    rate = count / sent.seconds if sent.seconds else float(count)
    click.echo(
        f"Submitted {count:,} requests ({_size(sent.total_bytes)}) to {topic} in"
        f" {sent.seconds:.2f} s ({rate:,.0f} requests/s)"
    )


def _progress(total: int, desc: str, unit: str) -> tqdm:
    # disable=None: tqdm shows the bar only on a terminal; one item needs no bar at all.
    return tqdm(total=total, desc=desc, unit=unit, disable=None if total > 1 else True)


def _size(count: int) -> str:
    if count < 1024:
        return f"{count} B"
    if count < 1024 * 1024:
        return f"{count / 1024:.1f} KB"
    return f"{count / (1024 * 1024):.1f} MB"


# --- PostgreSQL ----------------------------------------------------------------------------


def _settings() -> Settings:
    try:
        return load_settings()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


def _engine(settings: Settings) -> Engine:
    try:
        url = settings.postgres.url()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    return create_engine(url, connect_args={"connect_timeout": int(BROKER_TIMEOUT_S)})


def _reachable_engine(settings: Settings) -> Engine:
    engine = _engine(settings)
    _database_call(lambda: engine.connect().close())
    return engine


def _database_call(action: Callable[[], T]) -> T:
    """Run `action`, turning the database errors a user can fix into one clear line."""
    try:
        return action()
    except OperationalError as exc:
        raise click.ClickException(
            f"cannot read PostgreSQL ({_first_line(exc.orig)}); start the stack with"
            " `bridge-dagster dev`, or fix the POSTGRES_* variables"
        ) from None
    except ProgrammingError as exc:
        raise click.ClickException(
            f"the database is missing the workflow tables ({_first_line(exc.orig)});"
            " run `bridge-dagster migrate`"
        ) from None
    except SQLAlchemyError as exc:
        raise click.ClickException(f"PostgreSQL refused the query ({_first_line(exc)})") from None


def _first_line(error: BaseException | None) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


def _wait_and_report(engine: Engine, sent: Sent, timeout: float) -> None:
    remaining = set(sent.workflow_ids)
    failed: list[UUID] = []
    started = time.monotonic()
    with _progress(len(remaining), "waiting", "wf") as bar:
        while remaining and time.monotonic() - started < timeout:
            finished = _database_call(lambda: _terminal_states(engine, list(remaining)))
            remaining.difference_update(finished)
            failed.extend(wid for wid, state in finished.items() if state == "failed")
            bar.update(len(finished))
            if remaining:
                time.sleep(POLL_INTERVAL_S)
    # From the first request sent to the last workflow finished.
    elapsed = sent.seconds + time.monotonic() - started
    done = len(sent.workflow_ids) - len(remaining)
    click.echo(
        f"Completed {done - len(failed):,}, failed {len(failed):,} in {elapsed:.1f} s"
        f" ({done / elapsed:,.1f} workflows/s)"
    )
    if remaining:
        raise click.ClickException(
            f"{_workflows(len(remaining))} neither completed nor failed within {timeout:g} s"
            " (--timeout); check that `bridge-dagster dev` is running with the request sensor"
            f" on, then look at one with `bridge-dagster status {next(iter(remaining))}`"
        )
    if failed:
        reasons = _database_call(lambda: _errors(engine, failed))
        for workflow_id in failed:
            click.echo(
                f"  failed  {workflow_id}  {reasons.get(workflow_id) or '(no reason recorded)'}"
            )
        raise click.ClickException(
            f"{_workflows(len(failed))} failed, each named above with its reason; see one"
            f" whole with `bridge-dagster status {failed[0]}`"
        )


def _workflows(count: int) -> str:
    return f"{count:,} workflow" if count == 1 else f"{count:,} workflows"


def _errors(engine: Engine, workflow_ids: Sequence[UUID]) -> dict[UUID, str | None]:
    """The stored error (its code, then the reason) of each of `workflow_ids`."""
    found: dict[UUID, str | None] = {}
    w = workflow_executions
    with engine.connect() as conn:
        for start in range(0, len(workflow_ids), IDS_PER_QUERY):
            chunk = workflow_ids[start : start + IDS_PER_QUERY]
            query = select(w.c.workflow_id, w.c.error).where(w.c.workflow_id.in_(chunk))
            found.update((row.workflow_id, row.error) for row in conn.execute(query))
    return found


def _terminal_states(engine: Engine, workflow_ids: Sequence[UUID]) -> dict[UUID, str]:
    """The state of each of `workflow_ids` that has completed or failed."""
    found: dict[UUID, str] = {}
    with engine.connect() as conn:
        for start in range(0, len(workflow_ids), IDS_PER_QUERY):
            chunk = workflow_ids[start : start + IDS_PER_QUERY]
            query = select(workflow_executions.c.workflow_id, workflow_executions.c.state).where(
                workflow_executions.c.workflow_id.in_(chunk),
                workflow_executions.c.state.in_(TERMINAL_STATES),
            )
            found.update((row.workflow_id, row.state) for row in conn.execute(query))
    return found


# --- status --------------------------------------------------------------------------------


def _workflow_id(value: str | None) -> UUID | None:
    if value is None:
        return None
    try:
        return UUID(value)
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not a workflow id; pass the UUID that `bridge-dagster submit`"
            " printed, e.g. 0b6e3f5c-8a1d-4c2e-9f7a-2d4b6c8e0a1f"
        ) from None


_REPORTED_COLUMNS = (
    "state", "namespace", "file_path", "content_type", "file_size", "file_hash", "stamp_id",
    "stamp_type", "error", "duration_ms", "requested_at", "started_at", "completed_at",
    "created_at",
)  # fmt: skip


def _workflow_report(engine: Engine, workflow_id: UUID) -> dict[str, Any] | None:
    """The workflow as JSON-ready values, or None when no such workflow is recorded."""
    w = workflow_executions
    t = fsm_transitions
    with engine.connect() as conn:
        columns = [w.c[name] for name in _REPORTED_COLUMNS]
        query = select(*columns).where(w.c.workflow_id == workflow_id)
        row = conn.execute(query).mappings().first()
        if row is None:
            return None
        transitions = conn.execute(
            select(t.c.from_state, t.c.to_state, t.c.reason, t.c.transitioned_at)
            .where(t.c.workflow_id == workflow_id)
            .order_by(t.c.transitioned_at, t.c.id)
        ).mappings()
        return {
            "workflow_id": str(workflow_id),
            "state": row["state"],
            "namespace": row["namespace"],
            "file_path": row["file_path"],
            "content_type": row["content_type"],
            "file_size": row["file_size"],
            "file_hash": row["file_hash"],
            "stamp_id": None if row["stamp_id"] is None else str(row["stamp_id"]),
            "stamp_type": row["stamp_type"],
            "error": row["error"],
            "duration_ms": _ms_from_request(row),
            "duration_in_bridge_ms": row["duration_ms"],
            "requested_at": _iso(row["requested_at"]),
            "started_at": _iso(row["started_at"]),
            "completed_at": _iso(row["completed_at"]),
            "transitions": [
                {
                    "from_state": item["from_state"],
                    "to_state": item["to_state"],
                    "reason": item["reason"],
                    "at": item["transitioned_at"].isoformat(),
                }
                for item in transitions
            ],
        }


def _ms_from_request(row: Any) -> int | None:
    """From the request's own time (its envelope's) to the end; admission is a later moment,
    after the request waited on the topic and in the run queue."""
    if row["completed_at"] is None:
        return None
    start = row["requested_at"] or row["created_at"]
    return round((row["completed_at"] - start).total_seconds() * 1000)


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def _clock(iso: str) -> str:
    """An ISO time as fixed-width UTC with milliseconds, so transition lines align."""
    moment = datetime.fromisoformat(iso).astimezone(UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z"


def _format_report(report: dict[str, Any]) -> str:
    def shown(value: object) -> str:
        return "-" if value is None else str(value)

    file = shown(report["file_path"])
    if report["file_size"] is not None:
        file += f" ({shown(report['content_type'])}, {report['file_size']:,} bytes)"
    stamp = shown(report["stamp_id"])
    if report["stamp_type"] is not None:
        stamp += f" ({report['stamp_type']})"
    duration = "-"
    if report["duration_ms"] is not None:
        duration = f"{report['duration_ms']:,} ms from request to {report['state']}"
        inside = report["duration_in_bridge_ms"]
        if inside is not None and inside != report["duration_ms"]:
            duration += f" ({inside:,} ms of it after admission)"
    lines = [
        f"Workflow   {report['workflow_id']}",
        f"State      {report['state']}",
        f"Namespace  {report['namespace']}",
        f"File       {file}",
        f"File hash  {shown(report['file_hash'])}",
        f"Stamp      {stamp}",
        f"Duration   {duration}",
    ]
    if report["error"] is not None:
        lines.append(f"Error      {report['error']}")
    lines.append("Transitions")
    for item in report["transitions"]:
        change = f"{item['from_state'] or '(new)'} -> {item['to_state']}"
        reason = f"  {item['reason']}" if item["reason"] else ""
        lines.append(f"  {_clock(item['at'])}  {change}{reason}")
    if not report["transitions"]:
        lines.append("  (none recorded)")
    return "\n".join(lines)


# --- status --failed -----------------------------------------------------------------------

# Newest first; more than a screenful is narrowed with --since.
FAILED_SHOWN = 100
REASON_SHOWN_CHARS = 160
_AGE_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def _since(value: str | None) -> datetime | None:
    if value is None:
        return None
    number, unit = value[:-1], value[-1:]
    if number.isdigit() and unit in _AGE_UNITS:
        return datetime.now(UTC) - timedelta(**{_AGE_UNITS[unit]: int(number)})
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is neither an ISO time (2026-11-30T08:00:00Z) nor an age like 30m, 2h"
            " or 7d",
            param_hint="--since",
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _failed_workflows(engine: Engine, settings: Settings, since: datetime | None) -> dict[str, Any]:
    """The newest failed workflows (since `since`) with their reasons, and the dead letters
    that named no workflow in the same time."""
    w = workflow_executions
    failed_at = w.c.updated_at  # failed is terminal: its last update is the failure
    total = func.count().over().label("total")
    query = select(w.c.workflow_id, w.c.namespace, w.c.file_path, w.c.error, failed_at, total)
    query = query.where(w.c.state == "failed")
    letters = select(func.count()).where(
        dead_letters.c.workflow_id.is_(None),
        dead_letters.c.dlq_topic == dlq_topic(settings.request_topic),
    )
    if since is not None:
        query = query.where(failed_at >= since)
        letters = letters.where(dead_letters.c.created_at >= since)
    query = query.order_by(failed_at.desc(), w.c.workflow_id).limit(FAILED_SHOWN)
    with engine.connect() as conn:
        rows = conn.execute(query).all()
        unnamed = conn.execute(letters).scalar_one()
    return {
        "since": _iso(since),
        "total": rows[0].total if rows else 0,
        "workflows": [
            {
                "workflow_id": str(row.workflow_id),
                "failed_at": row.updated_at.isoformat(),
                "namespace": row.namespace,
                "file_path": row.file_path,
                "code": (row.error or "").partition(": ")[0],
                "reason": (row.error or "").partition(": ")[2],
            }
            for row in rows
        ],
        "dead_letters_without_workflow": unnamed,
        "dead_letter_topic": dlq_topic(settings.request_topic),
    }


def _format_failed(listing: dict[str, Any]) -> str:
    since = "" if listing["since"] is None else f" since {_clock(listing['since'])}"
    total, shown = listing["total"], listing["workflows"]
    lines = [f"{_workflows(total)} failed{since}" + (", newest first:" if shown else ".")]
    for item in shown:
        reason = item["reason"]
        if len(reason) > REASON_SHOWN_CHARS:
            reason = reason[: REASON_SHOWN_CHARS - 1] + "…"
        lines.append(
            f"  {_clock(item['failed_at'])}  {item['workflow_id']}  {item['namespace']}"
            f"  {item['code']}: {reason}"
        )
    if total > len(shown):
        lines.append(
            f"  … and {total - len(shown):,} older; narrow with --since, or --json for all fields"
        )
    if listing["dead_letters_without_workflow"]:
        lines.append(
            f"{listing['dead_letters_without_workflow']:,} more rejected requests{since} named"
            f" no usable workflow id; they are on {listing['dead_letter_topic']} with the reason"
        )
    return "\n".join(lines)
