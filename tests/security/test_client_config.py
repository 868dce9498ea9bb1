"""TLS and credentials reach every client's own configuration; refusals map to the setting to fix. No service needed."""

from __future__ import annotations

import ssl
import subprocess

import pytest

from core import security_hints
from core.cassandra_schema import CassandraUnavailable, cassandra_ssl_context
from core.settings import Settings, load_settings
from spark.kafka_options import kafka_options
from spark.session import cassandra_conf
from stack import security
from stack.layout import Layout


@pytest.fixture
def material(tmp_path) -> security.Material:
    layout = Layout(tmp_path)
    return security.ensure_material(Settings(stack_home=tmp_path, stack_security=True), layout)


@pytest.fixture
def secured(material) -> Settings:
    """The secured stack's client settings, as `load_settings()` reads them from secure.env."""
    return Settings(_env_file=(str(material.env_file),))


def test_librdkafka_gets_sasl_and_the_ca(secured, material):
    conf = secured.kafka_config()
    assert conf["security.protocol"] == "SASL_SSL" and conf["sasl.mechanism"] == "SCRAM-SHA-512"
    assert conf["sasl.password"] == material.passwords["kafka_client"]
    assert conf["ssl.ca.location"] == str(material.ca_cert)
    assert not any(key.startswith("ssl.") for key in Settings(_env_file=None).kafka_config()), "plaintext by default"


def test_librdkafka_gets_a_client_certificate_for_mutual_tls(material):
    settings = Settings(_env_file=None, kafka_ssl_certificate_location=str(material.server_cert),
                        kafka_ssl_key_location=str(material.server_key), kafka_ssl_key_password="kp")
    conf = settings.kafka_config()
    assert (conf["ssl.certificate.location"], conf["ssl.key.location"], conf["ssl.key.password"]) == \
        (str(material.server_cert), str(material.server_key), "kp")


def test_spark_kafka_options_carry_scram_and_a_pem_truststore(secured, material):
    options = kafka_options(secured)
    assert options["kafka.security.protocol"] == "SASL_SSL"
    assert "ScramLoginModule required" in options["kafka.sasl.jaas.config"]
    assert (options["kafka.ssl.truststore.type"], options["kafka.ssl.truststore.location"]) == ("PEM", str(material.ca_cert))
    mutual = kafka_options(secured.model_copy(update={"kafka_ssl_certificate_location": str(material.server_cert),
                                                     "kafka_ssl_key_location": str(material.server_key)}))
    assert mutual["kafka.ssl.keystore.type"] == "PEM" and "BEGIN PRIVATE KEY" in mutual["kafka.ssl.keystore.key"]


def test_the_registry_client_gets_the_ca_and_basic_auth(secured, material):
    conf = secured.schema_registry_config()
    assert conf["url"].startswith("https://") and conf["ssl.ca.location"] == str(material.ca_cert)
    assert conf["basic.auth.user.info"] == f"userstream:{material.passwords['registry']}"


@pytest.mark.jdk  # keytool reads the truststore
def test_the_cassandra_connector_gets_tls_with_a_truststore_java_reads(secured, material):
    conf = cassandra_conf(secured)
    assert conf["spark.cassandra.connection.ssl.enabled"] == "true"
    assert conf["spark.cassandra.auth.password"] == material.passwords["cassandra"]
    listing = subprocess.run(["keytool", "-list", "-keystore", conf["spark.cassandra.connection.ssl.trustStore.path"],
                              "-storetype", "PKCS12", "-storepass", conf["spark.cassandra.connection.ssl.trustStore.password"]],
                             capture_output=True, text=True)
    assert listing.returncode == 0, listing.stdout + listing.stderr
    assert "trustedCertEntry" in listing.stdout
    assert "spark.cassandra.connection.ssl.enabled" not in cassandra_conf(Settings(_env_file=None))


def test_the_cassandra_driver_checks_the_node_against_the_ca(secured):
    context = cassandra_ssl_context(secured)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    relaxed = cassandra_ssl_context(secured.model_copy(update={"cassandra_ssl_verify_hostname": False}))
    assert relaxed.verify_mode == ssl.CERT_REQUIRED and not relaxed.check_hostname
    assert cassandra_ssl_context(Settings(_env_file=None)) is None
    with pytest.raises(CassandraUnavailable, match="CASSANDRA_SSL_CA_LOCATION"):
        cassandra_ssl_context(secured.model_copy(update={"cassandra_ssl_ca_location": "/nonexistent/ca.pem"}))


def test_load_settings_reads_secure_env_only_with_stack_security_on(material, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # no developer .env
    monkeypatch.setenv("STACK_HOME", str(material.env_file.parent))
    for name in ("KAFKA_SASL_PASSWORD", "KAFKA_SECURITY_PROTOCOL", "STACK_SECURITY"):
        monkeypatch.delenv(name, raising=False)
    try:
        load_settings.cache_clear()
        assert load_settings().kafka_security_protocol == "PLAINTEXT", "off: secure.env is not read"
        monkeypatch.setenv("STACK_SECURITY", "on")
        load_settings.cache_clear()
        assert load_settings().kafka_sasl_password.get_secret_value() == material.passwords["kafka_client"]
        monkeypatch.setenv("KAFKA_SASL_PASSWORD", "from-the-environment")
        load_settings.cache_clear()
        assert load_settings().kafka_sasl_password.get_secret_value() == "from-the-environment", "the environment wins"
    finally:
        load_settings.cache_clear()


def test_printing_the_settings_shows_no_password(secured, material):
    shown = repr(secured) + str(secured)
    assert not [name for name, value in material.passwords.items() if value in shown]


# Messages as the clients print them (seen against the secured stack).
KAFKA_REFUSALS = {
    "sasl_ssl://localhost:31092/bootstrap: SASL authentication error: Authentication failed during authentication due to "
    "invalid credentials with SASL mechanism SCRAM-SHA-512 (after 314ms in state AUTH_REQ)": "KAFKA_SASL_PASSWORD",
    "localhost:31092/bootstrap: Disconnected: connection closed by peer: receive 0 after POLLIN (after 1ms in state APIVERSION_QUERY)":
        "KAFKA_SECURITY_PROTOCOL",
    "sasl_ssl://localhost:31092/bootstrap: SSL handshake failed: error:0A000086:SSL routines::certificate verify failed: broker "
    "certificate could not be verified": "KAFKA_SSL_CA_LOCATION",
}
CASSANDRA_REFUSALS = {
    "AuthenticationFailed('Failed to authenticate to 127.0.0.1:31042: Error from server: code=0100 [Bad credentials] "
    "message=\"Provided username userstream and/or password are incorrect\"')": "CASSANDRA_PASSWORD",
    "ConnectionResetError(104, 'Connection reset by peer')": "CASSANDRA_SSL",
    "AuthenticationFailed('Remote end requires authentication')": "CASSANDRA_USERNAME",
    "Last error: [SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: self-signed certificate in certificate chain":
        "CASSANDRA_SSL_CA_LOCATION",
}


@pytest.mark.parametrize(("message", "setting"), KAFKA_REFUSALS.items())
def test_kafka_refusals_name_the_setting(message, setting):
    assert setting in security_hints.kafka_hint(message)


@pytest.mark.parametrize(("message", "setting"), CASSANDRA_REFUSALS.items())
def test_cassandra_refusals_name_the_setting(message, setting):
    assert setting in security_hints.cassandra_hint(message)


def test_an_unrelated_failure_gets_no_hint():
    assert security_hints.kafka_hint("Connect to ipv4#127.0.0.1:9092 failed: Connection refused") is None
    assert security_hints.cassandra_hint("ConnectionRefusedError(111, 'Connection refused')") is None
