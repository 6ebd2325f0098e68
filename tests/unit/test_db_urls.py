"""The PostgreSQL URL: credentials survive SQLAlchemy's parsing exactly as given."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import make_url
from sqlalchemy.dialects.postgresql.psycopg2 import dialect

from bridge_dagster.db.urls import postgres_url


def url_for(
    password: str | None = "secret",
    *,
    user: str = "bridge",
    host: str = "db.internal",
    port: int = 6543,
    ssl_mode: str | None = None,
) -> str:
    return postgres_url(
        host=host,
        port=port,
        database="omninode_bridge",
        user=user,
        password=password,
        ssl_mode=ssl_mode,
    )


def connect_args(url: str) -> dict[str, object]:
    """What psycopg2.connect would receive for this URL."""
    return dialect().create_connect_args(make_url(url))[1]


@pytest.mark.parametrize(
    "password", ["a b+c", "p+q", "user@host", "a/b", "100%", "x:y", "%2B", " lead&trail= "]
)
def test_a_password_with_url_syntax_in_it_round_trips(password: str) -> None:
    assert make_url(url_for(password)).password == password


@given(st.text(min_size=1))
def test_any_password_and_user_round_trip(text: str) -> None:
    parsed = make_url(url_for(text, user=text))
    assert (parsed.username, parsed.password) == (text, text)


def test_a_tcp_host_reaches_the_driver_with_its_port_and_sslmode() -> None:
    args = connect_args(url_for(ssl_mode="require"))
    assert (args["host"], args["port"], args["sslmode"]) == ("db.internal", 6543, "require")
    assert (args["dbname"], args["user"], args["password"]) == (
        "omninode_bridge",
        "bridge",
        "secret",
    )


def test_a_socket_directory_reaches_the_driver_as_the_host() -> None:
    args = connect_args(url_for(host="/var/run/postgresql", port=5433))
    assert (args["host"], str(args["port"])) == ("/var/run/postgresql", "5433")
    assert args["dbname"] == "omninode_bridge"


def test_no_ssl_mode_leaves_the_driver_default() -> None:
    assert "sslmode" not in connect_args(url_for())


def test_no_password_gives_a_url_without_one() -> None:
    assert make_url(url_for(None)).password is None
