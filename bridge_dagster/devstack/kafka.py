"""A real Kafka-protocol broker: the noida-db wheel's binary, Kafka service only."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from bridge_dagster.devstack.processes import StackError, port_accepts, spawn, stop, wait_until
from bridge_dagster.settings import KafkaSecurity

PLAINTEXT = KafkaSecurity()


def noida_binary() -> str:
    beside_python = Path(sys.executable).parent / "noida-db"
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which("noida-db")
    if found is None:
        raise StackError("the noida-db binary is missing; run `make install` to install it")
    return found


class EmbeddedKafka:
    """The broker keeps its log under `data_dir`, so topics and offsets survive restarts."""

    def __init__(self, data_dir: Path, port: int) -> None:
        self.data_dir = data_dir.resolve()
        self.port = port
        self.log_path = self.data_dir / "kafka.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> str:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._process = spawn(
            [
                noida_binary(),
                "start",
                "--only",
                "kafka",
                "--kafka-port",
                str(self.port),
                "--host",
                "127.0.0.1",
                "--data-dir",
                str(self.data_dir / "broker"),
            ],
            log_path=self.log_path,
        )
        wait_until(
            lambda: port_accepts(self.port),
            what="Kafka broker",
            process=self._process,
            log_path=self.log_path,
        )
        return self.bootstrap_servers

    def stop(self) -> None:
        if self._process is not None:
            stop(self._process)
            self._process = None


def ensure_topics(
    bootstrap_servers: str,
    topics: Iterable[str],
    partitions: int = 3,
    security: KafkaSecurity = PLAINTEXT,
) -> list[str]:
    """Create the topics that do not exist yet; return the names created.

    A topic that another process creates between the listing and the creation counts as
    already there, not as an error. `security` is for a broker of the user's own; the
    embedded one speaks plaintext.
    """
    admin = AdminClient({"bootstrap.servers": bootstrap_servers, **security.client_config()})
    existing = set(admin.list_topics(timeout=10).topics)
    wanted = [t for t in dict.fromkeys(topics) if t not in existing]
    if not wanted:
        return []
    futures = admin.create_topics(
        [NewTopic(t, num_partitions=partitions, replication_factor=1) for t in wanted]
    )
    created = []
    for topic, future in futures.items():
        try:
            future.result(timeout=15)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise _topic_error(topic, bootstrap_servers, exc) from exc
        except Exception as exc:
            raise _topic_error(topic, bootstrap_servers, exc) from exc
        else:
            created.append(topic)
    return created


def _topic_error(topic: str, bootstrap_servers: str, exc: Exception) -> StackError:
    return StackError(
        f"could not create topic {topic!r} on the broker at {bootstrap_servers}: {exc}; check"
        " that the broker runs and accepts the name, or point KAFKA_BOOTSTRAP_SERVERS at"
        " another broker (unset it to use the embedded one)"
    )
