"""The broker away, through the real stack: a 20 s partition under a 5,000-request load,
and an outage long enough for a run to exhaust its retries."""

import time

import dagster as dg
import pytest
from dagster._core.storage.tags import AUTO_RETRY_RUN_ID_TAG, WILL_RETRY_TAG

from bridge_dagster.orchestrator.range_ledger import REQUESTED_TAG
from tests.reliability.load import small_load
from tests.reliability.scenario import Scenario, Summary
from tests.reliability.stack import ReliabilityStack

pytestmark = [pytest.mark.reliability, pytest.mark.integration]

PARTITION_S = 20


def test_a_broker_partition_under_load_loses_and_duplicates_nothing(
    stack: ReliabilityStack, summary: Summary
) -> None:
    # noida-db has no advertised-address option (`noida-db help` lists --host, --data-dir,
    # --only and the ports): it tells clients the address it binds, so a TCP proxy in front
    # of it would be bypassed after the first metadata answer. The partition is therefore
    # the broker frozen by SIGSTOP for 20 s and thawed by SIGCONT: every connection stays
    # open and nothing answers, which is what a cut that drops all traffic looks like.
    scenario = Scenario(stack, summary, "broker_partition")
    deliveries = scenario.send(small_load(5000))
    ids = [str(w) for w in deliveries.valid_ids()]

    stack.wait_for(lambda: bool(stack.progress(ids)), 90, "a workflow of the load admitted")
    scenario.details["states_at_cut"] = stack.progress(ids)
    stack.pause_broker()
    try:
        time.sleep(PARTITION_S)
    finally:
        stack.resume_broker()
    scenario.details["partition_s"] = PARTITION_S

    verdict = scenario.finish(settle_timeout_s=240)

    assert verdict.requests == 5000
    assert verdict.clean, verdict.report()


def test_a_long_broker_outage_fails_a_run_whose_range_is_requested_again_and_completes(
    stack: ReliabilityStack, summary: Summary
) -> None:
    scenario = Scenario(stack, summary, "long_broker_outage")
    sent_at = time.time()
    scenario.send(small_load(300))
    # The sensor has handed the range to a run; the broker goes before that run reads it.
    stack.wait_for(lambda: bool(stack.stamp_runs(after=sent_at)), 60, "a run for the load")
    stack.stop_broker()
    down_at = time.monotonic()
    try:
        stack.wait_for(
            lambda: _retries_exhausted(stack, sent_at), 300, "the run's last retry failed"
        )
    finally:
        stack.start_broker()
    back_at = time.time()
    failed = [r.run_id for r in stack.stamp_runs(after=sent_at)]
    scenario.details.update(outage_s=round(time.monotonic() - down_at, 1), failed_runs=failed)

    verdict = scenario.finish(settle_timeout_s=180)

    # The bound: a range whose runs all ended unadmitted is requested within a minute.
    again_s = stack.seconds_to_run_tagged(REQUESTED_TAG, after=back_at)
    assert again_s is not None, f"no run requested the range again after {failed} failed"
    assert again_s < 60, f"the range was requested again {again_s:.0f} s after the broker returned"
    assert verdict.clean, verdict.report()


def _retries_exhausted(stack: ReliabilityStack, after: float) -> bool:
    """Every run since `after` failed, and none has a retry still to come."""
    runs = stack.stamp_runs(after=after)
    retrying = [
        r
        for r in runs
        if r.tags.get(WILL_RETRY_TAG) == "true" and AUTO_RETRY_RUN_ID_TAG not in r.tags
    ]
    return (
        bool(runs) and all(r.status == dg.DagsterRunStatus.FAILURE for r in runs) and not retrying
    )
