"""API-key checks shared by the HTTP services and the exporter."""

from __future__ import annotations

import secrets
from collections.abc import Sequence


def key_accepted(given: str, accepted: Sequence[str]) -> bool:
    """Whether `given` is one of the `accepted` keys (the current one and those from before a
    rotation). Every key is compared, each in constant time, so the answer's timing tells
    neither which key came close nor how much of it matched."""
    matches = [secrets.compare_digest(given.encode(), key.encode()) for key in accepted]
    return any(matches)
