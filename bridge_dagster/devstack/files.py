"""Files holding secrets, private to their owner from the first byte."""

from __future__ import annotations

import os
from pathlib import Path


def write_private(path: Path, text: str) -> None:
    """Write `text` to `path` with mode 0600, whatever the umask or the file's old mode.

    Opening with mode 0600 covers a new file; fchmod covers one that existed with a wider
    mode, before any of the new content is written.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        os.fchmod(fd, 0o600)
        file.write(text)
