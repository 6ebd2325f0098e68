"""Which pg_dump / pg_restore a backup uses for a server of a given version."""

from pathlib import Path

from bridge_dagster.db.dumps import Client, pick_client

EMBEDDED = Client(Path("/wheel/bin/pg_dump"), 18)
ON_PATH = Client(Path("/usr/bin/pg_dump"), 15)


def test_the_client_of_the_servers_own_version_is_chosen() -> None:
    assert pick_client([EMBEDDED, ON_PATH], server_major=15) == ON_PATH
    assert pick_client([EMBEDDED, ON_PATH], server_major=18) == EMBEDDED


def test_without_one_the_newest_newer_client_is_chosen() -> None:
    assert pick_client([ON_PATH, EMBEDDED], server_major=16) == EMBEDDED


def test_a_client_older_than_the_server_is_never_chosen() -> None:
    assert pick_client([ON_PATH], server_major=17) is None
