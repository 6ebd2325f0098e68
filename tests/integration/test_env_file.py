"""`.env` in the working directory configures `bridge-dagster`; the environment wins over it.

The command runs as a user types it, in its own process from a directory holding the file,
so the file's variables cannot leak into this test process.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bridge_dagster.settings import VARIABLES
from tests.conftest import Topics
from tests.integration.test_cli_submit import read_all

COMMAND = Path(sys.executable).with_name("bridge-dagster")


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any of the project's variables."""
    names = {v.name for v in VARIABLES}
    return {k: v for k, v in os.environ.items() if k not in names} | extra


def bridge_dagster(cwd: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(COMMAND), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


def test_a_bad_broker_list_in_env_file_is_refused_with_its_name(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("KAFKA_BOOTSTRAP_SERVERS=broker-without-port\n")

    result = bridge_dagster(tmp_path, clean_env(), "submit", "--content", "hello")

    assert result.returncode == 1
    assert "KAFKA_BOOTSTRAP_SERVERS='broker-without-port' is not a host:port" in result.stderr


def test_the_dev_stack_refuses_a_bad_env_file_before_starting_anything(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("# the guide's file\nPOSTGRES_PORT=abc\n")
    data_dir = tmp_path / "data"

    result = bridge_dagster(tmp_path, clean_env(), "dev", "--data-dir", str(data_dir))

    assert result.returncode == 1
    assert "POSTGRES_PORT='abc' is not a port number" in result.stderr
    assert not data_dir.exists()


def test_an_empty_entry_in_env_file_stays_unset(tmp_path: Path) -> None:
    # As in .env.example, whose `POSTGRES_PASSWORD=` waits to be filled in: left empty, the
    # command goes on as if it were not there (here to the unreachable-broker error).
    (tmp_path / ".env").write_text("POSTGRES_PASSWORD=\nKAFKA_BOOTSTRAP_SERVERS=127.0.0.1:1\n")

    result = bridge_dagster(tmp_path, clean_env(), "submit", "--content", "hello")

    assert result.returncode == 1
    assert "POSTGRES_PASSWORD" not in result.stderr
    assert "cannot reach the Kafka broker at 127.0.0.1:1" in result.stderr


@pytest.mark.integration
def test_env_file_settings_take_effect_and_the_environment_wins(
    tmp_path: Path, kafka_bootstrap: str, topics: Topics
) -> None:
    # The file names the request topic (taken) and a broker that does not exist (overridden).
    (tmp_path / ".env").write_text(
        f"KAFKA_REQUEST_TOPIC={topics.requests}\nKAFKA_BOOTSTRAP_SERVERS=127.0.0.1:1\n"
    )
    env = clean_env(KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap)

    result = bridge_dagster(tmp_path, env, "submit", "--content", "from the env file")

    assert result.returncode == 0, result.stderr
    workflow_id = result.stdout.strip()
    [(key, payload)] = read_all(kafka_bootstrap, topics.requests)
    assert (key, payload["content"]) == (workflow_id, "from the env file")
