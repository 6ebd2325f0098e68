"""Stamping as a user meets it: stamp, validate, re-stamp, tamper, limits, batches."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
from blake3 import blake3

from bridge_dagster.stamping import (
    NO_STAMPS_MESSAGE,
    BatchItem,
    ContentTooLarge,
    InvalidContent,
    InvalidStampField,
    canonical_hash,
    find_stamps,
    raw_hash,
    stamp_batch,
    stamp_content,
    validate_content,
)

SOURCE = "def main():\n    return 42\n"
NOW = datetime(2025, 1, 31, 12, 0, tzinfo=UTC)
STAMP_ID = uuid.UUID("0b6f7d2e-1c4a-4c59-9e0e-6c1d3f1f2a10")


def test_a_lightweight_stamp_validates_against_its_content() -> None:
    stamped = stamp_content(SOURCE).stamped_content

    result = validate_content(stamped)

    assert result.is_valid
    assert result.stamps_found == 1
    assert result.details[0].stamp_type == "lightweight"


def test_a_rich_stamp_validates_against_its_content() -> None:
    stamped = stamp_content(SOURCE, stamp_type="rich", file_path="app.py").stamped_content

    result = validate_content(stamped)

    assert result.is_valid
    assert [check.stamp_type for check in result.details] == ["rich"]


def test_a_lightweight_stamp_is_one_line_prepended() -> None:
    result = stamp_content(SOURCE, now=NOW, stamp_id=STAMP_ID, author="ana", version="2")

    assert result.stamped_content == result.stamp + "\n" + SOURCE
    assert result.stamp == (
        f"# ONEX:uid={STAMP_ID},hash={canonical_hash(SOURCE)},"
        "ts=2025-01-31T12:00:00.000000Z,author=ana,v=2"
    )


def test_a_rich_stamp_is_a_block_appended_after_a_blank_line() -> None:
    result = stamp_content(SOURCE, stamp_type="rich", file_path="app.py")

    body, _, block = result.stamped_content.partition("\n\n<!-- ONEX_METADATA_START -->")
    assert body + "\n" == SOURCE
    assert block.endswith("<!-- ONEX_METADATA_END -->\n")


def test_a_rich_stamp_carries_the_request_details() -> None:
    result = stamp_content(
        SOURCE,
        stamp_type="rich",
        file_path="src/app.py",
        content_type="text/x-python",
        now=NOW,
        stamp_id=STAMP_ID,
    )

    (parsed,) = find_stamps(result.stamped_content)
    assert parsed.fields == {
        "uid": str(STAMP_ID),
        "hash": canonical_hash(SOURCE),
        "timestamp": "2025-01-31T12:00:00.000000Z",
        "protocol_version": "1.0",
        "file_path": "src/app.py",
        "file_size": str(len(SOURCE.encode())),
        "content_type": "text/x-python",
        "integrity": "",
        "integrity.algorithm": "BLAKE3",
        "integrity.hash": canonical_hash(SOURCE),
    }


def test_the_stamp_hash_is_the_canonical_hash_of_the_content() -> None:
    assert stamp_content(SOURCE).file_hash == canonical_hash(SOURCE)


def test_the_canonical_hash_ignores_surrounding_whitespace_and_extra_blank_lines() -> None:
    assert canonical_hash("\n  a\n\n\n\nb \n\n") == blake3(b"a\n\nb").hexdigest()


def test_the_canonical_hash_ignores_stamps() -> None:
    stamped = stamp_content(SOURCE, stamp_type="rich").stamped_content

    assert canonical_hash(stamped) == canonical_hash(SOURCE)


def test_restamping_replaces_the_old_stamp() -> None:
    first = stamp_content(SOURCE)
    second = stamp_content(first.stamped_content)

    (only,) = find_stamps(second.stamped_content)
    assert only.stamp_id == str(second.stamp_id)


def test_restamping_keeps_the_hash() -> None:
    first = stamp_content(SOURCE)

    assert stamp_content(first.stamped_content).file_hash == first.file_hash


def test_restamping_leaves_the_body_unchanged() -> None:
    first = stamp_content(SOURCE, stamp_type="rich")
    second = stamp_content(first.stamped_content, stamp_type="rich")

    assert second.stamped_content.replace(second.stamp, first.stamp) == first.stamped_content


def test_restamping_rich_content_with_a_lightweight_stamp_swaps_the_kind() -> None:
    rich = stamp_content(SOURCE, stamp_type="rich").stamped_content

    stamped = stamp_content(rich).stamped_content

    assert [stamp.stamp_type for stamp in find_stamps(stamped)] == ["lightweight"]


def test_the_same_stamp_id_and_time_give_the_same_stamp() -> None:
    first = stamp_content(SOURCE, now=NOW, stamp_id=STAMP_ID)
    second = stamp_content(SOURCE, now=NOW, stamp_id=STAMP_ID)

    assert first.stamped_content == second.stamped_content


def test_the_stamp_time_is_recorded_in_utc() -> None:
    local = NOW.astimezone(timezone(timedelta(hours=2)))

    result = stamp_content(SOURCE, now=local)

    assert result.created_at == NOW
    assert result.created_at.utcoffset() == timedelta(0)


def test_a_time_without_a_zone_is_refused() -> None:
    with pytest.raises(InvalidStampField, match="time zone"):
        stamp_content(SOURCE, now=datetime(2025, 1, 1))


def test_tampered_content_fails_validation() -> None:
    stamped = stamp_content(SOURCE).stamped_content

    result = validate_content(stamped.replace("42", "43"))

    assert not result.is_valid
    assert "does not match the content hash" in result.details[0].reason


def test_a_tampered_stamp_hash_fails_validation() -> None:
    stamped = stamp_content(SOURCE).stamped_content
    other = canonical_hash("something else")

    result = validate_content(stamped.replace(canonical_hash(SOURCE), other))

    assert not result.is_valid
    assert result.details[0].stamp_hash == other


def test_a_stamp_that_does_not_match_the_expected_hash_fails() -> None:
    stamped = stamp_content(SOURCE).stamped_content

    result = validate_content(stamped, expected_hash=canonical_hash("another file"))

    assert not result.is_valid
    assert "expected hash" in result.details[0].reason


def test_a_stamp_that_matches_the_expected_hash_passes() -> None:
    stamped = stamp_content(SOURCE).stamped_content

    assert validate_content(stamped, expected_hash=canonical_hash(SOURCE).upper()).is_valid


def test_content_without_stamps_is_a_clean_no_stamps_answer() -> None:
    result = validate_content(SOURCE)

    assert (result.is_valid, result.stamps_found, result.message) == (False, 0, NO_STAMPS_MESSAGE)
    assert result.current_hash == canonical_hash(SOURCE)


def test_a_malformed_stamp_is_reported_not_raised() -> None:
    result = validate_content("# ONEX:uid=nope,hash=zz\nbody")

    assert result.stamps_found == 1
    assert not result.is_valid
    assert "malformed" in result.details[0].reason


def test_a_rich_block_with_a_mismatched_integrity_hash_is_malformed() -> None:
    stamped = stamp_content(SOURCE, stamp_type="rich").stamped_content
    bad = stamped.replace(f"  hash: {canonical_hash(SOURCE)}", "  hash: " + "0" * 64)

    (parsed,) = find_stamps(bad)

    assert "integrity hash differs from hash" in parsed.problems


def test_an_unterminated_rich_block_is_not_a_stamp() -> None:
    assert find_stamps("text\n<!-- ONEX_METADATA_START -->\nuid: x\n") == []


def test_oversize_content_is_refused_with_the_limit_and_the_fix() -> None:
    with pytest.raises(ContentTooLarge, match=r"11 bytes, over the 10-byte limit.*BRIDGE_MAX"):
        stamp_content("x" * 11, max_bytes=10)


def test_content_at_the_limit_is_stamped() -> None:
    assert stamp_content("x" * 10, max_bytes=10).file_size == 10


def test_bytes_that_are_not_utf8_are_stamped_without_splicing() -> None:
    data = b"\x89PNG\r\n\x1a\n\xff\x00"

    result = stamp_content(data)

    assert result.stamped_content is None
    assert result.file_hash == canonical_hash(data)
    assert result.stamp.startswith("# ONEX:uid=")


def test_utf8_bytes_are_stamped_as_text() -> None:
    result = stamp_content(SOURCE.encode())

    assert result.stamped_content == result.stamp + "\n" + SOURCE


def test_text_with_a_lone_surrogate_is_refused() -> None:
    with pytest.raises(InvalidContent, match="lone surrogates"):
        stamp_content("broken \ud800 text")


def test_a_field_with_a_line_break_is_refused() -> None:
    with pytest.raises(InvalidStampField, match="file_path"):
        stamp_content(SOURCE, stamp_type="rich", file_path="a\nb.py")


def test_an_author_with_a_comma_is_refused_in_a_lightweight_stamp() -> None:
    with pytest.raises(InvalidStampField, match="comma"):
        stamp_content(SOURCE, author="Doe, Jane")


def test_a_rich_stamp_after_an_unterminated_start_marker_is_refused() -> None:
    with pytest.raises(InvalidContent, match="unterminated"):
        stamp_content("a <!-- ONEX_METADATA_START --> b", stamp_type="rich")


def test_raw_hash_is_blake3_of_the_bytes_as_given() -> None:
    data = b"  padded\n\n\n"

    assert raw_hash(data) == blake3(data).hexdigest() != canonical_hash(data)


def test_a_batch_with_a_bad_item_stamps_the_others() -> None:
    items = [
        BatchItem(id="ok", content=SOURCE),
        BatchItem(id="big", content="x" * 100),
        BatchItem(id="rich", content=SOURCE, stamp_type="rich"),
    ]

    results = stamp_batch(items, max_bytes=50)

    assert [(r.id, r.success) for r in results] == [("ok", True), ("big", False), ("rich", True)]
    assert "over the 50-byte limit" in results[1].error
    assert validate_content(results[2].result.stamped_content).is_valid
