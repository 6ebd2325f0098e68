"""Kafka TLS/SASL settings: checked at load, built into one config, used by every client."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest
from confluent_kafka import KafkaException

from bridge_dagster.cli.submit import _connected_producer
from bridge_dagster.definitions import build_resources
from bridge_dagster.devstack.kafka import ensure_topics
from bridge_dagster.exporter.sources import open_sources
from bridge_dagster.resources.kafka import KafkaResource
from bridge_dagster.settings import ConfigError, KafkaSecurity, load_settings

SASL = {
    "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
    "KAFKA_SASL_MECHANISM": "scram-sha-512",
    "KAFKA_SASL_USERNAME": "bridge",
    "KAFKA_SASL_PASSWORD": "s3cret",
}
# librdkafka's words when it cannot load the CA file it was given.
CA_FAILED = r"ssl\.ca\.location failed"


@pytest.fixture
def bad_ca(tmp_path: Path) -> str:
    """A CA file that exists but holds no certificate: any client given it fails to start,
    which shows the setting reached that client."""
    path = tmp_path / "ca.pem"
    path.write_text("not a certificate\n")
    return str(path)


def test_by_default_clients_speak_plaintext() -> None:
    assert load_settings({}).kafka_security.client_config() == {"security.protocol": "plaintext"}


def test_sasl_ssl_settings_become_librdkafka_properties(bad_ca: str) -> None:
    security = load_settings({**SASL, "KAFKA_SSL_CA_LOCATION": bad_ca}).kafka_security
    assert security.client_config() == {
        "security.protocol": "sasl_ssl",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "bridge",
        "sasl.password": "s3cret",
        "ssl.ca.location": bad_ca,
    }


@pytest.mark.parametrize(
    "missing", ["KAFKA_SASL_MECHANISM", "KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD"]
)
def test_a_sasl_protocol_without_its_credentials_is_refused_naming_the_missing_one(
    missing: str,
) -> None:
    env = {k: v for k, v in SASL.items() if k != missing}
    with pytest.raises(ConfigError, match=f"KAFKA_SECURITY_PROTOCOL=sasl_ssl needs {missing}"):
        load_settings(env)


def test_sasl_credentials_with_plaintext_are_refused_rather_than_ignored() -> None:
    with pytest.raises(ConfigError, match="KAFKA_SASL_USERNAME is set but KAFKA_SECURITY_PROTOCOL"):
        load_settings({"KAFKA_SASL_USERNAME": "bridge"})


def test_an_unknown_mechanism_is_refused() -> None:
    with pytest.raises(ConfigError, match="KAFKA_SASL_MECHANISM='GSSAPI'"):
        load_settings({**SASL, "KAFKA_SASL_MECHANISM": "GSSAPI"})


def test_a_ca_file_without_tls_or_that_does_not_exist_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="uses no TLS"):
        load_settings({"KAFKA_SSL_CA_LOCATION": str(tmp_path)})
    with pytest.raises(ConfigError, match=r"KAFKA_SSL_CA_LOCATION=.* is not a file"):
        load_settings({"KAFKA_SECURITY_PROTOCOL": "ssl", "KAFKA_SSL_CA_LOCATION": "/no/ca.pem"})


def resource(security: KafkaSecurity) -> KafkaResource:
    return KafkaResource(
        bootstrap_servers="127.0.0.1:9",
        request_topic="r",
        workflow_topic="w",
        security_protocol=security.protocol,
        ssl_ca_location=security.ssl_ca_location,
    )


def test_the_resource_producer_uses_the_security_settings(bad_ca: str) -> None:
    with pytest.raises(KafkaException, match=CA_FAILED):
        resource(KafkaSecurity("ssl", ssl_ca_location=bad_ca)).producer()


def test_the_resource_consumers_use_the_security_settings(bad_ca: str) -> None:
    # The sensors and the orchestrator's reads all go through this consumer.
    client = resource(KafkaSecurity("ssl", ssl_ca_location=bad_ca))
    with pytest.raises(KafkaException, match=CA_FAILED), client.consumer():
        pass


def test_the_submit_producer_uses_the_security_settings(bad_ca: str) -> None:
    with pytest.raises(KafkaException, match=CA_FAILED):
        _connected_producer("127.0.0.1:9", "r", KafkaSecurity("ssl", ssl_ca_location=bad_ca))


def test_the_dev_stack_topic_creation_uses_the_security_settings(bad_ca: str) -> None:
    with pytest.raises(KafkaException, match=CA_FAILED):
        ensure_topics("127.0.0.1:9", ["t"], security=KafkaSecurity("ssl", ssl_ca_location=bad_ca))


def test_the_exporter_uses_the_security_settings(bad_ca: str) -> None:
    env = {
        "POSTGRES_HOST": "127.0.0.1",
        "POSTGRES_PASSWORD": "unused",
        "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9",
        "KAFKA_SECURITY_PROTOCOL": "ssl",
        "KAFKA_SSL_CA_LOCATION": bad_ca,
    }
    sources = open_sources(load_settings(env))
    with pytest.raises(KafkaException, match=CA_FAILED), sources.kafka.consumer():
        pass
    sources.close()


def test_the_definitions_pass_the_sasl_password_as_an_env_var_and_the_rest_as_values(
    bad_ca: str,
) -> None:
    settings = load_settings({**SASL, "KAFKA_SSL_CA_LOCATION": bad_ca})
    kafka = build_resources(settings)["kafka"]
    assert isinstance(kafka, KafkaResource)
    assert kafka.sasl_password == dg.EnvVar("KAFKA_SASL_PASSWORD")
    assert (kafka.security_protocol, kafka.sasl_mechanism, kafka.sasl_username) == (
        "sasl_ssl",
        "SCRAM-SHA-512",
        "bridge",
    )
    assert kafka.ssl_ca_location == bad_ca
