"""A dead-letter record fits the broker whatever its original, and keys tell messages apart."""

import os

import blake3
import pytest

from bridge_dagster.events.topics import (
    MAX_DEAD_LETTER_BYTES,
    MAX_DEAD_LETTER_ORIGINAL,
    PRODUCER_MESSAGE_MAX_BYTES,
    dead_letter_key,
    dead_letter_value,
    parse_dead_letter,
)

# The worst cases for the record's size: escaping makes a control character six bytes and a
# quote two, base64 makes three bytes four; and a reason that quotes a huge field.
ORIGINALS = {
    "control characters": b"\x01" * 500_000,
    "quotes": b'"' * 420_000,
    "random bytes": os.urandom(1_000_000),
    "two-byte characters": "é".encode() * 300_000,
}


@pytest.mark.parametrize("original", ORIGINALS.values(), ids=ORIGINALS.keys())
def test_a_record_stays_under_its_bound_and_keeps_a_prefix_with_the_size_and_hash(
    original: bytes,
) -> None:
    value = dead_letter_value(original, "x" * 1_000_000, topic="t", partition=0, offset=1)

    assert len(value) <= MAX_DEAD_LETTER_BYTES < PRODUCER_MESSAGE_MAX_BYTES
    letter = parse_dead_letter(value)
    assert letter["original"] == original[:MAX_DEAD_LETTER_ORIGINAL]
    assert f"of {len(original)} bytes" in letter["reason"]
    assert blake3.blake3(original).hexdigest() in letter["reason"]


def test_a_small_record_keeps_its_whole_original_and_its_text() -> None:
    letter = parse_dead_letter(
        dead_letter_value(b"not json", "bad_json: no", topic="t", partition=0, offset=1)
    )

    assert (letter["original"], letter["original_text"]) == (b"not json", "not json")
    assert letter["reason"] == "bad_json: no"


def test_keys_differ_by_write_time_and_content_but_not_by_a_re_read() -> None:
    key = dead_letter_key("t/0/5", 1_000, b"bad")

    assert key == dead_letter_key("t/0/5", 1_000, b"bad")
    assert key != dead_letter_key("t/0/5", 2_000, b"bad")
    assert key != dead_letter_key("t/0/5", 1_000, b"worse")
