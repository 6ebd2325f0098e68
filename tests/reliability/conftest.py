"""One real stack for the whole reliability suite, and the summary its scenarios fill."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.reliability.scenario import Summary
from tests.reliability.stack import ReliabilityStack


@pytest.fixture(scope="session")
def stack() -> Iterator[ReliabilityStack]:
    stack = ReliabilityStack()
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="session")
def summary() -> Summary:
    return Summary()
