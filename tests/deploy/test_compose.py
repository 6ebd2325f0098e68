"""docker-compose.yml: accepted with a filled .env, refused without POSTGRES_PASSWORD."""

from pathlib import Path

import yaml

from tests.deploy.compose import REPO, compose_config, needs_docker_compose, rendered

pytestmark = needs_docker_compose

FILLED = (
    (REPO / ".env.example")
    .read_text()
    .replace("POSTGRES_PASSWORD=\n", "POSTGRES_PASSWORD=not-a-real-secret:/@%\n")
)
BRIDGE_SERVICES = {
    "code-server",
    "webserver",
    "daemon",
    "metadata-stamping",
    "onextree",
    "exporter",
}


def test_the_example_env_file_holds_no_password() -> None:
    assert "POSTGRES_PASSWORD=\n" in (REPO / ".env.example").read_text()


def test_compose_accepts_the_example_env_file_once_the_password_is_filled_in(
    tmp_path: Path,
) -> None:
    services = rendered(tmp_path, FILLED)["services"]
    assert BRIDGE_SERVICES | {"postgres", "redpanda", "redpanda-topics"} <= set(services)
    for name in BRIDGE_SERVICES:
        assert services[name]["environment"]["POSTGRES_PASSWORD"] == "not-a-real-secret:/@%"


def test_compose_refuses_to_start_without_postgres_password(tmp_path: Path) -> None:
    result = compose_config(tmp_path, FILLED.replace("POSTGRES_PASSWORD=", "# POSTGRES_PASSWORD="))
    assert result.returncode != 0
    assert "POSTGRES_PASSWORD is not set" in result.stderr
    assert ".env.example" in result.stderr


def test_compose_refuses_an_empty_postgres_password(tmp_path: Path) -> None:
    result = compose_config(tmp_path, "POSTGRES_PASSWORD=\n")
    assert result.returncode != 0
    assert "POSTGRES_PASSWORD is not set" in result.stderr


def test_postgres_15_keeps_its_data_in_a_named_volume_and_reports_health(
    tmp_path: Path,
) -> None:
    config = rendered(tmp_path, FILLED)
    postgres = config["services"]["postgres"]
    assert postgres["image"] == "postgres:15"
    assert "postgres-data:/var/lib/postgresql/data:rw" in postgres["volumes"]
    assert "postgres-data" in config["volumes"]
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])


def test_bridge_services_wait_for_a_healthy_database_and_the_created_topics(
    tmp_path: Path,
) -> None:
    services = rendered(tmp_path, FILLED)["services"]
    for name in BRIDGE_SERVICES:
        depends = services[name]["depends_on"]
        assert depends["postgres"]["condition"] == "service_healthy"
        assert depends["redpanda-topics"]["condition"] == "service_completed_successfully"


def test_topic_init_creates_the_topics_named_in_the_env_file_and_their_dead_letters(
    tmp_path: Path,
) -> None:
    env_file = FILLED.replace(
        "KAFKA_REQUEST_TOPIC=dev.omninode_bridge.onex.cmd.stamp-workflow-requested.v1",
        "KAFKA_REQUEST_TOPIC=prod.requests.v1",
    )
    init = rendered(tmp_path, env_file)["services"]["redpanda-topics"]
    assert init["environment"]["REQUEST_TOPIC"] == "prod.requests.v1"
    assert init["environment"]["WORKFLOW_TOPIC"] == "dev.omninode_bridge.onex.workflows.v1"
    assert init["environment"]["REDUCER_TOPIC"] == "dev.omninode_bridge.onex.reducer.v1"
    # `config` prints a compose file, where a shell's $ is still written $$.
    script = " ".join(init["command"])
    assert '"$$REQUEST_TOPIC.dlq" "$$WORKFLOW_TOPIC.dlq"' in script


def test_each_dagster_process_runs_its_own_command_of_the_one_image(tmp_path: Path) -> None:
    services = rendered(tmp_path, FILLED)["services"]
    images = {services[name]["image"] for name in BRIDGE_SERVICES | {"migrate"}}
    assert images == {"bridge-dagster:production"}
    assert services["code-server"]["command"][:3] == ["dagster", "code-server", "start"]
    assert services["webserver"]["command"][0] == "dagster-webserver"
    assert services["daemon"]["command"][:2] == ["dagster-daemon", "run"]
    assert services["migrate"]["command"] == ["bridge-dagster", "migrate"]
    assert "exporter" in services["exporter"]["command"]


def test_services_publish_the_guides_ports_on_loopback_only(tmp_path: Path) -> None:
    services = rendered(tmp_path, FILLED)["services"]
    published = {
        name: services[name]["ports"]
        for name in ("webserver", "metadata-stamping", "onextree", "exporter")
    }
    assert published == {
        "webserver": ["127.0.0.1:3000:3000/tcp"],
        "metadata-stamping": ["127.0.0.1:8053:8053/tcp"],
        "onextree": ["127.0.0.1:8058:8058/tcp"],
        "exporter": ["127.0.0.1:9090:9090/tcp"],
    }


def test_migrations_and_monitoring_only_run_in_their_profiles(tmp_path: Path) -> None:
    services = rendered(tmp_path, FILLED)["services"]
    assert services["migrate"]["profiles"] == ["migrations"]
    assert services["prometheus"]["profiles"] == ["full"]
    assert services["grafana"]["profiles"] == ["full"]
    assert all("profiles" not in services[name] for name in BRIDGE_SERVICES)


def test_every_long_running_service_has_resource_limits(tmp_path: Path) -> None:
    services = rendered(tmp_path, FILLED)["services"]
    for name, service in services.items():
        if name in ("migrate", "redpanda-topics"):
            continue
        resources = service["deploy"]["resources"]
        assert resources["limits"]["memory"], name
        assert resources["reservations"]["cpus"], name


def test_mount_mode_and_build_target_from_the_env_file_reach_the_services(
    tmp_path: Path,
) -> None:
    env_file = FILLED.replace("MOUNT_MODE=ro", "MOUNT_MODE=rw").replace(
        "BUILD_TARGET=production", "BUILD_TARGET=development"
    )
    code_server = rendered(tmp_path, env_file)["services"]["code-server"]
    assert f"{tmp_path}/bridge_dagster:/app/bridge_dagster:rw" in code_server["volumes"]
    assert code_server["build"]["args"]["BUILD_TARGET"] == "development"
    assert code_server["image"] == "bridge-dagster:development"


def test_prometheus_scrapes_the_exporter_where_compose_serves_it(tmp_path: Path) -> None:
    prometheus = yaml.safe_load((REPO / "deploy/prometheus.yml").read_text())
    (job,) = prometheus["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    assert job["static_configs"][0]["targets"] == ["exporter:9090"]
    exporter = rendered(tmp_path, FILLED)["services"]["exporter"]
    assert exporter["command"][-2:] == ["--port", "9090"]


def test_the_workflow_calls_the_stacks_http_services_unless_the_env_file_empties_them(
    tmp_path: Path,
) -> None:
    default = rendered(tmp_path, FILLED)["services"]["code-server"]["environment"]
    assert default["METADATA_STAMPING_SERVICE_URL"] == "http://metadata-stamping:8053"
    assert default["ONEXTREE_SERVICE_URL"] == "http://onextree:8058"
    emptied = FILLED.replace("# ONEXTREE_SERVICE_URL=", "ONEXTREE_SERVICE_URL=")
    in_process = rendered(tmp_path, emptied)["services"]["code-server"]["environment"]
    assert in_process["ONEXTREE_SERVICE_URL"] == ""
