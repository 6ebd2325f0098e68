"""Properties of the canonical form and stamps over arbitrary text (hypothesis)."""

from __future__ import annotations

import itertools
import re
import sys
from unittest.mock import patch

import pytest
from blake3 import blake3
from hypothesis import assume, given
from hypothesis import strategies as st

from bridge_dagster.stamping import (
    RICH_END,
    RICH_START,
    InvalidContent,
    canonical,
    canonical_hash,
    find_stamps,
    stamp_content,
    validate_content,
)

WHITESPACE = [chr(c) for c in range(sys.maxunicode + 1) if chr(c).isspace()]

# Pieces that stress the canonical form: markers whole and broken, stamp fields, every
# Unicode whitespace character, newline runs and multi-byte text.
PIECES = st.sampled_from(
    [
        "# ONEX:uid=",
        "# ONEX:",
        "uid=",
        ",hash=",
        "ONEX",
        RICH_START,
        RICH_END,
        "<!-- ONEX_METADATA_",
        "START -->",
        "integrity:\n  hash: ",
        "\n",
        "\n\n\n",
        "\r\n",
        "a",
        "é",
        "日本",
        "X",
        "😀",
        *WHITESPACE,
    ]
)
TEXT = st.one_of(st.text(), st.lists(st.one_of(PIECES, st.text(max_size=5))).map("".join))


def spec_canonical_hash(text: str) -> str:
    """The canonical form exactly as written in the architecture, on str."""
    text = re.sub(r"# ONEX:uid=[^\n]*", "", text)
    text = re.sub(re.escape(RICH_START) + r".*?" + re.escape(RICH_END), "", text, flags=re.S)
    text = re.sub(r"\n{3,}", "\n\n", text)
    return blake3(text.strip().encode()).hexdigest()


def stamped(text: str, **options: str) -> str | None:
    try:
        return stamp_content(text, **options).stamped_content
    except InvalidContent:
        # Content holding stray marker fragments is refused, with a reason; see the tests
        # below for the content that is accepted.
        return None


@given(TEXT)
def test_the_canonical_hash_of_text_follows_the_written_definition(text: str) -> None:
    assert canonical_hash(text) == spec_canonical_hash(text)


@given(TEXT)
def test_hashing_utf8_bytes_gives_the_same_hash_as_hashing_the_text(text: str) -> None:
    assert canonical_hash(text.encode()) == canonical_hash(text)


@given(st.binary())
def test_any_bytes_have_a_canonical_hash(data: bytes) -> None:
    assert re.fullmatch(r"[0-9a-f]{64}", canonical_hash(data))


@given(TEXT)
def test_finding_stamps_in_any_text_never_raises(text: str) -> None:
    assert all(stamp.start < stamp.end for stamp in find_stamps(text))


@given(TEXT)
def test_validating_any_text_never_raises(text: str) -> None:
    result = validate_content(text)

    assert result.stamps_found == len(result.details)


@given(TEXT, st.sampled_from(["lightweight", "rich"]))
def test_stamped_content_validates(text: str, stamp_type: str) -> None:
    content = stamped(text, stamp_type=stamp_type)
    assume(content is not None)

    assert validate_content(content).is_valid


@given(TEXT, st.sampled_from(["lightweight", "rich"]))
def test_stamped_content_carries_exactly_one_stamp(text: str, stamp_type: str) -> None:
    content = stamped(text, stamp_type=stamp_type)
    assume(content is not None)

    assert len(find_stamps(content)) == 1


@given(TEXT, st.sampled_from(["lightweight", "rich"]))
def test_restamping_keeps_the_canonical_hash(text: str, stamp_type: str) -> None:
    once = stamped(text, stamp_type=stamp_type)
    assume(once is not None)

    twice = stamp_content(once, stamp_type=stamp_type).stamped_content

    assert canonical_hash(twice) == canonical_hash(once)


@given(TEXT)
def test_a_stamp_carries_the_canonical_hash_of_the_content_given(text: str) -> None:
    try:
        result = stamp_content(text)
    except InvalidContent:
        assume(False)

    assert result.file_hash == canonical_hash(text)


@given(st.text(), st.lists(st.sampled_from(WHITESPACE), min_size=60, max_size=300).map("".join))
def test_long_unicode_whitespace_tails_are_stripped_like_str_strip(text: str, tail: str) -> None:
    content = text + tail

    assert canonical_hash(content.encode()) == spec_canonical_hash(content)


# Newline runs of every length, the whitespace that surrounds them, and stamps right
# next to them; windows of a few bytes put window edges at every offset of a run.
RUN_PIECES = st.sampled_from(
    [
        *("\n" * count for count in range(1, 11)),
        "\r",
        "\r\n",
        " ",
        "\t",
        "\u2028",
        "a",
        "é",
        "# ONEX:uid=x,hash=y",
        RICH_START + "\nuid: x\n" + RICH_END,
    ]
)
RUN_TEXT = st.lists(RUN_PIECES, max_size=40).map("".join)


@given(RUN_TEXT, st.integers(min_value=1, max_value=12))
def test_newline_runs_collapse_alike_wherever_the_window_edges_fall(text: str, window: int) -> None:
    with patch.object(canonical, "_COLLAPSE_WINDOW_BYTES", window):
        assert canonical_hash(text.encode()) == spec_canonical_hash(text)
        assert canonical_hash(text) == spec_canonical_hash(text)


def test_newline_runs_collapse_alike_across_a_full_size_window_edge() -> None:
    window = canonical._COLLAPSE_WINDOW_BYTES
    for count in range(3, 11):
        for offset in range(-12, 13):
            text = "a" * (window + offset) + "\n" * count + "\r\n\n\n b"

            assert canonical_hash(text.encode()) == spec_canonical_hash(text), (count, offset)


# Words each followed by a newline run, several runs to a window: runs of three are
# joined over, runs of four or more cut the window into parts, and window edges fall
# at every offset of both.
WORD_RUNS = st.lists(
    st.tuples(st.text(alphabet="aé\r \t", min_size=1, max_size=6), st.integers(0, 9)),
    max_size=30,
).map(lambda parts: "".join(word + "\n" * count for word, count in parts))


@given(WORD_RUNS, st.integers(min_value=1, max_value=64))
def test_newline_runs_collapse_alike_between_long_runs_and_window_edges(
    text: str, window: int
) -> None:
    with patch.object(canonical, "_COLLAPSE_WINDOW_BYTES", window):
        assert canonical_hash(text.encode()) == spec_canonical_hash(text)


def test_every_pair_of_newline_runs_collapses_alike_at_every_window_edge() -> None:
    for first, second, window in itertools.product(range(1, 9), range(1, 9), range(1, 16)):
        text = "x" + "\n" * first + "y" + "\n" * second + "z"
        with patch.object(canonical, "_COLLAPSE_WINDOW_BYTES", window):
            assert canonical_hash(text.encode()) == spec_canonical_hash(text), (
                first,
                second,
                window,
            )


@pytest.mark.parametrize("marker", ["# ONEX:uid=x", RICH_START + "\nuid: x\n" + RICH_END])
def test_stamps_are_found_and_removed_in_content_full_of_the_anchor_byte(marker: str) -> None:
    # Thousands of "X"s exhaust the marker check's look-arounds, so it searches for the
    # markers directly.
    text = "MAX = X\n" * 20_000 + marker + "\nend\n"

    assert canonical.holds_stamp_marker(text.encode())
    assert canonical_hash(text.encode()) == spec_canonical_hash(text)
    assert not canonical.holds_stamp_marker(("MAX = X\n" * 20_000).encode())


@pytest.mark.parametrize("marker", ["# ONEX:uid=x,hash=y", RICH_START + "\nuid: x\n" + RICH_END])
def test_a_stamp_is_removed_wherever_a_window_edge_cuts_it(marker: str) -> None:
    # The marker scan runs per window: put every byte of the marker on a window edge.
    for offset in range(len(marker) + 2):
        text = "a" * offset + marker + "\nbody\n"
        for window in (1, 2, 7, len(marker)):
            with patch.object(canonical, "_COLLAPSE_WINDOW_BYTES", window):
                assert canonical_hash(text.encode()) == spec_canonical_hash(text), (offset, window)
                result = stamp_content(text)
                assert result.file_hash == spec_canonical_hash(text), (offset, window)
