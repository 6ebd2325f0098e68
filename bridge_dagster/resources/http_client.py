"""The HTTP client the service-backed resources share: JSON envelopes, retries, clear errors."""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx

BACKOFF_BASE_S = 0.2


class ServiceRejected(Exception):
    """The service answered 4xx: the request itself is wrong, so it is not retried."""

    def __init__(self, url: str, status: int, message: str) -> None:
        super().__init__(f"{url} answered {status}: {message}")
        self.status = status
        self.message = message


class ServiceUnavailable(Exception):
    """The service kept failing this request until its retries or its time ran out."""


class ServiceTimedOut(ServiceUnavailable):
    """The service took the call's whole timeout without finishing its answer."""


class ServiceUnreachable(ServiceUnavailable):
    """No attempt reached the service: it is down or not where its URL says, an outage of
    the service rather than a failure of the request."""


class EnvelopeClient:
    """POSTs JSON to a service that answers `{"data": ..., "message": ...}` and returns `data`.

    A call, retries included, ends within `timeout_s`: httpx's timeouts bound each read, so a
    service sending a byte at a time could otherwise hold a call for ever. Connection errors
    and 5xx answers are retried with exponential backoff while the call has time left; a 4xx
    raises `ServiceRejected` at once and a timeout `ServiceTimedOut` at once. Callers must
    only send requests that are safe to repeat.
    """

    def __init__(
        self, base_url: str, timeout_s: float, max_retries: int, api_key: str | None
    ) -> None:
        self.max_retries = max_retries
        self.timeout_s = timeout_s
        self._base_url = base_url
        self._headers = {"X-API-Key": api_key} if api_key else {}
        self._client = self._new_client()

    def post(self, path: str, body: dict[str, Any]) -> Any:
        """The `data` of the service's answer to POST `path` with `body` as JSON."""
        url = str(self._client.base_url).rstrip("/") + path
        deadline = time.monotonic() + self.timeout_s
        failure: httpx.TransportError | None = None
        reason, reached, attempts = "", False, 0
        for attempt in range(self.max_retries + 1):
            if attempt:
                pause = BACKOFF_BASE_S * 2 ** (attempt - 1)
                if time.monotonic() + pause >= deadline:
                    break
                time.sleep(pause)
            attempts += 1
            try:
                response = self._post_by(deadline, path, body)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                failure, reason = exc, f"{type(exc).__name__}: {exc}"
                continue
            # A timeout means the service is up but busy. Retrying would multiply the wait
            # while adding load to the busy service, so it is final for every caller.
            except (_DeadlinePassed, httpx.TimeoutException) as exc:
                raise ServiceTimedOut(
                    f"{url} did not answer within {self.timeout_s:g} s (not retried: the "
                    "service is up but busy)"
                ) from exc
            except httpx.TransportError as exc:
                failure, reason, reached = exc, f"{type(exc).__name__}: {exc}", True
                continue
            reached = True
            if response.status_code >= 500:
                failure = None
                reason = f"answered {response.status_code}: {_envelope_message(response)}"
                continue
            if response.status_code >= 400:
                raise ServiceRejected(url, response.status_code, _envelope_message(response))
            return response.json()["data"]
        unavailable = ServiceUnavailable if reached else ServiceUnreachable
        raise unavailable(f"{url} failed after {attempts} attempts ({reason})") from failure

    def close(self) -> None:
        self._client.close()

    def _new_client(self) -> httpx.Client:
        return httpx.Client(base_url=self._base_url, timeout=self.timeout_s, headers=self._headers)

    def _post_by(self, deadline: float, path: str, body: dict[str, Any]) -> httpx.Response:
        """POST in a worker thread and wait for it only until `deadline`.

        The worker reads the whole answer. If the deadline passes first, its client is
        closed and replaced, so the worker's connection is never reused; the worker itself
        ends at its next read, at most one read timeout later.
        """
        outcome: list[httpx.Response | Exception] = []
        client = self._client

        def call() -> None:
            try:
                outcome.append(
                    client.post(path, json=body, timeout=max(deadline - time.monotonic(), 0.001))
                )
            except Exception as exc:  # handed to the caller, which raises it
                outcome.append(exc)

        worker = threading.Thread(target=call, name="service-call", daemon=True)
        worker.start()
        worker.join(max(deadline - time.monotonic(), 0.0))
        if not outcome:
            self._client = self._new_client()
            client.close()
            raise _DeadlinePassed
        if isinstance(outcome[0], Exception):
            raise outcome[0]
        return outcome[0]


class _DeadlinePassed(Exception):
    """The call's time ran out while the service was still answering."""


def _envelope_message(response: httpx.Response) -> str:
    try:
        return str(response.json().get("message", ""))
    except (ValueError, AttributeError):  # not JSON, or JSON without the envelope
        return response.text[:200]
