"""deploy/dagster.yaml and deploy/workspace.yaml: valid for Dagster, configured from the env."""

from pathlib import Path

import pytest
import yaml
from dagster._config import process_config
from dagster._core.instance.config import dagster_instance_config
from dagster._core.instance.ref import InstanceRef
from dagster_postgres import DagsterPostgresStorage
from dagster_postgres.utils import pg_url_from_config
from sqlalchemy.engine import make_url

from bridge_dagster.devstack.stack import instance_config
from bridge_dagster.orchestrator.workflow import BATCH_DEADLINE_CALLS
from bridge_dagster.settings import load_settings

REPO = Path(__file__).resolve().parents[2]
ENV = {
    "POSTGRES_HOST": "postgres",
    "POSTGRES_PORT": "5432",
    "POSTGRES_DATABASE": "omninode_bridge",
    "POSTGRES_USER": "bridge",
    "POSTGRES_PASSWORD": "p@ss:w/rd%?",
}


@pytest.fixture
def dagster_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "dagster.yaml").write_bytes((REPO / "deploy/dagster.yaml").read_bytes())
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    return tmp_path


def test_instance_config_is_valid_for_dagster(dagster_home: Path) -> None:
    config, _ = dagster_instance_config(str(dagster_home))
    assert config["run_monitoring"]["max_runtime_seconds"] == 3600
    assert config["run_retries"] == {"enabled": True, "max_retries": 2}
    assert config["retention"]["sensor"]["purge_after_days"]["skipped"] == 1


def test_storage_url_carries_every_postgres_variable_and_any_password(
    dagster_home: Path,
) -> None:
    storage = InstanceRef.from_dir(str(dagster_home)).storage_data
    # What the storage does when it starts: resolve {env: …} sources, then build its URL.
    resolved = process_config(DagsterPostgresStorage.config_type(), storage.config_dict)
    assert resolved.success, resolved.errors
    url = make_url(pg_url_from_config(resolved.value))
    assert (url.drivername, url.host, url.port, url.database) == (
        "postgresql+psycopg2",
        "postgres",
        5432,
        "omninode_bridge",
    )
    assert (url.username, url.password) == ("bridge", "p@ss:w/rd%?")


def test_run_queue_slots_are_the_embedded_stacks_at_the_default_settings(
    dagster_home: Path,
) -> None:
    # Dagster takes these limits only as numbers: they must stay what the dev stack writes
    # for the default ORCHESTRATOR_CONCURRENCY and REDUCER_CONCURRENCY.
    coordinator = InstanceRef.from_dir(str(dagster_home)).run_coordinator
    assert coordinator is not None
    queue = coordinator.get_run_queue_config()
    dev = yaml.safe_load(instance_config(load_settings({})))["run_coordinator"]["config"]
    assert queue.max_concurrent_runs == dev["max_concurrent_runs"]
    assert [dict(limit) for limit in queue.tag_concurrency_limits] == dev["tag_concurrency_limits"]


def test_workspace_names_the_code_server_over_grpc() -> None:
    workspace = yaml.safe_load((REPO / "deploy/workspace.yaml").read_text())
    (location,) = workspace["load_from"]
    assert location["grpc_server"] == {
        "host": {"env": "DAGSTER_CODE_SERVER_HOST"},
        "port": 4000,
        "location_name": "bridge_dagster",
    }


def test_dev_and_production_end_a_run_after_the_same_hour_past_any_batch_deadline() -> None:
    settings = load_settings({})
    dev = yaml.safe_load(instance_config(settings))["run_monitoring"]
    production = yaml.safe_load((REPO / "deploy/dagster.yaml").read_text())["run_monitoring"]

    assert dev["max_runtime_seconds"] == production["max_runtime_seconds"] == 3600
    # A batch's unfinished workflows fail with their reason before the run is ended.
    assert BATCH_DEADLINE_CALLS * settings.step_timeout_ms / 1000 < dev["max_runtime_seconds"]
