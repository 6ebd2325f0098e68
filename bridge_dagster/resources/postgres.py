"""PostgreSQL as a Dagster resource: one pooled SQLAlchemy engine per run or tick."""

from __future__ import annotations

import dagster as dg
from pydantic import PrivateAttr
from sqlalchemy import Engine, create_engine

from bridge_dagster.db.urls import postgres_url


class PostgresResource(dg.ConfigurableResource):
    """The project's database. The password arrives through EnvVar and never shows in the UI."""

    host: str
    port: int = 5432
    database: str = "omninode_bridge"
    user: str = "postgres"
    password: str
    ssl_mode: str = "prefer"
    pool_min_size: int = 2
    pool_max_size: int = 10
    query_timeout_s: int = 60
    acquire_timeout_s: int = 15

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
