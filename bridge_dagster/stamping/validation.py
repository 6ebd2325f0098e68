"""Checking the stamps in content against the content's canonical hash."""

from __future__ import annotations

from dataclasses import dataclass

from bridge_dagster.stamping.canonical import canonical_hash
from bridge_dagster.stamping.parsing import ParsedStamp, find_stamps
from bridge_dagster.stamping.stamps import StampType

NO_STAMPS_MESSAGE = "no stamps found"


@dataclass(frozen=True)
class StampCheck:
    """One stamp's verdict; `reason` says why an invalid stamp is invalid."""

    stamp_type: StampType
    stamp_id: str | None
    stamp_hash: str | None
    is_valid: bool
    reason: str | None


@dataclass(frozen=True)
class ValidationResult:
    """Valid when the content carries stamps and every one matches its canonical hash."""

    is_valid: bool
    stamps_found: int
    current_hash: str
    expected_hash: str | None
    details: tuple[StampCheck, ...]
    message: str


def validate_content(content: str | bytes, *, expected_hash: str | None = None) -> ValidationResult:
    """Find every stamp in `content` and check it against the content's canonical hash.

    A stamp is valid when it is well formed, its hash equals the canonical hash and, when
    `expected_hash` is given, equals that too. Content without stamps is not valid.
    """
    current = canonical_hash(content)
    expected = expected_hash.lower() if expected_hash is not None else None
    text = content if isinstance(content, str) else content.decode("utf-8", "replace")
    details = tuple(_check(stamp, current, expected) for stamp in find_stamps(text))
    return ValidationResult(
        is_valid=bool(details) and all(check.is_valid for check in details),
        stamps_found=len(details),
        current_hash=current,
        expected_hash=expected,
        details=details,
        message=_summary(details),
    )


def _check(stamp: ParsedStamp, current: str, expected: str | None) -> StampCheck:
    reason = None
    if not stamp.well_formed:
        reason = "malformed stamp: " + "; ".join(stamp.problems)
    elif stamp.file_hash != current:
        reason = f"stamp hash {stamp.file_hash} does not match the content hash {current}"
    elif expected is not None and stamp.file_hash != expected:
        reason = f"stamp hash {stamp.file_hash} does not match the expected hash {expected}"
    return StampCheck(
        stamp_type=stamp.stamp_type,
        stamp_id=stamp.stamp_id,
        stamp_hash=stamp.file_hash,
        is_valid=reason is None,
        reason=reason,
    )


def _summary(details: tuple[StampCheck, ...]) -> str:
    if not details:
        return NO_STAMPS_MESSAGE
    invalid = [check for check in details if not check.is_valid]
    if not invalid:
        return f"{len(details)} of {len(details)} stamps valid"
    return f"{len(invalid)} of {len(details)} stamps invalid; first: {invalid[0].reason}"
