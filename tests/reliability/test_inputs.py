"""Inputs a producer gets wrong, through the real stack: malformed messages by the
thousand, every request sent three times, and a file swapped for a symlink mid-workflow."""

import os
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from confluent_kafka import KafkaError

from bridge_dagster.events.requests import build_request
from bridge_dagster.stamping import canonical_hash
from tests.reliability import bad_input
from tests.reliability.load import ENVIRONMENT, Outgoing, demo_load, read_from, valid
from tests.reliability.scenario import Scenario, Summary
from tests.reliability.stack import ReliabilityStack

pytestmark = [pytest.mark.reliability, pytest.mark.integration]

MALFORMED = 10_000
SEED = 20260901
# Reasons a file request may fail for while its file flips to a symlink and back.
FILE_RACE_CODES = frozenset({"file_changed", "path_refused"})
SECRET = b"outside the allowed root: never hashed, stamped or written\n"


def test_malformed_messages_are_dead_lettered_once_and_cost_only_themselves(
    stack: ReliabilityStack, summary: Summary
) -> None:
    scenario = Scenario(stack, summary, "bad_input")
    mixed = bad_input.interleave(
        bad_input.valid_mix(200, SEED), bad_input.malformed(MALFORMED, SEED), SEED
    )
    sent = scenario.send(mixed)
    too_large = scenario.send(
        bad_input.over_limit(2, SEED), max_bytes=2 * bad_input.OVER_LIMIT_BYTES
    )
    scenario.details["refused_by_broker"] = [e.str() for _, e in too_large.refused]

    verdict = scenario.finish(settle_timeout_s=300)

    originals = [str(m.workflow_id) for m in mixed if m.kind == bad_input.ORIGINAL]
    [(accepted,)] = stack.query(
        "SELECT count(*) FROM workflow_executions"
        " WHERE workflow_id = ANY(CAST(:ids AS uuid[])) AND state = 'completed'",
        ids=originals,
    )
    assert originals and accepted == len(originals), f"{accepted} of {len(originals)} accepted"
    assert not sent.refused, sent.refused[:3]
    assert not too_large.delivered
    assert {e.code() for _, e in too_large.refused} == {KafkaError.MSG_SIZE_TOO_LARGE}
    assert verdict.bad_inputs >= MALFORMED
    assert verdict.clean, verdict.report()


def test_a_duplicate_storm_completes_every_workflow_once(
    stack: ReliabilityStack, summary: Summary
) -> None:
    scenario = Scenario(stack, summary, "duplicate_storm")
    requests = demo_load(300, seed=31)
    # Each copy a send of its own, so copies meet in one run and in runs after each other.
    for _ in range(3):
        scenario.send(requests)

    verdict = scenario.finish()

    assert verdict.requests == 900
    assert verdict.clean, verdict.report()


def _file_requests(paths: list[Path]) -> list[Outgoing]:
    """A request per file; every other one writes the stamped file back."""
    requests = []
    for index, path in enumerate(paths):
        workflow_id = uuid.uuid4()
        value = build_request(
            workflow_id, environment=ENVIRONMENT, file_path=str(path), write_back=index % 2 == 0
        )
        requests.append(valid(workflow_id, value))
    return requests


def _swap_to_symlink(path: Path, target: Path) -> None:
    link = path.with_name(f".{path.name}.link")
    link.unlink(missing_ok=True)
    link.symlink_to(target)
    os.replace(link, path)


@contextmanager
def flipping(paths: list[Path], target: Path, contents: dict[Path, bytes]) -> Iterator[None]:
    """While the block runs, swap each file for a symlink to `target` and back, over and over."""
    stop = threading.Event()

    def flip() -> None:
        while not stop.is_set():
            for path in paths:
                _swap_to_symlink(path, target)
                regular = path.with_name(f".{path.name}.regular")
                regular.write_bytes(contents[path])
                os.replace(regular, path)
            stop.wait(0.01)

    flipper = threading.Thread(target=flip, daemon=True)
    flipper.start()
    try:
        yield
    finally:
        stop.set()
        flipper.join(timeout=10)


def test_a_file_swapped_for_a_symlink_mid_workflow_never_leads_outside_the_root(
    stack: ReliabilityStack, summary: Summary
) -> None:
    secret = stack.outside / "secret.txt"
    secret.write_bytes(SECRET)
    before = secret.stat()
    contents = {}
    for index in range(80):
        path = stack.allowed_root / f"module_{index}.py"
        contents[path] = f"# module {index}\n".encode() + os.urandom(400).hex().encode() + b"\n"
        path.write_bytes(contents[path])
    paths = list(contents)
    swapped, steady = paths[:40], paths[40:]
    requests = _file_requests(paths)
    scenario = Scenario(stack, summary, "symlink_swap")
    # Allowed to fail (the file changed under it, or is a symlink), never to read the secret.
    scenario.expected.may_fail.update(
        dict.fromkeys([r.workflow_id for r in requests[: len(swapped)]], FILE_RACE_CODES)
    )

    with flipping(swapped, secret, contents):
        scenario.send(requests)
        verdict = scenario.finish()

    secret_hash = canonical_hash(SECRET)
    after = secret.stat()
    assert secret.read_bytes() == SECRET
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert not stack.query(
        "SELECT workflow_id FROM workflow_executions WHERE file_hash = :h", h=secret_hash
    )
    assert not stack.query(
        "SELECT stamp_id FROM metadata_stamps WHERE file_hash = :h", h=secret_hash
    )
    events = read_from(stack.bootstrap, stack.topics.workflow, scenario.start.workflow)
    assert not [e for e in events if secret_hash.encode() in e.value]
    completed = stack.query(
        "SELECT file_path, file_hash FROM workflow_executions"
        " WHERE file_path = ANY(:paths) AND state = 'completed'",
        paths=[str(p) for p in paths],
    )
    assert all(h == canonical_hash(contents[Path(p)]) for p, h in completed), completed
    assert {p for p, _ in completed} >= {str(p) for p in steady}
    assert verdict.clean, verdict.report()
