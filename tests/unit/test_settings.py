"""Configuration: defaults, and errors that name the variable and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import make_url

from bridge_dagster.settings import VARIABLES, ConfigError, load_settings


def test_defaults_apply_when_nothing_is_set() -> None:
    settings = load_settings({})
    assert settings.postgres.port == 5432
    assert settings.workflow_topic == "dev.omninode_bridge.onex.workflows.v1"
    assert settings.request_topic == "dev.omninode_bridge.onex.cmd.stamp-workflow-requested.v1"
    assert settings.default_namespace == "omninode.bridge"
    assert settings.postgres.password is None


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("POSTGRES_PORT", "abc"),
        ("POSTGRES_PORT", "70000"),
        ("LOG_LEVEL", "loud"),
        ("METADATA_STAMPING_SERVICE_URL", "ftp://stamping"),
        ("ONEXTREE_SERVICE_URL", "http://tree:notaport"),
        ("KAFKA_BOOTSTRAP_SERVERS", "broker-without-port"),
        ("ORCHESTRATOR_CONCURRENCY", "0"),
        ("KAFKA_WORKFLOW_TOPIC", "bad topic"),
        ("POSTGRES_SSL_MODE", "sometimes"),
        ("DEFAULT_NAMESPACE", "has spaces"),
        ("REQUEST_SENSOR_INTERVAL_S", "soon"),
        ("POSTGRES_DATABASE", 'bridge"; DROP DATABASE x; --'),
        ("POSTGRES_DATABASE", "d" * 64),
        ("KAFKA_REDUCER_TOPIC", "no/slashes"),
        ("AGGREGATION_WINDOW_SIZE_MS", "-5"),
        ("AGGREGATION_BATCH_SIZE", "0"),
        ("REDUCER_CONCURRENCY", "many"),
        ("REDUCER_PARTITIONS_START", "2026-10-01"),
        ("REDUCER_PARTITIONS_START", "2026-10-01-00:30"),
        ("WORKFLOW_EVENTS_RETENTION_DAYS", "0"),
        ("DAGSTER_RUN_RETENTION_DAYS", "0"),
    ],
)
def test_an_invalid_value_is_refused_with_its_name(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        load_settings({name: value})


def test_a_pool_too_small_for_a_landing_is_refused_saying_why() -> None:
    with pytest.raises(ConfigError, match="POSTGRES_POOL_MAX_SIZE='1' is below 2: a landing"):
        load_settings({"POSTGRES_POOL_MAX_SIZE": "1"})
    assert load_settings({"POSTGRES_POOL_MAX_SIZE": "2"}).postgres.pool_max_size == 2


def test_the_reducer_partitions_start_reads_like_a_partition_key() -> None:
    start = load_settings({"REDUCER_PARTITIONS_START": "2026-11-05-07:00"}).reducer_partitions_start
    assert start.isoformat() == "2026-11-05T07:00:00+00:00"


def test_a_landing_run_smaller_than_its_batch_is_refused_naming_both() -> None:
    with pytest.raises(ConfigError, match="MAX_AGGREGATION_QUEUE_SIZE=50 is smaller than"):
        load_settings({"MAX_AGGREGATION_QUEUE_SIZE": "50", "AGGREGATION_BATCH_SIZE": "100"})


def test_an_empty_password_is_refused() -> None:
    with pytest.raises(ConfigError, match="POSTGRES_PASSWORD is set but empty"):
        load_settings({"POSTGRES_PASSWORD": ""})


def test_an_external_database_needs_a_password() -> None:
    with pytest.raises(ConfigError, match="POSTGRES_PASSWORD is not set"):
        load_settings({"POSTGRES_HOST": "db.internal"})


def test_a_port_error_says_how_to_fix_it() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({"POSTGRES_PORT": "abc"})
    assert "POSTGRES_PORT='abc' is not a port number" in str(caught.value)
    assert "unset it to use '5432'" in str(caught.value)


def test_allowed_roots_split_on_the_path_separator(tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    settings = load_settings({"BRIDGE_ALLOWED_ROOTS": f"{first}:{second}"})
    assert settings.allowed_roots == (first.resolve(), second.resolve())


def test_an_allowed_root_that_is_not_a_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="BRIDGE_ALLOWED_ROOTS"):
        load_settings({"BRIDGE_ALLOWED_ROOTS": str(tmp_path / "missing")})


def test_the_url_carries_a_password_with_a_space_and_a_plus_unchanged() -> None:
    settings = load_settings({"POSTGRES_HOST": "db", "POSTGRES_PASSWORD": "a b+c@d/e%f:g"})
    assert make_url(settings.postgres.url()).password == "a b+c@d/e%f:g"


def test_a_database_name_with_a_hyphen_is_accepted() -> None:
    assert load_settings({"POSTGRES_DATABASE": "bridge-dev_2"}).postgres.database == "bridge-dev_2"


def test_by_default_the_queue_holds_several_full_runs() -> None:
    settings = load_settings({})
    assert (settings.max_requests_per_run, settings.max_workflow_queue_size) == (1000, 10000)


def test_a_queue_smaller_than_one_run_is_refused_naming_both_variables() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({"MAX_WORKFLOW_QUEUE_SIZE": "500", "MAX_REQUESTS_PER_RUN": "1000"})
    message = str(caught.value)
    assert "MAX_WORKFLOW_QUEUE_SIZE=500" in message
    assert "MAX_REQUESTS_PER_RUN=1000" in message
    assert "raise MAX_WORKFLOW_QUEUE_SIZE" in message


def test_a_queue_exactly_one_run_large_is_accepted() -> None:
    settings = load_settings({"MAX_WORKFLOW_QUEUE_SIZE": "50", "MAX_REQUESTS_PER_RUN": "50"})
    assert settings.max_workflow_queue_size == 50


class _RecordingEnv(dict[str, str]):
    """An environment that remembers which variables were looked up."""

    def __init__(self) -> None:
        super().__init__()
        self.read: set[str] = set()

    def get(self, key: str, default: str | None = None) -> str | None:  # type: ignore[override]
        self.read.add(key)
        return super().get(key, default)


def test_every_documented_variable_is_read() -> None:
    env = _RecordingEnv()
    load_settings(env)
    assert {v.name for v in VARIABLES} <= env.read


def test_the_readme_documents_every_variable_with_its_default() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    for variable in VARIABLES:
        default = f"`{variable.default}`" if variable.default else "—"
        assert f"| `{variable.name}` | {default} |" in readme, variable.name
