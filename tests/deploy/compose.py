"""Run Debian's `docker-compose config` on the repository's compose file, as a user would."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yml"
DOCKER_COMPOSE = shutil.which("docker-compose")

needs_docker_compose = pytest.mark.skipif(
    DOCKER_COMPOSE is None,
    reason="docker-compose is not installed; `apt-get install -y docker-compose` (.ci/run does)",
)


def compose_config(workdir: Path, env_file: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`docker-compose config` in a fresh copy of the project, with `env_file` as its .env.

    Only .env speaks: variables of this process that compose would read are left out.
    """
    shutil.copy(COMPOSE_FILE, workdir / "docker-compose.yml")
    (workdir / ".env").write_text(env_file)
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", str(workdir))}
    return subprocess.run(
        [str(DOCKER_COMPOSE), *args, "config"],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def rendered(workdir: Path, env_file: str, *args: str) -> dict:
    result = compose_config(workdir, env_file, *args)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)
