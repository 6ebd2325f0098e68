"""What the exporter reads from the Dagster instance: daemon heartbeats, the request
sensor's cursor and the requests waiting in runs."""

from __future__ import annotations

import os
import tempfile
import threading
import time
from dataclasses import dataclass

import dagster as dg
from dagster._core.instance.ref import InstanceRef
from dagster._core.scheduler.instigation import InstigatorType

from bridge_dagster.sensors.stamp_requests import requests_in_flight

REQUEST_SENSOR = "stamp_request_sensor"
STAMP_JOB = "stamp_workflow"
# Daemons write a heartbeat every 30 s. Four missed beats is a daemon that is down or stuck,
# not one that is slow; Dagster's own UI waits 30 minutes, far too long for a probe.
HEARTBEAT_TOLERANCE_S = 120.0


class InstanceSource:
    """The Dagster instance, opened on first use and again after a failed open.

    With DAGSTER_HOME set, its dagster.yaml; otherwise Dagster's storage in the project's
    PostgreSQL, where the dev stack and the deployment keep it.
    """

    def __init__(self, postgres_url: str) -> None:
        self._postgres_url = postgres_url
        self._instance: dg.DagsterInstance | None = None
        self._scratch: tempfile.TemporaryDirectory[str] | None = None
        self._lock = threading.Lock()

    def get(self) -> dg.DagsterInstance:
        with self._lock:
            if self._instance is None:
                self._instance = self._open()
            return self._instance

    def _open(self) -> dg.DagsterInstance:
        if os.environ.get("DAGSTER_HOME"):
            return dg.DagsterInstance.get()
        # The instance needs a directory for local artifacts; the exporter writes none.
        self._scratch = self._scratch or tempfile.TemporaryDirectory(prefix="bridge-exporter-")
        overrides = {"storage": {"postgres": {"postgres_url": self._postgres_url}}}
        ref = InstanceRef.from_dir(self._scratch.name, overrides=overrides)
        return dg.DagsterInstance.from_ref(ref)

    def close(self) -> None:
        with self._lock:
            if self._instance is not None:
                self._instance.dispose()
                self._instance = None
            if self._scratch is not None:
                self._scratch.cleanup()
                self._scratch = None


@dataclass(frozen=True)
class DaemonHealth:
    # Seconds since each required daemon's last heartbeat; None: it never sent one.
    heartbeat_age_s: dict[str, float | None]

    @property
    def late(self) -> list[str]:
        return [
            daemon
            for daemon, age in sorted(self.heartbeat_age_s.items())
            if age is None or age > HEARTBEAT_TOLERANCE_S
        ]


def daemon_health(instance: dg.DagsterInstance) -> DaemonHealth:
    """Whether every daemon this instance needs has sent a heartbeat lately."""
    now = time.time()
    beats = instance.get_daemon_heartbeats()
    ages = {
        daemon: round(now - beats[daemon].timestamp, 1) if daemon in beats else None
        for daemon in instance.get_required_daemon_types()
    }
    return DaemonHealth(heartbeat_age_s=ages)


def request_sensor_cursor(instance: dg.DagsterInstance) -> str | None:
    """The stored cursor of the request sensor; None before its first tick."""
    for state in instance.all_instigator_state(instigator_type=InstigatorType.SENSOR):
        if state.instigator_name == REQUEST_SENSOR and state.sensor_instigator_data is not None:
            return state.sensor_instigator_data.cursor
    return None


def requests_waiting_in_runs(instance: dg.DagsterInstance) -> int:
    """Requests held by queued or running stamp_workflow runs: what MAX_WORKFLOW_QUEUE_SIZE
    bounds."""
    return requests_in_flight(instance, STAMP_JOB)[0]
