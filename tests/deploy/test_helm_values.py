"""deploy/helm/values.yaml against the chart's own schema; job tags as dagster-k8s reads them."""

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from dagster_k8s.job import get_user_defined_k8s_config
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

from bridge_dagster.devstack.stack import instance_config
from bridge_dagster.k8s_config import k8s_resources_tag
from bridge_dagster.orchestrator.jobs import stamp_workflow
from bridge_dagster.reducer.jobs import LANDING_TAGS, REDUCER_TAGS, land_workflow_events
from bridge_dagster.settings import ConfigError, load_settings

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "deploy/helm/chart"
SCHEMA = json.loads((CHART / "values.schema.json").read_text())
CHART_DEFAULTS = yaml.safe_load((CHART / "values.yaml").read_text())
OURS = yaml.safe_load((REPO / "deploy/helm/values.yaml").read_text())


def merged(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Helm's merge of -f values over the chart's: maps merge key by key, the rest replaces."""
    result = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), Mapping):
            result[key] = merged(base[key], value)
        else:
            result[key] = value
    return result


def _remote_refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        ref = node.get("$ref", "")
        if ref.startswith("http"):
            yield ref
        for value in node.values():
            yield from _remote_refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _remote_refs(value)


def kubernetes_stubs(schema: Mapping[str, Any]) -> Registry:
    """The schema's Kubernetes `$ref`s, each pointing at an empty schema (anything passes).

    They name Kubernetes' own types on a remote host that tests cannot reach; the chart's
    own definitions around them are still checked in full.
    """
    documents: dict[str, dict[str, Any]] = {}
    for ref in _remote_refs(schema):
        url, _, pointer = ref.partition("#")
        node = documents.setdefault(url, {})
        for segment in pointer.strip("/").split("/"):
            node = node.setdefault(segment, {})
    return Registry().with_resources(
        (url, Resource.from_contents(doc, default_specification=DRAFT7))
        for url, doc in documents.items()
    )


def schema_errors(values: Mapping[str, Any]) -> list[str]:
    validator = jsonschema.Draft7Validator(SCHEMA, registry=kubernetes_stubs(SCHEMA))
    return [
        f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(values)
    ]


def test_the_vendored_chart_defaults_satisfy_the_vendored_schema() -> None:
    assert schema_errors(CHART_DEFAULTS) == []


def test_our_values_merged_over_the_chart_defaults_satisfy_the_chart_schema() -> None:
    assert schema_errors(merged(CHART_DEFAULTS, OURS)) == []


def test_the_schema_check_refuses_a_misspelt_run_launcher() -> None:
    broken = merged(CHART_DEFAULTS, {"runLauncher": {"type": "K8sLauncher"}})
    assert any("runLauncher.type" in error for error in schema_errors(broken))


def test_the_schema_check_refuses_an_unknown_daemon_setting() -> None:
    broken = merged(CHART_DEFAULTS, merged(OURS, {"dagsterDaemon": {"maxRuns": 3}}))
    assert any("maxRuns" in error for error in schema_errors(broken))


def test_runs_launch_as_kubernetes_jobs_against_an_external_postgres() -> None:
    values = merged(CHART_DEFAULTS, OURS)
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    assert values["postgresql"]["enabled"] is False
    assert values["generatePostgresqlPasswordSecret"] is False
    assert values["postgresql"]["postgresqlPassword"] == ""


def test_the_code_server_and_every_run_pod_take_the_bridge_env_from_one_secret() -> None:
    (deployment,) = OURS["dagster-user-deployments"]["deployments"]
    secret = [{"name": "bridge-dagster-env"}]
    assert deployment["envSecrets"] == secret
    assert deployment["includeConfigInLaunchedRuns"] == {"enabled": True}
    assert OURS["runLauncher"]["config"]["k8sRunLauncher"]["envSecrets"] == secret
    assert deployment["codeServerArgs"] == ["--module-name", "bridge_dagster.definitions"]


def test_landing_and_reducer_runs_ask_for_a_light_pod() -> None:
    for tags in (LANDING_TAGS, REDUCER_TAGS, land_workflow_events.tags):
        config = get_user_defined_k8s_config(tags)
        assert config.container_config["resources"] == {
            "requests": {"cpu": "250m", "memory": "512Mi"},
            "limits": {"memory": "512Mi"},
        }


def test_stamp_workflow_runs_ask_for_the_configured_pod() -> None:
    settings = load_settings()
    config = get_user_defined_k8s_config(stamp_workflow.tags)
    assert config.container_config["resources"]["requests"] == {
        "cpu": settings.stamp_workflow_k8s_cpu,
        "memory": settings.stamp_workflow_k8s_memory,
    }


def test_stamp_workflow_pod_size_follows_its_variables() -> None:
    settings = load_settings({"STAMP_WORKFLOW_K8S_CPU": "3", "STAMP_WORKFLOW_K8S_MEMORY": "6Gi"})
    tags = k8s_resources_tag(settings.stamp_workflow_k8s_cpu, settings.stamp_workflow_k8s_memory)
    config = get_user_defined_k8s_config(tags)
    assert config.container_config["resources"] == {
        "requests": {"cpu": "3", "memory": "6Gi"},
        "limits": {"memory": "6Gi"},
    }


@pytest.mark.parametrize(
    ("name", "value"), [("STAMP_WORKFLOW_K8S_CPU", "two"), ("STAMP_WORKFLOW_K8S_MEMORY", "2GB")]
)
def test_a_pod_size_kubernetes_would_refuse_is_refused_by_name(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=f"{name}='{value}' is not a"):
        load_settings({name: value})


def test_the_run_queue_keeps_the_embedded_stacks_slots_per_kind_of_run() -> None:
    queue = OURS["dagsterDaemon"]["runCoordinator"]["config"]["queuedRunCoordinator"]
    dev = yaml.safe_load(instance_config(load_settings({})))["run_coordinator"]["config"]
    assert queue["maxConcurrentRuns"] == dev["max_concurrent_runs"]
    assert queue["tagConcurrencyLimits"] == dev["tag_concurrency_limits"]
