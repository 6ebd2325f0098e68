"""Every environment variable the project reads, parsed and checked in one place.

Start-up fails fast on a bad value, with a message that names the variable, what was
wrong and how to fix it. The table in the README is generated from `VARIABLES`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from dotenv import dotenv_values

from bridge_dagster.db.urls import postgres_url
from bridge_dagster.events.requests import is_valid_namespace
from bridge_dagster.events.topics import (
    DEFAULT_REDUCER_TOPIC,
    DEFAULT_REQUEST_TOPIC,
    DEFAULT_WORKFLOW_TOPIC,
)

LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
KAFKA_PROTOCOLS = ("plaintext", "ssl", "sasl_plaintext", "sasl_ssl")
# GSSAPI and OAUTHBEARER need settings of their own (a keytab, a token endpoint) that
# nothing here reads, so they are refused rather than half-configured.
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


class ConfigError(ValueError):
    """A configuration value that the project cannot start with."""


# A landing commits one batch on one connection while it looks up the next on another.
MIN_POOL_SIZE = 2


@dataclass(frozen=True)
class Variable:
    name: str
    default: str | None
    meaning: str


VARIABLES: tuple[Variable, ...] = (
    Variable("POSTGRES_HOST", None, "PostgreSQL host; unset: the dev stack starts an embedded one"),
    Variable("POSTGRES_PORT", "5432", "PostgreSQL port"),
    Variable(
        "POSTGRES_DATABASE", "omninode_bridge", "database name: letters, digits, _ -; at most 63"
    ),
    Variable("POSTGRES_USER", "postgres", "database user"),
    Variable("POSTGRES_PASSWORD", None, "required with POSTGRES_HOST; never has a default"),
    Variable("POSTGRES_SSL_MODE", "prefer", "libpq sslmode: " + ", ".join(SSL_MODES)),
    Variable("POSTGRES_POOL_MIN_SIZE", "2", "connections kept open per process"),
    Variable(
        "POSTGRES_POOL_MAX_SIZE",
        "10",
        "most connections per process; at least 2 (a landing uses 2)",
    ),
    Variable("POSTGRES_QUERY_TIMEOUT", "60", "statement timeout, seconds"),
    Variable("POSTGRES_ACQUIRE_TIMEOUT", "15", "wait for a pooled connection, seconds"),
    Variable(
        "KAFKA_BOOTSTRAP_SERVERS",
        None,
        "broker list host:port[,…]; unset: the dev stack starts an embedded broker",
    ),
    Variable("KAFKA_REQUEST_TOPIC", DEFAULT_REQUEST_TOPIC, "stamp requests are read from here"),
    Variable(
        "KAFKA_WORKFLOW_TOPIC",
        DEFAULT_WORKFLOW_TOPIC,
        "workflow events are published here, and landed from here",
    ),
    Variable(
        "KAFKA_REDUCER_TOPIC",
        DEFAULT_REDUCER_TOPIC,
        "the reducer publishes aggregation_started/completed/failed here",
    ),
    Variable(
        "KAFKA_SECURITY_PROTOCOL",
        "plaintext",
        "every Kafka client's security.protocol: " + ", ".join(KAFKA_PROTOCOLS),
    ),
    Variable(
        "KAFKA_SASL_MECHANISM",
        None,
        "with a sasl_* protocol: " + ", ".join(SASL_MECHANISMS),
    ),
    Variable("KAFKA_SASL_USERNAME", None, "with a sasl_* protocol: the SASL user"),
    Variable("KAFKA_SASL_PASSWORD", None, "with a sasl_* protocol: the SASL password"),
    Variable(
        "KAFKA_SSL_CA_LOCATION",
        None,
        "with ssl or sasl_ssl: CA certificate file to verify the broker; unset: the system's",
    ),
    Variable(
        "METADATA_STAMPING_SERVICE_URL",
        None,
        "stamping service base URL; unset: the in-process engine",
    ),
    Variable("ONEXTREE_SERVICE_URL", None, "OnexTree service base URL; unset: in-process"),
    Variable("DEFAULT_NAMESPACE", "omninode.bridge", "namespace of requests that name none"),
    Variable(
        "ORCHESTRATOR_CONCURRENCY",
        "10",
        "most runs in progress at once; landing and reducer runs share it and are dequeued first",
    ),
    Variable(
        "MAX_WORKFLOW_QUEUE_SIZE",
        "10000",
        "requests (not runs) that queued + running stamp_workflow runs may hold; the request"
        " sensor pauses when they reach it; at least MAX_REQUESTS_PER_RUN",
    ),
    Variable(
        "MAX_REQUESTS_PER_RUN",
        "1000",
        "most requests one stamp_workflow run handles; 1 gives a run per workflow",
    ),
    Variable(
        "REQUEST_SENSOR_INTERVAL_S",
        "1",
        "least seconds between request sensor ticks; the daemon's loop adds up to 5",
    ),
    Variable(
        "BRIDGE_MAX_WORKFLOW_ATTEMPTS",
        "3",
        "runs that may take an admitted workflow; when they have all ended unfinished, the"
        " next one fails it with the reason `abandoned`",
    ),
    Variable(
        "AGGREGATION_WINDOW_SIZE_MS",
        "5000",
        "least time between landing ticks and between re-aggregations of touched hours",
    ),
    Variable(
        "AGGREGATION_BATCH_SIZE",
        "10000",
        "events landed per transaction (one COPY, one position update)",
    ),
    Variable(
        "MAX_AGGREGATION_QUEUE_SIZE",
        "200000",
        "most events one landing run takes off the workflow topic; a bigger backlog waits"
        " for the next run; at least AGGREGATION_BATCH_SIZE",
    ),
    Variable(
        "REDUCER_CONCURRENCY",
        "10",
        "most reducer (aggregation) runs queued or running at once",
    ),
    Variable(
        "REDUCER_PARTITIONS_START",
        "2026-10-01-00:00",
        "first hour (UTC, YYYY-MM-DD-HH:MM) of the reducer's hourly partitions",
    ),
    Variable(
        "WORKFLOW_EVENTS_RETENTION_DAYS",
        "30",
        "days of raw workflow_events kept; older whole days are dropped once aggregated",
    ),
    Variable(
        "DAGSTER_RUN_RETENTION_DAYS",
        "30",
        "finished Dagster runs (and their event logs) kept; prune_dagster_runs deletes older"
        " ones, except those holding an asset partition's latest materialization",
    ),
    Variable(
        "ORCHESTRATOR_WORKFLOW_TIMEOUT_MS",
        "600000",
        "a workflow in processing longer than this is failed by the sweeper",
    ),
    Variable(
        "ORCHESTRATOR_STEP_TIMEOUT_MS",
        "120000",
        "the longest one service call may take, retries included; a batch calls services"
        " for 10 times it",
    ),
    Variable("BRIDGE_MAX_CONTENT_BYTES", str(100 * 1024 * 1024), "largest content stamped"),
    Variable(
        "BRIDGE_MAX_RUN_CONTENT_BYTES",
        str(256 * 1024 * 1024),
        "file bytes one stamp_workflow run holds in memory between its steps; a file beyond"
        " them is read again by each step and must be unchanged",
    ),
    Variable(
        "BRIDGE_ALLOWED_ROOTS",
        None,
        "os.pathsep-separated directories that file paths and tree roots must lie under;"
        " unset: the current directory",
    ),
    Variable("API_KEY", None, "when set, the HTTP services require it in X-API-Key"),
    Variable(
        "API_KEY_PREVIOUS",
        None,
        "comma-separated keys still accepted beside API_KEY while clients move to a new one",
    ),
    Variable(
        "METRICS_REQUIRE_API_KEY",
        "false",
        "true: the exporter's /metrics needs an API key too (/health stays open for probes)",
    ),
    Variable("EVENT_SIGNING_KEY", None, "when set, events carry an HMAC-SHA256 x-signature header"),
    Variable("LOG_LEVEL", "info", ", ".join(LOG_LEVELS)),
    Variable("ENVIRONMENT", "dev", "written into every event envelope"),
    Variable(
        "STAMP_WORKFLOW_K8S_CPU",
        "1",
        "CPU a stamp_workflow run pod requests under K8sRunLauncher (Kubernetes quantity)",
    ),
    Variable(
        "STAMP_WORKFLOW_K8S_MEMORY",
        "2Gi",
        "memory a stamp_workflow run pod requests and is limited to under K8sRunLauncher",
    ),
)

_DEFAULTS = {v.name: v.default for v in VARIABLES}
_BAD_TOPIC = "is not a valid Kafka topic name (letters, digits, . _ -; at most 249)"


@dataclass(frozen=True)
class PostgresSettings:
    host: str | None
    port: int
    database: str
    user: str
    password: str | None
    ssl_mode: str
    pool_min_size: int
    pool_max_size: int
    query_timeout_s: int
    acquire_timeout_s: int

    def url(self) -> str:
        """SQLAlchemy URL for the configured server (`postgresql+psycopg2://`, as 2.x wants)."""
        if self.host is None:
            raise ConfigError(
                "POSTGRES_HOST is not set; set it, or run `bridge-dagster dev`, which starts an"
                " embedded PostgreSQL and sets it for you"
            )
        return postgres_url(
            host=self.host,
            port=self.port,
            database=self.database,
            user=self.user,
            password=self.password,
            ssl_mode=self.ssl_mode,
        )


@dataclass(frozen=True)
class KafkaSecurity:
    """How every Kafka client of the project authenticates and encrypts, checked at load."""

    protocol: str = "plaintext"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = None
    ssl_ca_location: str | None = None

    def client_config(self) -> dict[str, str]:
        """librdkafka properties for these settings; every client the project makes merges
        them in, so a broker that requires TLS or SASL is reached the same way by all."""
        config = {"security.protocol": self.protocol}
        if self.sasl_mechanism is not None:
            config["sasl.mechanism"] = self.sasl_mechanism
        if self.sasl_username is not None:
            config["sasl.username"] = self.sasl_username
        if self.sasl_password is not None:
            config["sasl.password"] = self.sasl_password
        if self.ssl_ca_location is not None:
            config["ssl.ca.location"] = self.ssl_ca_location
        return config


@dataclass(frozen=True)
class Settings:
    postgres: PostgresSettings
    kafka_bootstrap_servers: str | None
    kafka_security: KafkaSecurity
    request_topic: str
    workflow_topic: str
    reducer_topic: str
    stamping_service_url: str | None
    onextree_service_url: str | None
    default_namespace: str
    orchestrator_concurrency: int
    max_workflow_queue_size: int
    max_requests_per_run: int
    request_sensor_interval_s: int
    max_workflow_attempts: int
    aggregation_window_ms: int
    aggregation_batch_size: int
    max_aggregation_queue_size: int
    reducer_concurrency: int
    reducer_partitions_start: datetime
    workflow_events_retention_days: int
    dagster_run_retention_days: int
    workflow_timeout_ms: int
    step_timeout_ms: int
    max_content_bytes: int
    max_run_content_bytes: int
    allowed_roots: tuple[Path, ...]
    api_key: str | None
    api_key_previous: tuple[str, ...]
    metrics_require_api_key: bool
    event_signing_key: str | None
    log_level: str
    environment: str
    stamp_workflow_k8s_cpu: str
    stamp_workflow_k8s_memory: str


def read_env_file(path: Path = Path(".env")) -> None:
    """Put `path`'s variables (the guide's `cp .env.example .env`) into os.environ.

    A variable already in the environment keeps its value, so a one-off
    `NAME=value bridge-dagster …` beats the file. One the file leaves empty (`API_KEY=`) stays
    unset, which is what `.env.example`'s empty entries mean. The default is the `.env` of
    the directory the command runs in, where `dagster dev` looks for one too.
    """
    if path.is_file():
        values = dotenv_values(path)
        os.environ.update({k: v for k, v in values.items() if v and k not in os.environ})


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read and check every variable; raise ConfigError naming the first bad one."""
    env = os.environ if env is None else env
    _refuse_replaced_variables(env)
    get = _Reader(env)
    settings = Settings(
        postgres=PostgresSettings(
            host=get.optional("POSTGRES_HOST"),
            port=get.parsed("POSTGRES_PORT", _port, "is not a port number (1-65535)"),
            database=get.parsed(
                "POSTGRES_DATABASE", _database, "is not a database name (1-63 of A-Z a-z 0-9 _ -)"
            ),
            user=get.text("POSTGRES_USER"),
            password=_password(env),
            ssl_mode=get.choice("POSTGRES_SSL_MODE", SSL_MODES),
            pool_min_size=get.positive("POSTGRES_POOL_MIN_SIZE"),
            pool_max_size=get.parsed(
                "POSTGRES_POOL_MAX_SIZE",
                lambda v: _at_least(v, MIN_POOL_SIZE),
                f"is below {MIN_POOL_SIZE}: a landing holds two connections at once, one"
                " committing a batch while the other looks up the next",
            ),
            query_timeout_s=get.positive("POSTGRES_QUERY_TIMEOUT"),
            acquire_timeout_s=get.positive("POSTGRES_ACQUIRE_TIMEOUT"),
        ),
        kafka_bootstrap_servers=get.parsed_optional(
            "KAFKA_BOOTSTRAP_SERVERS", _bootstrap, "is not a host:port[,host:port…] list"
        ),
        kafka_security=_kafka_security(get),
        request_topic=get.parsed("KAFKA_REQUEST_TOPIC", _topic, "is not a valid Kafka topic name"),
        workflow_topic=get.parsed(
            "KAFKA_WORKFLOW_TOPIC", _topic, "is not a valid Kafka topic name"
        ),
        reducer_topic=get.parsed("KAFKA_REDUCER_TOPIC", _topic, "is not a valid Kafka topic name"),
        stamping_service_url=get.parsed_optional(
            "METADATA_STAMPING_SERVICE_URL", _http_url, "is not an http(s)://host[:port] URL"
        ),
        onextree_service_url=get.parsed_optional(
            "ONEXTREE_SERVICE_URL", _http_url, "is not an http(s)://host[:port] URL"
        ),
        default_namespace=get.parsed(
            "DEFAULT_NAMESPACE", _namespace, "is not a namespace (1-255 of A-Z a-z 0-9 . _ -)"
        ),
        orchestrator_concurrency=get.positive("ORCHESTRATOR_CONCURRENCY"),
        max_workflow_queue_size=get.positive("MAX_WORKFLOW_QUEUE_SIZE"),
        max_requests_per_run=get.positive("MAX_REQUESTS_PER_RUN"),
        request_sensor_interval_s=get.positive("REQUEST_SENSOR_INTERVAL_S"),
        max_workflow_attempts=get.positive("BRIDGE_MAX_WORKFLOW_ATTEMPTS"),
        aggregation_window_ms=get.positive("AGGREGATION_WINDOW_SIZE_MS"),
        aggregation_batch_size=get.positive("AGGREGATION_BATCH_SIZE"),
        max_aggregation_queue_size=get.positive("MAX_AGGREGATION_QUEUE_SIZE"),
        reducer_concurrency=get.positive("REDUCER_CONCURRENCY"),
        reducer_partitions_start=get.parsed(
            "REDUCER_PARTITIONS_START", _hour, "is not a UTC hour like 2026-10-01-00:00"
        ),
        workflow_events_retention_days=get.positive("WORKFLOW_EVENTS_RETENTION_DAYS"),
        dagster_run_retention_days=get.positive("DAGSTER_RUN_RETENTION_DAYS"),
        workflow_timeout_ms=get.positive("ORCHESTRATOR_WORKFLOW_TIMEOUT_MS"),
        step_timeout_ms=get.positive("ORCHESTRATOR_STEP_TIMEOUT_MS"),
        max_content_bytes=get.positive("BRIDGE_MAX_CONTENT_BYTES"),
        max_run_content_bytes=get.positive("BRIDGE_MAX_RUN_CONTENT_BYTES"),
        allowed_roots=_allowed_roots(env.get("BRIDGE_ALLOWED_ROOTS")),
        api_key=get.optional("API_KEY"),
        api_key_previous=_previous_api_keys(get),
        metrics_require_api_key=get.parsed(
            "METRICS_REQUIRE_API_KEY", _bool, "is not true or false"
        ),
        event_signing_key=get.optional("EVENT_SIGNING_KEY"),
        log_level=get.choice("LOG_LEVEL", LOG_LEVELS),
        environment=get.text("ENVIRONMENT"),
        stamp_workflow_k8s_cpu=get.parsed(
            "STAMP_WORKFLOW_K8S_CPU", _cpu_quantity, "is not a CPU quantity like 1, 0.5 or 500m"
        ),
        stamp_workflow_k8s_memory=get.parsed(
            "STAMP_WORKFLOW_K8S_MEMORY",
            _memory_quantity,
            "is not a memory quantity like 2Gi or 512Mi",
        ),
    )
    _check_queue_holds_a_run(settings)
    _check_landing_run_holds_a_batch(settings)
    _check_metrics_key_exists(settings)
    return settings


def _check_landing_run_holds_a_batch(settings: Settings) -> None:
    if settings.max_aggregation_queue_size < settings.aggregation_batch_size:
        raise ConfigError(
            f"MAX_AGGREGATION_QUEUE_SIZE={settings.max_aggregation_queue_size} is smaller than"
            f" AGGREGATION_BATCH_SIZE={settings.aggregation_batch_size}, so no landing run could"
            " fill one transaction; raise MAX_AGGREGATION_QUEUE_SIZE or lower"
            " AGGREGATION_BATCH_SIZE"
        )


def _check_queue_holds_a_run(settings: Settings) -> None:
    # The sensor counts the requests in queued and running runs; a limit below one run's
    # size would pause it after a single run.
    if settings.max_workflow_queue_size < settings.max_requests_per_run:
        raise ConfigError(
            f"MAX_WORKFLOW_QUEUE_SIZE={settings.max_workflow_queue_size} is smaller than"
            f" MAX_REQUESTS_PER_RUN={settings.max_requests_per_run}, so the request sensor"
            " would pause after one run; raise MAX_WORKFLOW_QUEUE_SIZE to at least"
            " MAX_REQUESTS_PER_RUN (ideally several times it) or lower MAX_REQUESTS_PER_RUN"
        )


class _Reader:
    """Reads one variable at a time, applying its documented default."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env

    def optional(self, name: str) -> str | None:
        value = self._env.get(name)
        return value if value else _DEFAULTS[name]

    def text(self, name: str) -> str:
        value = self.optional(name)
        if value is None or not value.strip():
            raise ConfigError(f"{name} is empty; set it or unset it to use {_DEFAULTS[name]!r}")
        return value

    def parsed(self, name: str, parse: Callable[[str], Any], problem: str) -> Any:
        value = self.text(name)
        return _parse_or_explain(name, value, parse, problem)

    def parsed_optional(self, name: str, parse: Callable[[str], Any], problem: str) -> Any:
        value = self.optional(name)
        return None if value is None else _parse_or_explain(name, value, parse, problem)

    def positive(self, name: str) -> int:
        return self.parsed(name, _positive_int, "is not a positive whole number")

    def choice(self, name: str, choices: tuple[str, ...]) -> str:
        return self.parsed(name, lambda v: _one_of(v.lower(), choices), f"is not one of {choices}")


def _parse_or_explain(name: str, value: str, parse: Callable[[str], Any], problem: str) -> Any:
    try:
        return parse(value)
    except ValueError:
        default = _DEFAULTS[name]
        fix = f"unset it to use {default!r}" if default is not None else "unset it"
        raise ConfigError(f"{name}={value!r} {problem}; set it in .env or {fix}") from None


def _password(env: Mapping[str, str]) -> str | None:
    value = env.get("POSTGRES_PASSWORD")
    if value is not None and not value.strip():
        raise ConfigError(
            "POSTGRES_PASSWORD is set but empty; set a real password (for example"
            " `openssl rand -base64 32`) or unset it when using the embedded PostgreSQL"
        )
    if env.get("POSTGRES_HOST") and value is None:
        raise ConfigError(
            "POSTGRES_PASSWORD is not set but POSTGRES_HOST is; set POSTGRES_PASSWORD in .env"
            " (there is no default password)"
        )
    return value


def _hour(value: str) -> datetime:
    # The format of Dagster's hourly partition keys, so the setting reads like a key.
    hour = datetime.strptime(value, "%Y-%m-%d-%H:%M")
    if hour.minute:
        raise ValueError(value)
    return hour.replace(tzinfo=UTC)


def _port(value: str) -> int:
    port = int(value)
    if not 1 <= port <= 65535:
        raise ValueError(value)
    return port


def _at_least(value: str, minimum: int) -> int:
    number = int(value)
    if number < minimum:
        raise ValueError(value)
    return number


def _positive_int(value: str) -> int:
    return _at_least(value, 1)


def _one_of(value: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ValueError(value)
    return value


def _bootstrap(value: str) -> str:
    for server in value.split(","):
        host, sep, port = server.strip().rpartition(":")
        if not sep or not host:
            raise ValueError(value)
        _port(port)
    return value


def _namespace(value: str) -> str:
    if not is_valid_namespace(value):
        raise ValueError(value)
    return value


def _database(value: str) -> str:
    # Identifiers longer than 63 bytes are silently truncated by PostgreSQL.
    allowed = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")
    if len(value) > 63 or not set(value) <= allowed:
        raise ValueError(value)
    return value


def _topic(value: str) -> str:
    allowed = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
    if not value or len(value) > 249 or not set(value) <= allowed or value in (".", ".."):
        raise ValueError(value)
    return value


def _cpu_quantity(value: str) -> str:
    if not re.fullmatch(r"(\d+(\.\d+)?|\d+m)", value):
        raise ValueError(value)
    return value


def _memory_quantity(value: str) -> str:
    if not re.fullmatch(r"\d+(Ki|Mi|Gi|Ti|k|M|G|T)?", value):
        raise ValueError(value)
    return value


def _http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(value)
    _ = parts.port  # raises ValueError on a non-numeric port
    return value.rstrip("/")


def _allowed_roots(value: str | None) -> tuple[Path, ...]:
    if not value:
        return (Path.cwd().resolve(),)
    roots = tuple(Path(p).expanduser().resolve() for p in value.split(os.pathsep) if p)
    for root in roots:
        if not root.is_dir():
            raise ConfigError(
                f"BRIDGE_ALLOWED_ROOTS names {str(root)!r}, which is not a directory; fix the"
                f" path or remove it (separate entries with {os.pathsep!r})"
            )
    return roots


# Variables the deployment guide names that this project answers another way. Setting one
# stops start-up with what to do instead: ignoring it would leave a user believing it works.
REPLACED_VARIABLES: dict[str, str] = {
    "JWT_SECRET": "the services authenticate callers by API key, not JWT (see the README's"
    " Security section); set API_KEY instead",
    "JWT_EXPIRATION_HOURS": "the services authenticate callers by API key, not JWT (see the"
    " README's Security section); rotate keys with API_KEY and API_KEY_PREVIOUS instead",
    "API_KEY_ROTATION_ENABLED": "nothing here rotates keys on a timer; rotate by setting the"
    " new key as API_KEY and the old one as API_KEY_PREVIOUS until every client has moved",
    "API_KEY_ROTATION_DAYS": "nothing here rotates keys on a timer; rotate by setting the new"
    " key as API_KEY and the old one as API_KEY_PREVIOUS until every client has moved",
    "POSTGRES_SSL_ENABLED": "POSTGRES_SSL_MODE alone decides SSL (require or verify-full"
    " insist on it)",
    "REQUIRE_HTTPS": "the services and the exporter speak plain HTTP inside the deployment's"
    " network; terminate TLS at the ingress or reverse proxy in front of them",
}


def _refuse_replaced_variables(env: Mapping[str, str]) -> None:
    for name in sorted(env):
        reason = REPLACED_VARIABLES.get(name)
        if reason is None and name.startswith("JWT_"):
            reason = REPLACED_VARIABLES["JWT_SECRET"]
        if reason is not None:
            raise ConfigError(f"{name} is set, but {reason}; unset {name}")


def _bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise ValueError(value)


def _kafka_security(get: _Reader) -> KafkaSecurity:
    protocol = get.choice("KAFKA_SECURITY_PROTOCOL", KAFKA_PROTOCOLS)
    sasl = {
        name: get.optional(name)
        for name in ("KAFKA_SASL_MECHANISM", "KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD")
    }
    if protocol.startswith("sasl_"):
        for name, value in sasl.items():
            if value is None:
                raise ConfigError(
                    f"KAFKA_SECURITY_PROTOCOL={protocol} needs {name}; set it in .env (SASL"
                    " needs KAFKA_SASL_MECHANISM, KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD)"
                )
        mechanism = get.parsed(
            "KAFKA_SASL_MECHANISM",
            lambda v: _one_of(v.upper(), SASL_MECHANISMS),
            f"is not one of {SASL_MECHANISMS}",
        )
    else:
        for name, value in sasl.items():
            if value is not None:
                raise ConfigError(
                    f"{name} is set but KAFKA_SECURITY_PROTOCOL={protocol} does not use it; set"
                    f" KAFKA_SECURITY_PROTOCOL=sasl_ssl (or sasl_plaintext), or unset {name}"
                )
        mechanism = None
    return KafkaSecurity(
        protocol=protocol,
        sasl_mechanism=mechanism,
        sasl_username=sasl["KAFKA_SASL_USERNAME"],
        sasl_password=sasl["KAFKA_SASL_PASSWORD"],
        ssl_ca_location=_ssl_ca_location(get.optional("KAFKA_SSL_CA_LOCATION"), protocol),
    )


def _ssl_ca_location(value: str | None, protocol: str) -> str | None:
    if value is None:
        return None
    if protocol not in ("ssl", "sasl_ssl"):
        raise ConfigError(
            f"KAFKA_SSL_CA_LOCATION is set but KAFKA_SECURITY_PROTOCOL={protocol} uses no TLS;"
            " set KAFKA_SECURITY_PROTOCOL=ssl (or sasl_ssl), or unset KAFKA_SSL_CA_LOCATION"
        )
    if not Path(value).is_file():
        raise ConfigError(
            f"KAFKA_SSL_CA_LOCATION={value!r} is not a file; point it at the PEM file of the"
            " CA that signed the broker's certificate, or unset it to use the system's CAs"
        )
    return value


def _previous_api_keys(get: _Reader) -> tuple[str, ...]:
    value = get.optional("API_KEY_PREVIOUS")
    if value is None:
        return ()
    if get.optional("API_KEY") is None:
        raise ConfigError(
            "API_KEY_PREVIOUS is set but API_KEY is not; set API_KEY to the new key (the one"
            " clients move to), or unset API_KEY_PREVIOUS"
        )
    return tuple(key.strip() for key in value.split(",") if key.strip())


def _check_metrics_key_exists(settings: Settings) -> None:
    if settings.metrics_require_api_key and settings.api_key is None:
        raise ConfigError(
            "METRICS_REQUIRE_API_KEY=true but API_KEY is not set, so no scrape could pass; set"
            " API_KEY (for example `openssl rand -base64 32`) or unset METRICS_REQUIRE_API_KEY"
        )
