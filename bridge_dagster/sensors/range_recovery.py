"""Which handed-out request ranges, and which admitted workflows, lost every run that
could finish them.

Dagster never reads an offset the cursor moved past again, so a range whose runs all ended
without admitting it (retries exhausted, cancelled, deleted, killed and marked failed) is
found here, from the ledger and the run storage, and requested again under a new run key;
likewise the owners of unfinished workflows whose runs have all ended.
"""

from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg
from dagster._core.storage.tags import AUTO_RETRY_RUN_ID_TAG, ROOT_RUN_ID_TAG, WILL_RETRY_TAG

from bridge_dagster.orchestrator.range_ledger import RANGE_TAG, Entry
from bridge_dagster.orchestrator.resumption import RESUME_TAG, Owner
from bridge_dagster.orchestrator.sweeper import UNFINISHED

# A failed run that Dagster will retry has no retry yet for a few seconds; past this, the
# retry daemon is taken to be off or stuck and the range is requested again.
RETRY_GRACE = timedelta(seconds=60)


def stalled(instance: dg.DagsterInstance, handed_out: list[Entry]) -> list[Entry]:
    """The entries no unfinished run, and no retry still to come, holds."""
    if not handed_out:
        return []
    keys = [e.range_key for e in handed_out]
    held = {r.tags[RANGE_TAG] for r in _holding(instance, tags={RANGE_TAG: keys})}
    return [e for e in handed_out if e.range_key not in held]


def ended(instance: dg.DagsterInstance, owners: list[Owner]) -> list[Owner]:
    """The owners that neither their run, a retry of it, nor the run they were handed to
    may still finish."""
    run_ids = [o.run_id for o in owners if o.run_id]
    keys = [o.resume_key for o in owners if o.resume_key]
    live = set()
    if run_ids:
        live |= {r.run_id for r in _holding(instance, run_ids=run_ids)}
        live |= {
            r.tags[ROOT_RUN_ID_TAG] for r in _holding(instance, tags={ROOT_RUN_ID_TAG: run_ids})
        }
    if keys:
        live |= {r.tags[RESUME_TAG] for r in _holding(instance, tags={RESUME_TAG: keys})}
    return [o for o in owners if o.run_id not in live and o.resume_key not in live]


def _holding(instance: dg.DagsterInstance, **match: Any) -> list[dg.DagsterRun]:
    """The matching runs that are unfinished, or failed with their retry still to come."""
    unfinished = instance.get_runs(dg.RunsFilter(statuses=UNFINISHED, **match))
    recent_failures = instance.get_runs(
        dg.RunsFilter(
            statuses=[dg.DagsterRunStatus.FAILURE],
            updated_after=datetime.now(UTC) - RETRY_GRACE,
            **match,
        )
    )
    retrying = [
        r
        for r in recent_failures
        if r.tags.get(WILL_RETRY_TAG) == "true" and AUTO_RETRY_RUN_ID_TAG not in r.tags
    ]
    return [*unfinished, *retrying]


def run_key_again(entry: Entry) -> str:
    """A new run key for the entry's next request: Dagster never launches a key twice."""
    return f"{entry.range_key}#{entry.requested + 1}"
