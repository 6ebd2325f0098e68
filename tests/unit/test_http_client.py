"""EnvelopeClient against a tiny real HTTP server that answers from a script."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from bridge_dagster.resources.http_client import (
    EnvelopeClient,
    ServiceRejected,
    ServiceTimedOut,
    ServiceUnavailable,
    ServiceUnreachable,
)

Answer = tuple[int, dict[str, Any]]
OK: Answer = (200, {"data": {"answer": 42}, "message": "ok"})


@dataclass
class Request:
    path: str
    api_key: str | None


@dataclass
class Server:
    url: str
    requests: list[Request]


@contextmanager
def serve(*answers: Answer, delay_s: float = 0.0) -> Iterator[Server]:
    """A server on a free port that gives `answers` in order, repeating the last one."""
    remaining = list(answers)
    requests: list[Request] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            requests.append(Request(self.path, self.headers.get("X-API-Key")))
            status, body = remaining.pop(0) if len(remaining) > 1 else remaining[0]
            time.sleep(delay_s)
            payload = json.dumps(body).encode()
            # The client may have given up waiting; a closed socket is not this test's concern.
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):
                pass

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: the tests assert on the requests, not the log."""

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
    )
    thread.start()
    try:
        yield Server(f"http://127.0.0.1:{httpd.server_port}", requests)
    finally:
        httpd.shutdown()
        httpd.server_close()


@contextmanager
def client(
    url: str, *, max_retries: int = 2, timeout_s: float = 2.0, api_key: str | None = None
) -> Iterator[EnvelopeClient]:
    envelope_client = EnvelopeClient(url, timeout_s, max_retries, api_key)
    try:
        yield envelope_client
    finally:
        envelope_client.close()


def test_a_2xx_answer_returns_the_envelope_data() -> None:
    with serve(OK) as server, client(server.url) as http:
        assert http.post("/work", {"x": 1}) == {"answer": 42}

    assert [request.path for request in server.requests] == ["/work"]


def test_a_4xx_answer_is_raised_at_once_with_its_status_and_message() -> None:
    with (
        serve((413, {"message": "over the 10-byte limit"})) as server,
        client(server.url, max_retries=3) as http,
        pytest.raises(ServiceRejected) as rejected,
    ):
        http.post("/work", {})

    assert (rejected.value.status, rejected.value.message) == (413, "over the 10-byte limit")
    assert len(server.requests) == 1


def test_a_5xx_answer_is_retried_until_the_service_answers() -> None:
    warming_up: Answer = (503, {"message": "warming up"})
    with serve(warming_up, warming_up, OK) as server, client(server.url, max_retries=2) as http:
        assert http.post("/work", {}) == {"answer": 42}

    assert len(server.requests) == 3


def test_when_retries_run_out_the_error_names_the_url_the_attempts_and_the_last_answer() -> None:
    with (
        serve((500, {"message": "database down"})) as server,
        client(server.url, max_retries=2) as http,
        pytest.raises(ServiceUnavailable) as unavailable,
    ):
        http.post("/work", {})

    assert str(unavailable.value) == (
        f"{server.url}/work failed after 3 attempts (answered 500: database down)"
    )
    assert len(server.requests) == 3


def test_a_refused_connection_is_retried_then_reported() -> None:
    # A bound socket that does not listen refuses connections for as long as it is held.
    with socket.socket() as closed_port:
        closed_port.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{closed_port.getsockname()[1]}"
        with client(url, max_retries=1) as http, pytest.raises(ServiceUnavailable) as unavailable:
            http.post("/work", {})

    assert f"{url}/work failed after 2 attempts (ConnectError" in str(unavailable.value)


def test_a_read_timeout_is_final_without_a_retry() -> None:
    with (
        serve(OK, delay_s=0.5) as server,
        client(server.url, max_retries=2, timeout_s=0.1) as http,
        pytest.raises(ServiceUnavailable, match=r"did not answer within 0\.1 s"),
    ):
        http.post("/work", {})

    assert len(server.requests) == 1


def test_the_api_key_travels_in_the_x_api_key_header() -> None:
    with serve(OK) as server, client(server.url, api_key="secret") as http:
        http.post("/work", {})

    assert server.requests[0].api_key == "secret"


@contextmanager
def trickling(seconds: float) -> Iterator[str]:
    """A server that sends its headers at once, then a 2xx envelope a byte at a time over
    `seconds`: every read gets a byte long before a per-read timeout would fire."""
    payload = json.dumps(OK[1]).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            try:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                for byte in payload:
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                    time.sleep(seconds / len(payload))
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up, as it should

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: the tests assert on the client's behaviour."""

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
    )
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_port}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_a_service_that_trickles_its_answer_cannot_hold_a_call_past_its_timeout() -> None:
    with trickling(seconds=3.0) as url, client(url, timeout_s=0.5) as http:
        started = time.monotonic()
        with pytest.raises(ServiceTimedOut, match=r"did not answer within 0\.5 s"):
            http.post("/work", {})
        elapsed = time.monotonic() - started

    assert 0.5 <= elapsed < 1.0


def test_a_call_given_up_on_leaves_no_thread_reading_the_trickle() -> None:
    with trickling(seconds=3.0) as url, client(url, timeout_s=0.5) as http:
        with pytest.raises(ServiceTimedOut):
            http.post("/work", {})
        # Its connection was closed with the client it came from, so the worker's next read
        # fails; the trickle itself goes on for 2.5 s more.
        time.sleep(0.5)
        readers = [t for t in threading.enumerate() if t.name == "service-call"]

    assert readers == []


def test_retries_stop_when_the_call_has_used_its_timeout() -> None:
    slow_failure: Answer = (503, {"message": "overloaded"})
    with (
        serve(slow_failure, delay_s=0.3) as server,
        client(server.url, max_retries=5, timeout_s=1.0) as http,
    ):
        started = time.monotonic()
        with pytest.raises(ServiceUnavailable, match="overloaded"):
            http.post("/work", {})
        elapsed = time.monotonic() - started

    assert elapsed < 1.2
    assert 2 <= len(server.requests) <= 3


def test_a_service_nobody_listens_on_is_unreachable_not_failing() -> None:
    with socket.socket() as closed_port:
        closed_port.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{closed_port.getsockname()[1]}"
        with client(url, max_retries=1) as http, pytest.raises(ServiceUnreachable):
            http.post("/work", {})


def test_a_service_that_answers_with_errors_is_not_called_unreachable() -> None:
    with (
        serve((500, {"message": "database down"})) as server,
        client(server.url, max_retries=1) as http,
        pytest.raises(ServiceUnavailable) as unavailable,
    ):
        http.post("/work", {})

    assert not isinstance(unavailable.value, ServiceUnreachable)
