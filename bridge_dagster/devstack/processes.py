"""Child processes that die with their parent, and port checks that explain themselves."""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

_PR_SET_PDEATHSIG = 1


class StackError(RuntimeError):
    """The dev stack cannot start; the message says why and what to do."""


def _prepare_child() -> None:
    # A new session keeps the terminal's Ctrl-C away from the child, so the stack stops its
    # parts in order; PDEATHSIG still ends the child if the parent is killed outright.
    os.setsid()
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    # Ignored signals survive exec, and a shell ignores SIGINT in `bridge-dagster dev &`;
    # `stop` relies on these two, so a child that inherited them ignored would only end at
    # the SIGKILL deadline (Dagster even maps SIGTERM to its SIGINT disposition).
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def wait_for_stop_signal(still_up: Callable[[], bool]) -> bool:
    """Wait for SIGINT or SIGTERM while `still_up()`; True if a signal ended the wait.

    Handlers, not KeyboardInterrupt: a shell starts a background job (`… &`, nohup) with
    SIGINT ignored, and Python then raises none; SIGTERM (kill, a container's stop) has to
    stop the stack in order too, not end this process and leave its parts running.
    """
    stopping = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopping.set())
    while not stopping.wait(0.5):
        if not still_up():
            return False
    return True


def spawn(
    args: Sequence[str],
    *,
    log_path: Path,
    env: dict[str, str] | None = None,
    user: str | None = None,
    cwd: Path | None = None,
) -> subprocess.Popen[bytes]:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        return subprocess.Popen(
            list(args),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            user=user,
            cwd=cwd,
            preexec_fn=_prepare_child,
        )


def stop(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM, grace_s: float = 20) -> None:
    """Signal the child's whole process group, then kill whatever outlives the grace period.

    The group is signalled even when its leader has already exited: a process the leader
    started (a code server, a run worker) is still a member, and Linux does not reuse a
    process-group id while any member lives.
    """
    pgid = process.pid
    if not _group_alive(pgid):
        process.poll()
        return
    os.killpg(pgid, sig)
    deadline = time.monotonic() + grace_s
    while _group_alive(pgid) and time.monotonic() < deadline:
        process.poll()
        time.sleep(0.1)
    if _group_alive(pgid):
        os.killpg(pgid, signal.SIGKILL)
    process.wait()


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def require_free_port(port: int, what: str, option: str) -> None:
    if not port_is_free(port):
        raise StackError(
            f"port {port} for {what} is already in use by another program; stop that program"
            f" or pick another port with {option}"
        )


def wait_until(
    ready: Callable[[], bool],
    *,
    what: str,
    process: subprocess.Popen[bytes],
    log_path: Path,
    timeout_s: float = 60,
) -> None:
    """Poll `ready` until it holds; fail with the tail of the log if the child dies first."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise StackError(f"{what} exited with code {process.returncode}:\n{tail(log_path)}")
        if ready():
            return
        time.sleep(0.1)
    stop(process)
    raise StackError(f"{what} was not ready after {timeout_s:.0f} s:\n{tail(log_path)}")


def tail(path: Path, lines: int = 20) -> str:
    if not path.exists():
        return "(no log)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def port_accepts(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False
