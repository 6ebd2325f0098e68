"""Canonical BLAKE3 hashing, ONEX stamps and stamp validation (no Dagster)."""

from bridge_dagster.stamping.batch import BatchItem, BatchItemResult, stamp_batch
from bridge_dagster.stamping.canonical import (
    LIGHTWEIGHT_MARKER,
    RICH_END,
    RICH_START,
    canonical_hash,
    raw_hash,
)
from bridge_dagster.stamping.errors import (
    LIMIT_ENV_VAR,
    ContentTooLarge,
    InvalidContent,
    InvalidStampField,
    StampingError,
    check_content_size,
)
from bridge_dagster.stamping.parsing import ParsedStamp, find_stamps
from bridge_dagster.stamping.stamps import (
    DEFAULT_MAX_CONTENT_BYTES,
    PROTOCOL_VERSION,
    STAMP_TYPES,
    StampResult,
    StampType,
    stamp_content,
)
from bridge_dagster.stamping.validation import (
    NO_STAMPS_MESSAGE,
    StampCheck,
    ValidationResult,
    validate_content,
)

__all__ = [
    "DEFAULT_MAX_CONTENT_BYTES",
    "LIGHTWEIGHT_MARKER",
    "LIMIT_ENV_VAR",
    "NO_STAMPS_MESSAGE",
    "PROTOCOL_VERSION",
    "RICH_END",
    "RICH_START",
    "STAMP_TYPES",
    "BatchItem",
    "BatchItemResult",
    "ContentTooLarge",
    "InvalidContent",
    "InvalidStampField",
    "ParsedStamp",
    "StampCheck",
    "StampResult",
    "StampType",
    "StampingError",
    "ValidationResult",
    "canonical_hash",
    "check_content_size",
    "find_stamps",
    "raw_hash",
    "stamp_batch",
    "stamp_content",
    "validate_content",
]
