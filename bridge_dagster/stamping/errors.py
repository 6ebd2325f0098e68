"""Errors raised for content or stamp requests the stamping engine cannot accept."""

from __future__ import annotations

LIMIT_ENV_VAR = "BRIDGE_MAX_CONTENT_BYTES"


class StampingError(ValueError):
    """Content or a stamp request that cannot be stamped; the message says how to fix it."""


class ContentTooLarge(StampingError):
    def __init__(self, size: int, limit: int) -> None:
        super().__init__(
            f"content is {size:,} bytes, over the {limit:,}-byte limit; "
            f"send less or raise {LIMIT_ENV_VAR}"
        )
        self.size = size
        self.limit = limit


class InvalidContent(StampingError):
    """Content that has no canonical form or cannot carry a stamp."""


class InvalidStampField(StampingError):
    """A value that cannot be written into a stamp (author, version, file path, time…)."""


def check_content_size(size: int, limit: int) -> None:
    """Raise ContentTooLarge when `size` bytes exceed `limit`."""
    if size > limit:
        raise ContentTooLarge(size, limit)
