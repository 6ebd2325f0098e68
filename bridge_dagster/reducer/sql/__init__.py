"""The reducer's SQL, one statement per file, beside the code that runs it."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from sqlalchemy import TextClause, text

SQL_DIR = Path(__file__).parent


@cache
def query(name: str) -> TextClause:
    """The statement in `<name>.sql`, ready for `conn.execute(query(name), params)`."""
    return text((SQL_DIR / f"{name}.sql").read_text())
