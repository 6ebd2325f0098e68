"""The HTTP client the service-backed resources share: JSON envelopes, retries, clear errors."""

from __future__ import annotations

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
    """The service kept failing until the retries ran out, or took too long to answer."""


class EnvelopeClient:
    """POSTs JSON to a service that answers `{"data": ..., "message": ...}` and returns `data`.

    Connection errors and 5xx answers are retried with exponential backoff; a 4xx raises
    `ServiceRejected` at once and a read timeout `ServiceUnavailable` at once. Callers must only
    send requests that are safe to repeat.
    """

    def __init__(
        self, base_url: str, timeout_s: float, max_retries: int, api_key: str | None
    ) -> None:
        self.max_retries = max_retries
        self.timeout_s = timeout_s
        self._client = httpx.Client(
            base_url=base_url,
            timeout=timeout_s,
            headers={"X-API-Key": api_key} if api_key else {},
        )

    def post(self, path: str, body: dict[str, Any]) -> Any:
        """The `data` of the service's answer to POST `path` with `body` as JSON."""
        url = str(self._client.base_url).rstrip("/") + path
        failure: httpx.TransportError | None = None
        reason = ""
        for attempt in range(self.max_retries + 1):
            if attempt:
                time.sleep(BACKOFF_BASE_S * 2 ** (attempt - 1))
            try:
                response = self._client.post(path, json=body)
            # A read timeout means the service is up but busy. Retrying would multiply the
            # wait (the resources get the step timeout as `timeout_s`) while adding load to
            # the busy service, so it is final for every caller.
            except httpx.ReadTimeout as exc:
                raise ServiceUnavailable(
                    f"{url} did not answer within {self.timeout_s:g} s (not retried: the "
                    "service is up but busy)"
                ) from exc
            except httpx.TransportError as exc:
                failure, reason = exc, f"{type(exc).__name__}: {exc}"
                continue
            if response.status_code >= 500:
                failure = None
                reason = f"answered {response.status_code}: {_envelope_message(response)}"
                continue
            if response.status_code >= 400:
                raise ServiceRejected(url, response.status_code, _envelope_message(response))
            return response.json()["data"]
        raise ServiceUnavailable(
            f"{url} failed after {self.max_retries + 1} attempts ({reason})"
        ) from failure

    def close(self) -> None:
        self._client.close()


def _envelope_message(response: httpx.Response) -> str:
    try:
        return str(response.json().get("message", ""))
    except (ValueError, AttributeError):  # not JSON, or JSON without the envelope
        return response.text[:200]
