"""Which handed-out request ranges lost every run that could admit them.

Dagster never reads an offset the cursor moved past again, so a range whose runs all ended
without admitting it (retries exhausted, cancelled, deleted, killed and marked failed) is
found here, from the ledger and the run storage, and requested again under a new run key.
"""

from datetime import UTC, datetime, timedelta

import dagster as dg
from dagster._core.storage.tags import AUTO_RETRY_RUN_ID_TAG, WILL_RETRY_TAG

from bridge_dagster.orchestrator.range_ledger import RANGE_TAG, Entry

# A run with any of these statuses may still admit its range.
UNFINISHED = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]
# A failed run that Dagster will retry has no retry yet for a few seconds; past this, the
# retry daemon is taken to be off or stuck and the range is requested again.
RETRY_GRACE = timedelta(seconds=60)


def stalled(instance: dg.DagsterInstance, handed_out: list[Entry]) -> list[Entry]:
    """The entries no unfinished run, and no retry still to come, holds."""
    if not handed_out:
        return []
    keys = [e.range_key for e in handed_out]
    held = {r.tags[RANGE_TAG] for r in _runs(instance, keys, UNFINISHED)}
    recent_failures = _runs(
        instance,
        keys,
        [dg.DagsterRunStatus.FAILURE],
        updated_after=datetime.now(UTC) - RETRY_GRACE,
    )
    held |= {
        r.tags[RANGE_TAG]
        for r in recent_failures
        if r.tags.get(WILL_RETRY_TAG) == "true" and AUTO_RETRY_RUN_ID_TAG not in r.tags
    }
    return [e for e in handed_out if e.range_key not in held]


def _runs(
    instance: dg.DagsterInstance,
    keys: list[str],
    statuses: list[dg.DagsterRunStatus],
    updated_after: datetime | None = None,
) -> list[dg.DagsterRun]:
    return list(
        instance.get_runs(
            dg.RunsFilter(tags={RANGE_TAG: keys}, statuses=statuses, updated_after=updated_after)
        )
    )


def run_key_again(entry: Entry) -> str:
    """A new run key for the entry's next request: Dagster never launches a key twice."""
    return f"{entry.range_key}#{entry.requested + 1}"
