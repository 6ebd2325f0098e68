"""What the Dagster UI shows of the one Definitions: descriptions a user can read."""

from __future__ import annotations

import dagster as dg
import pytest

from bridge_dagster.definitions import defs
from bridge_dagster.reducer.aggregate import HOURLY_TABLE_NAMES
from bridge_dagster.sensors.frequency import DAEMON_LOOP_S

RESOURCES = sorted(
    (key, resource)
    for key, resource in (defs.resources or {}).items()
    if isinstance(resource, dg.ConfigurableResource)
)


def test_the_definitions_have_configurable_resources_to_check() -> None:
    assert {"postgres", "kafka", "stamping", "tree", "workflow_settings"} <= dict(RESOURCES).keys()


@pytest.mark.parametrize(("key", "resource"), RESOURCES, ids=[key for key, _ in RESOURCES])
def test_every_resource_field_has_a_description(
    key: str, resource: dg.ConfigurableResource
) -> None:
    missing = [
        name
        for name, field in type(resource).model_fields.items()
        if not (field.description or "").strip()
    ]
    assert missing == [], f"{key}: fields without a description: {missing}"


def test_the_run_limits_are_shown_on_the_workflow_settings_resource() -> None:
    fields = type(dict(RESOURCES)["workflow_settings"]).model_fields
    for name, setting in [
        ("max_requests_per_run", "MAX_REQUESTS_PER_RUN"),
        ("max_workflow_queue_size", "MAX_WORKFLOW_QUEUE_SIZE"),
        ("orchestrator_concurrency", "ORCHESTRATOR_CONCURRENCY"),
    ]:
        assert (fields[name].description or "").startswith(setting)


@pytest.mark.parametrize(
    ("name", "table"),
    [
        ("stamp_workflow", "workflow_executions"),
        ("sweep_stale_workflows", "workflow_executions"),
        ("land_workflow_events", "workflow_events"),
        ("reducer_hourly", "reducer_namespace_hourly"),
    ],
)
def test_job_descriptions_name_the_tables_they_write_in_markdown(name: str, table: str) -> None:
    assert f"`{table}`" in (defs.resolve_job_def(name).description or "")


def test_every_sensor_says_how_often_it_really_ticks() -> None:
    for sensor in defs.sensors or []:
        assert f"Ticks about every {DAEMON_LOOP_S} s" in (sensor.description or ""), sensor.name


def test_every_reducer_asset_is_grouped_owned_and_has_a_column_schema() -> None:
    specs = {spec.key.to_user_string(): spec for spec in defs.resolve_all_asset_specs()}
    for name in [*HOURLY_TABLE_NAMES, "reducer_bridge_state"]:
        spec = specs[name]
        assert spec.group_name == "reducer"
        assert spec.owners and spec.kinds
        assert "dagster/column_schema" in spec.metadata
        assert f"`{name}`" in (spec.description or "")
