"""Spark's `kafka.`-prefixed client options, made from the same settings librdkafka uses.

The Python side (confluent-kafka) and Spark's Kafka source/sink (the Java
client) spell SASL differently: librdkafka takes `sasl.username`/`sasl.password`,
Java takes a JAAS line; librdkafka reads PEM files by path, Java wants a
truststore type and the client key as text. This is the only place that
translation lives.
"""

from __future__ import annotations

from pathlib import Path

from core.settings import Settings

_LOGIN_MODULES = {
    "PLAIN": "org.apache.kafka.common.security.plain.PlainLoginModule",
    "SCRAM-SHA-256": "org.apache.kafka.common.security.scram.ScramLoginModule",
    "SCRAM-SHA-512": "org.apache.kafka.common.security.scram.ScramLoginModule",
}


def kafka_options(settings: Settings) -> dict[str, str]:
    """Options for `spark.readStream.format("kafka")` and `df.write.format("kafka")`."""
    options = {
        "kafka.bootstrap.servers": settings.kafka_bootstrap_servers,
        "kafka.security.protocol": settings.kafka_security_protocol,
    }
    if settings.kafka_sasl_username:
        module = _LOGIN_MODULES.get(settings.kafka_sasl_mechanism)
        if module is None:
            raise ValueError(f"KAFKA_SASL_MECHANISM {settings.kafka_sasl_mechanism!r} is not one of {sorted(_LOGIN_MODULES)}")
        password = settings.kafka_sasl_password.get_secret_value() if settings.kafka_sasl_password else ""
        escaped = password.replace("\\", "\\\\").replace('"', '\\"')
        options["kafka.sasl.mechanism"] = settings.kafka_sasl_mechanism
        options["kafka.sasl.jaas.config"] = f'{module} required username="{settings.kafka_sasl_username}" password="{escaped}";'
    options.update(_tls_options(settings))
    return options


def _tls_options(settings: Settings) -> dict[str, str]:
    """The Java client's TLS options from the PEM files librdkafka reads (Kafka's clients take PEM since 2.7).

    The CA file is named as a PEM truststore. The Java client takes a PEM
    client certificate and key only as text (`ssl.keystore.certificate.chain`
    / `ssl.keystore.key`), not as paths, so they are read here.
    """
    options: dict[str, str] = {}
    if settings.kafka_ssl_ca_location:
        options["kafka.ssl.truststore.type"] = "PEM"
        options["kafka.ssl.truststore.location"] = settings.kafka_ssl_ca_location
    if settings.kafka_ssl_certificate_location and settings.kafka_ssl_key_location:
        options["kafka.ssl.keystore.type"] = "PEM"
        options["kafka.ssl.keystore.certificate.chain"] = _read(settings.kafka_ssl_certificate_location, "KAFKA_SSL_CERTIFICATE_LOCATION")
        options["kafka.ssl.keystore.key"] = _read(settings.kafka_ssl_key_location, "KAFKA_SSL_KEY_LOCATION")
        if settings.kafka_ssl_key_password:
            options["kafka.ssl.key.password"] = settings.kafka_ssl_key_password.get_secret_value()
    return options


def _read(path: str, setting: str) -> str:
    try:
        return Path(path).read_text()
    except OSError as exc:
        raise ValueError(f"{setting}={path}: cannot read it ({exc})") from exc
