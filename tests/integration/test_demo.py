"""`bridge-dagster demo` as a user runs it: the console script, its own stack, real ports.

Each test starts the demo from an empty project directory on free ports, so it starts its
own `bridge-dagster dev`; whatever a run leaves behind is SIGKILLed at teardown.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest

from bridge_dagster.devstack.processes import port_is_free
from tests.integration.test_dev_stack import (
    CLI,
    DevRun,
    Ports,
    _clean_env,
    _kill_leftovers,
    _new_data_dir,
    _stack_processes,
)

pytestmark = pytest.mark.integration

SMALL_LOAD = 20
# The demo's own --timeout; the test's deadlines sit above it, so a failure reports the output.
DEMO_TIMEOUT_S = 240
DEMO_DEADLINE_S = DEMO_TIMEOUT_S + 120


@dataclass
class DemoRun:
    """One `bridge-dagster demo` process, its output in a file."""

    process: subprocess.Popen[bytes]
    data_dir: Path
    ports: Ports
    output_path: Path
    started: float = field(default_factory=time.monotonic)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.ports.ui}"

    def output(self) -> str:
        return self.output_path.read_text(errors="replace")

    def wait_for(self, text: str, timeout_s: float = DEMO_DEADLINE_S) -> None:
        deadline = time.monotonic() + timeout_s
        while text not in self.output():
            assert self.process.poll() is None, f"demo exited before {text!r}:\n{self.output()}"
            if time.monotonic() > deadline:
                pytest.fail(f"no {text!r} within {timeout_s} s:\n{self.output()}")
            time.sleep(0.5)

    def finish(self, timeout_s: float = DEMO_DEADLINE_S) -> int:
        try:
            return self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            pytest.fail(f"demo still running after {timeout_s} s:\n{self.output()}")

    def ctrl_c(self) -> int:
        os.killpg(self.process.pid, signal.SIGINT)
        # The stack stops its daemon, webserver, code server and servers in turn: seconds
        # on a quiet machine, over 90 s on a loaded one.
        return self.finish(timeout_s=240)


def launch_demo(*args: str, ports: Ports | None = None, as_background_job: bool = False) -> DemoRun:
    """`bridge-dagster demo` from a fresh project directory, on free ports, in its own session.

    `as_background_job` starts it with SIGINT ignored, as a shell starts `… &`.
    """
    data_dir = _new_data_dir()
    ports = ports or Ports.free()
    output_path = data_dir.parent / "demo-output.txt"
    with output_path.open("wb") as out:
        process = subprocess.Popen(
            [str(CLI), "demo", "--timeout", str(DEMO_TIMEOUT_S), *ports.options(), *args],
            cwd=data_dir.parent,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=_clean_env(),
            start_new_session=True,
            preexec_fn=_ignore_sigint if as_background_job else None,
        )
    return DemoRun(process, data_dir, ports, output_path)


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def clean_up(run: DemoRun) -> None:
    _kill_leftovers(DevRun(run.process, run.data_dir, run.ports, run.output_path))
    shutil.rmtree(run.data_dir.parent, ignore_errors=True)


@pytest.fixture
def demo_runs() -> Iterator[list[DemoRun]]:
    runs: list[DemoRun] = []
    yield runs
    for run in runs:
        clean_up(run)


def _broker_processes(run: DemoRun) -> list[psutil.Process]:
    """The broker: the wheel's launcher script and the binary it runs, both on the port."""
    found = [
        proc
        for proc in _stack_processes(run.ports)
        if {"--only", "kafka", str(run.ports.kafka)} <= set(proc.info["cmdline"] or [])
    ]
    assert found, f"no broker process on port {run.ports.kafka}:\n{run.output()}"
    return found


def _left_running(run: DemoRun) -> list[psutil.Process]:
    return _stack_processes(run.ports, run.data_dir)


@pytest.mark.timeout(DEMO_DEADLINE_S + 120)
def test_a_small_demo_exits_0_with_its_summary_and_stops_its_stack(
    demo_runs: list[DemoRun],
) -> None:
    run = launch_demo("--requests", str(SMALL_LOAD))
    demo_runs.append(run)
    code = run.finish()
    output = run.output()
    assert code == 0, output
    # One in 50 is broken on purpose, at least two: one not JSON, one failing its workflow.
    flawed = 2
    completed = re.search(r"^\s+completed\s+(\d+)\s*$", output, re.MULTILINE)
    failed = re.search(r"^\s+failed\s+(\d+)\s+on purpose", output, re.MULTILINE)
    dead = re.search(r"^\s+dead-lettered\s+(\d+)\s+on purpose", output, re.MULTILINE)
    assert completed and failed and dead, output
    assert int(completed[1]) == SMALL_LOAD - flawed
    assert int(failed[1]) == 1
    assert int(dead[1]) == flawed
    for goal in ("workflows to complete or fail", "landing to catch up", "aggregated in the 5"):
        assert goal in output
    assert re.search(r"Latency\s+p50 [\d.]+ s, p95 [\d.]+ s", output), output
    assert re.search(r"Throughput\s+[\d.]+ workflows/s", output), output
    assert "omninode.bridge" in output  # a row of the per-namespace table
    assert re.search(rf"{run.url}/runs/[0-9a-f-]{{36}}", output), output
    assert f"{run.url}/locations/bridge_dagster/sensors/stamp_request_sensor" in output
    assert "Demo passed" in output
    assert "Stack: stopped" in output
    assert _left_running(run) == []
    assert all(port_is_free(p) for p in (run.ports.ui, run.ports.postgres, run.ports.kafka))


@pytest.mark.timeout(DEMO_DEADLINE_S + 300)
def test_a_kept_demo_started_as_a_background_job_stops_its_stack_on_ctrl_c(
    demo_runs: list[DemoRun],
) -> None:
    # With SIGINT ignored, Python raises no KeyboardInterrupt: the demo held the stack up
    # until it was killed, and its stack outlived it.
    run = launch_demo("--requests", "10", "--keep-running", as_background_job=True)
    demo_runs.append(run)
    run.wait_for("The UI stays up")
    assert run.ctrl_c() == 0, run.output()
    assert "Stack: stopped" in run.output()
    assert _left_running(run) == []


@pytest.mark.timeout(DEMO_DEADLINE_S + 120)
def test_killing_the_broker_midway_makes_the_demo_fail_naming_the_broker(
    demo_runs: list[DemoRun],
) -> None:
    run = launch_demo("--requests", str(SMALL_LOAD))
    demo_runs.append(run)
    run.wait_for("Waiting for")
    for proc in _broker_processes(run):
        proc.kill()

    code = run.finish()
    output = run.output()
    assert code == 1, output
    assert f"Demo failed: the Kafka broker at 127.0.0.1:{run.ports.kafka} has not answered" in (
        output
    )
    assert "KAFKA_BOOTSTRAP_SERVERS" in output
    assert "Traceback" not in output
    assert "Stack: stopped" in output
    assert _left_running(run) == []


@pytest.mark.timeout(120)
def test_a_stack_that_cannot_start_fails_the_demo_at_once_with_dev_s_reason(
    demo_runs: list[DemoRun],
) -> None:
    ports = Ports.free()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as blocker:
        blocker.bind(("127.0.0.1", ports.ui))
        blocker.listen()
        run = launch_demo("--requests", str(SMALL_LOAD), ports=ports)
        demo_runs.append(run)
        code = run.finish(timeout_s=60)
    output = run.output()
    assert code == 1, output
    assert "Demo failed: `bridge-dagster dev` exited with code 1 before the stack was up" in output
    assert f"port {run.ports.ui}" in output
    assert "--ui-port" in output
    assert "Traceback" not in output
    assert _left_running(run) == []
