"""A landing run's page links to the `workflow_events` hours it touched."""

from __future__ import annotations

from datetime import timedelta

import dagster as dg
import pytest

from bridge_dagster.devstack.postgres import PostgresAddress
from bridge_dagster.events import synthetic
from bridge_dagster.reducer.partitions import partition_key
from tests.conftest import Topics
from tests.integration.reducer_harness import BASE_HOUR, produce_events, reducer_definitions

pytestmark = pytest.mark.integration


def land(pg: PostgresAddress, bootstrap: str, topics: Topics) -> dict[str, dg.MetadataValue]:
    defs = reducer_definitions(pg, bootstrap, topics.workflow, f"{topics.workflow}.reducer")
    result = defs.resolve_job_def("land_workflow_events").execute_in_process(
        instance=dg.DagsterInstance.ephemeral()
    )
    assert result.success
    [output] = [e for e in result.all_node_events if e.is_successful_output]
    return output.step_output_data.metadata


def test_a_landing_run_links_every_hour_it_touched_with_its_event_count(
    pg_address: PostgresAddress, kafka_bootstrap: str, topics: Topics
) -> None:
    flows = synthetic.workflows(
        6, start=BASE_HOUR, spread=timedelta(hours=2), namespaces=["alpha"], failure_rate=0
    )
    sent = produce_events(kafka_bootstrap, topics.workflow, synthetic.stream(flows))

    metadata = land(pg_address, kafka_bootstrap, topics)

    hours = sorted(
        {
            e.event_timestamp.replace(minute=0, second=0, microsecond=0)
            for e in synthetic.stream(flows)
        },
        reverse=True,
    )
    lines = metadata["touched partitions"].value.splitlines()
    assert [line.split("]")[0] for line in lines] == [f"- [{partition_key(h)}" for h in hours]
    for line, hour in zip(lines, hours, strict=True):
        assert f"(/assets/workflow_events?view=partitions&partition={partition_key(hour)})" in line
    assert sum(int(line.rsplit(": ", 1)[1].split()[0].replace(",", "")) for line in lines) == sent
    assert metadata["hours_touched"].value == len(hours)


def test_a_landing_run_with_nothing_new_says_so(
    pg_address: PostgresAddress, kafka_bootstrap: str, topics: Topics
) -> None:
    metadata = land(pg_address, kafka_bootstrap, topics)

    assert metadata["touched partitions"].value == "none: nothing new to land"
    assert metadata["hours_touched"].value == 0
