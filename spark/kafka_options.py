"""Spark's `kafka.`-prefixed client options, made from the same settings librdkafka uses.

The Python side (confluent-kafka) and Spark's Kafka source/sink (the Java
client) spell SASL differently: librdkafka takes `sasl.username`/`sasl.password`,
Java takes a JAAS line. This is the only place that translation lives.
"""

from __future__ import annotations

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
    return options
