"""The one place a PostgreSQL connection URL is built."""

from __future__ import annotations

from sqlalchemy import URL


def postgres_url(
    *,
    host: str,
    port: int,
    database: str,
    user: str,
    password: str | None,
    ssl_mode: str | None = None,
) -> str:
    """A `postgresql+psycopg2://` URL that SQLAlchemy parses back to exactly these values.

    URL.create escapes whatever SQLAlchemy would read as syntax; quote_plus does not suit,
    because the '+' it writes for a space comes back as a '+'. A host starting with '/' is a
    Unix-socket directory, which libpq takes from the query, the port naming the socket file.
    """
    query = {} if ssl_mode is None else {"sslmode": ssl_mode}
    socket_dir = host.startswith("/")
    if socket_dir:
        query |= {"host": host, "port": str(port)}
    url = URL.create(
        "postgresql+psycopg2",
        username=user,
        password=password,
        host=None if socket_dir else host,
        port=None if socket_dir else port,
        database=database,
        query=query,
    )
    return url.render_as_string(hide_password=False)
