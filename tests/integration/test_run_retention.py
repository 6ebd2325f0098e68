"""Run retention on a Dagster instance kept in the real PostgreSQL."""

import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.definitions.run_request import InstigatorType
from dagster._core.scheduler.instigation import TickStatus
from sqlalchemy import create_engine, text

from bridge_dagster.maintenance.run_retention import build_prune_dagster_runs, prune_runs

pytestmark = pytest.mark.integration

letters = dg.StaticPartitionsDefinition(["a", "b"])


@dg.asset(partitions_def=letters)
def by_letter() -> None:
    """A partitioned asset: each run materializes one partition."""


@dg.asset
def whole() -> None:
    """An unpartitioned asset."""


@dg.op
def no_assets() -> None:
    """A run that materializes nothing."""


@dg.job
def plain() -> None:
    no_assets()


@pytest.fixture
def instance(pg_url: str) -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test(overrides={"storage": {"postgres": {"postgres_url": pg_url}}}) as it:
        yield it


def materialize(instance: dg.DagsterInstance, asset: dg.AssetsDefinition, **kw: str) -> str:
    result = dg.materialize([asset], instance=instance, **kw)
    assert result.success
    return result.run_id


def plain_run(instance: dg.DagsterInstance) -> str:
    return plain.execute_in_process(instance=instance).run_id


def age(pg_url: str, run_ids: list[str], days: int) -> None:
    """Make runs look last updated `days` ago, as they would be after that long."""
    engine = create_engine(pg_url)
    with engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE runs SET update_timestamp = now() - make_interval(days => :days)"
                " WHERE run_id = ANY(:ids)"
            ),
            {"days": days, "ids": run_ids},
        )
    engine.dispose()


def stored_run_ids(instance: dg.DagsterInstance) -> set[str]:
    return set(instance.get_run_ids())


def latest_run_by_partition(instance: dg.DagsterInstance) -> dict[str, str]:
    key = by_letter.key
    latest = instance.get_latest_storage_id_by_partition(
        key, dg.DagsterEventType.ASSET_MATERIALIZATION
    )
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key, storage_ids=list(latest.values())), limit=10
    ).records
    return {record.partition_key: record.run_id for record in records}


def test_old_runs_go_but_the_runs_holding_the_latest_materializations_stay(
    instance: dg.DagsterInstance, pg_url: str
) -> None:
    superseded_a = materialize(instance, by_letter, partition_key="a")
    latest_a = materialize(instance, by_letter, partition_key="a")
    latest_b = materialize(instance, by_letter, partition_key="b")
    superseded_whole = materialize(instance, whole)
    latest_whole = materialize(instance, whole)
    old_plain = plain_run(instance)
    recent_plain = plain_run(instance)
    age(
        pg_url,
        [superseded_a, latest_a, latest_b, superseded_whole, latest_whole, old_plain],
        days=40,
    )

    result = build_prune_dagster_runs(retention_days=30).execute_in_process(instance=instance)

    assert result.success
    assert stored_run_ids(instance) == {
        latest_a,
        latest_b,
        latest_whole,
        recent_plain,
        result.run_id,
    }
    assert latest_run_by_partition(instance) == {"a": latest_a, "b": latest_b}
    assert instance.get_latest_materialization_event(whole.key).run_id == latest_whole
    output = next(e for e in result.all_events if e.is_successful_output)
    reported = {k: v.value for k, v in output.event_specific_data.metadata.items()}
    assert reported["deleted_runs"] == 3
    assert reported["kept_for_latest_materializations"] == 3
    assert reported["finished_runs_left_past_horizon"] == 3


def test_a_run_newer_than_the_horizon_is_kept_even_without_materializations(
    instance: dg.DagsterInstance, pg_url: str
) -> None:
    young = plain_run(instance)
    age(pg_url, [young], days=29)

    build_prune_dagster_runs(retention_days=30).execute_in_process(instance=instance)

    assert young in stored_run_ids(instance)


def test_one_pass_deletes_at_most_its_bound_and_the_next_goes_on(
    instance: dg.DagsterInstance, pg_url: str
) -> None:
    kept = materialize(instance, whole)
    old = [plain_run(instance) for _ in range(5)]
    age(pg_url, [kept, *old], days=40)
    horizon = datetime.now(UTC) - timedelta(days=30)

    first = prune_runs(instance, horizon, max_deletions=2)
    second = prune_runs(instance, horizon, max_deletions=10)

    assert (first.deleted, first.left) == (2, 4)
    assert (second.deleted, second.kept, second.left) == (3, 1, 1)
    assert stored_run_ids(instance) == {kept}


def test_the_dev_stack_instance_bounds_its_ticks(
    pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = Path(__file__).parents[2] / "bridge_dagster" / "devstack" / "dagster.yaml"
    shutil.copy(config, tmp_path / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_POSTGRES_URL", pg_url)
    monkeypatch.setenv("ORCHESTRATOR_CONCURRENCY", "2")

    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        sensor = instance.get_tick_retention_settings(InstigatorType.SENSOR)
        schedule = instance.get_tick_retention_settings(InstigatorType.SCHEDULE)

    assert sensor[TickStatus.SKIPPED] == 1
    assert sensor[TickStatus.SUCCESS] == sensor[TickStatus.FAILURE] == 30
    assert schedule[TickStatus.SUCCESS] == 30
