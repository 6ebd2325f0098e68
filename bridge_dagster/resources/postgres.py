"""PostgreSQL as a Dagster resource: one pooled SQLAlchemy engine per run or tick."""

from __future__ import annotations

import dagster as dg
from pydantic import Field, PrivateAttr
from sqlalchemy import Engine, create_engine

from bridge_dagster.db.urls import postgres_url


class PostgresResource(dg.ConfigurableResource):
    """The project's database. The password arrives through EnvVar and never shows in the UI."""

    host: str = Field(
        description="POSTGRES_HOST: a host name, or the embedded server's socket directory"
    )
    port: int = Field(default=5432, description="POSTGRES_PORT")
    database: str = Field(default="omninode_bridge", description="POSTGRES_DATABASE")
    user: str = Field(default="postgres", description="POSTGRES_USER")
    password: str = Field(
        description="POSTGRES_PASSWORD (an EnvVar, so the UI shows its name, not its value)"
    )
    ssl_mode: str = Field(default="prefer", description="POSTGRES_SSL_MODE: libpq sslmode")
    pool_min_size: int = Field(
        default=2, description="POSTGRES_POOL_MIN_SIZE: connections kept open per run or tick"
    )
    pool_max_size: int = Field(
        default=10, description="POSTGRES_POOL_MAX_SIZE: most connections per run or tick"
    )
    query_timeout_s: int = Field(
        default=60, description="POSTGRES_QUERY_TIMEOUT: statement timeout, seconds"
    )
    acquire_timeout_s: int = Field(
        default=15, description="POSTGRES_ACQUIRE_TIMEOUT: wait for a pooled connection, seconds"
    )

    _engine: Engine | None = PrivateAttr(default=None)

    def url(self) -> str:
        return postgres_url(
            host=self.host,
            port=self.port,
            database=self.database,
            user=self.user,
            password=self.password,
            ssl_mode=self.ssl_mode,
        )

    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = create_engine(
                self.url(),
                pool_size=self.pool_min_size,
                max_overflow=max(self.pool_max_size - self.pool_min_size, 0),
                pool_timeout=self.acquire_timeout_s,
                pool_pre_ping=True,
                connect_args={"options": f"-c statement_timeout={self.query_timeout_s * 1000}"},
            )
        return self._engine

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None
