"""Stamping many items at once; a bad item gets an error, the rest are still stamped."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from bridge_dagster.stamping.errors import StampingError
from bridge_dagster.stamping.stamps import (
    DEFAULT_MAX_CONTENT_BYTES,
    StampResult,
    StampType,
    stamp_content,
)


@dataclass(frozen=True)
class BatchItem:
    id: str
    content: str | bytes
    stamp_type: StampType = "lightweight"
    file_path: str | None = None
    content_type: str = "text/plain"


@dataclass(frozen=True)
class BatchItemResult:
    """Either `result` (success) or `error` (why this item could not be stamped)."""

    id: str
    result: StampResult | None
    error: str | None

    @property
    def success(self) -> bool:
        return self.error is None


def stamp_batch(
    items: Iterable[BatchItem], *, max_bytes: int = DEFAULT_MAX_CONTENT_BYTES
) -> list[BatchItemResult]:
    """Stamp each item on its own; `max_bytes` limits each item's content."""
    return [_stamp_item(item, max_bytes) for item in items]


def _stamp_item(item: BatchItem, max_bytes: int) -> BatchItemResult:
    try:
        result = stamp_content(
            item.content,
            stamp_type=item.stamp_type,
            file_path=item.file_path,
            content_type=item.content_type,
            max_bytes=max_bytes,
        )
    except StampingError as exc:
        return BatchItemResult(id=item.id, result=None, error=str(exc))
    return BatchItemResult(id=item.id, result=result, error=None)
