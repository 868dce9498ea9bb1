"""The pipeline's configuration, in one place.

Every stage (data source client, producer, registration script, Spark job,
DAG, Cassandra schema, status view, monitor, demo) reads its settings from
here, and nothing else in the product reads the environment. Values come from
the environment, then a `.env` file in the working directory, then the
defaults below, which point at the embedded stack on loopback. Secrets are
`SecretStr`, so printing the settings never shows them. What only the dev
launcher needs to run the embedded services (their other ports, JVM heaps,
the registry's Java) is in stack/settings.py, which extends this class.

Use:
    from core.settings import load_settings
    settings = load_settings()
    Producer(settings.kafka_config())
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    """Typed settings; each field is read from the upper-case variable of its name."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)

    # --- Kafka -----------------------------------------------------------
    kafka_bootstrap_servers: str = "localhost:9092"
    kafka_security_protocol: str = "PLAINTEXT"
    kafka_sasl_mechanism: str = "PLAIN"
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    users_topic: str = "users"
    users_topic_partitions: int = Field(default=3, ge=1)
    users_topic_replication: int = Field(default=1, ge=1)
    dead_letter_topic: str = "users.dead_letter"
    # TLS towards the brokers (SSL or SASL_SSL): the CA that signed them, and a client
    # certificate and key for mutual TLS.
    kafka_ssl_ca_location: str | None = None
    kafka_ssl_certificate_location: str | None = None
    kafka_ssl_key_location: str | None = None
    kafka_ssl_key_password: SecretStr | None = None
    # The largest record value the producer sends; a bigger one is dead-lettered
    # (stage transform) instead of failing the run. Keep it at or below the broker's
    # and the topic's message.max.bytes (1 MiB by default).
    producer_max_message_bytes: int = Field(default=1_000_000, ge=1024)
    # The most of a record's bytes a dead letter keeps (Spark's decode and write stages). A
    # record the source topic took compressed can be far bigger than the dead-letter topic's
    # message.max.bytes; past this size only its first bytes are kept, with its full size in
    # a header, and the whole record stays at dead_letter.source.
    dead_letter_max_value_bytes: int = Field(default=1_000_000, ge=1024)

    # --- Schema Registry (any Confluent-compatible API) --------------------
    schema_registry_url: str = "http://localhost:8081/apis/ccompat/v7"
    # "user:password", as Confluent's clients spell it.
    schema_registry_basic_auth_user_info: SecretStr | None = None
    schema_registry_timeout_seconds: float = 10.0
    subject_name_strategy: Literal["topic", "record", "topic_record"] = "topic"
    schema_compatibility: str = "BACKWARD"
    # Which registered version producers write and Spark reads into: "latest" or a number.
    user_schema_version: str = "latest"
    # CA bundle for an https registry (empty: the system's CAs).
    schema_registry_ca_location: str | None = None

    # --- Data source (randomuser.me API v1.4 or the local stand-in) --------
    datasource_url: str = "http://localhost:8765/api/"
    datasource_timeout_seconds: float = 30.0
    datasource_retries: int = Field(default=5, ge=0)
    # Backoff between retries (tenacity): f, 2f, 4f, ... seconds, at most 30 (Retry-After wins when sent).
    datasource_backoff_factor: float = Field(default=0.5, ge=0)
    # A server's Retry-After is honoured up to this many seconds, and one run's whole
    # fetch must finish within the deadline, however the server answers.
    datasource_max_retry_after_seconds: float = Field(default=60.0, ge=0)
    datasource_deadline_seconds: float = Field(default=900.0, gt=0)

    # --- Transform bounds and field protection ------------------------------
    # Longest text one field may carry, and the range of dates accepted; beyond them a
    # record is dead-lettered (stage transform) instead of written.
    transform_max_string_length: int = Field(default=1024, ge=16)
    transform_min_date: str = "0001-01-01"
    transform_max_date: str = "2200-01-01"
    # Fields to protect before they leave the producer, e.g. "email,phone,cell,national_id_value";
    # "tokenize" (keyed HMAC, still joinable) or "encrypt" (AEAD, reversible with the key).
    protected_fields: str = ""
    field_protection_mode: Literal["tokenize", "encrypt"] = "tokenize"
    field_protection_key: SecretStr | None = None
    field_protection_key_file: str | None = None

    # --- Cassandra ---------------------------------------------------------
    cassandra_hosts: str = "127.0.0.1"
    cassandra_port: int = 9042
    cassandra_username: str | None = None
    cassandra_password: SecretStr | None = None
    cassandra_keyspace: str = "userstream"
    cassandra_table: str = "users"
    # "SimpleStrategy:1" or "NetworkTopologyStrategy:dc1=3,dc2=2".
    cassandra_replication: str = "SimpleStrategy:1"
    # Client-to-node TLS: on/off, the CA that signed the nodes, and whether to check the host name.
    cassandra_ssl: bool = False
    cassandra_ssl_ca_location: str | None = None
    cassandra_ssl_verify_hostname: bool = True

    # --- Spark -------------------------------------------------------------
    # One task slot per partition of the users topic (3): a batch's tasks mostly wait on Cassandra's acks, and
    # with fewer slots than partitions the last task runs in a second wave (bench.load on 2 cores, local[3]:
    # 3000 users/s sustained in 15 s steps, 4000 in 60 s steps; landed at 4000 offered 3,660-3,980 vs 3,400 at local[2]).
    spark_master: str = "local[3]"
    spark_checkpoint_dir: str = str(REPO_ROOT / ".stack" / "data" / "spark-checkpoints" / "users")
    # Freshness: a record waits for the next trigger, then its batch (bench.load: p95 2.5 s at 1 s, 1000 users/s).
    spark_trigger_interval: str = "1 second"
    spark_starting_offsets: str = "earliest"
    # Records per micro-batch at most: a catch-up after downtime comes in batches of this size, each
    # committed as it lands, and the write can check repeated keys on its own (spark/summary.py).
    spark_max_offsets_per_trigger: int | None = Field(default=100_000, ge=1)
    # Comma-separated jar paths; empty means the jars `make setup` fetched, or with
    # spark_use_packages, Maven coordinates for `--packages` (stack/pom.xml's versions).
    spark_jars: str | None = None
    spark_use_packages: bool = False
    spark_shuffle_partitions: int = Field(default=4, ge=1)
    # Writes in flight per Spark task in the Cassandra connector (spark.cassandra.output.concurrent.writes).
    # Its default of 5 leaves Cassandra idle between round trips: 64 wrote 2.9x the rows/s on the dev stack
    # (bench/profile_job.py --connector-sweep); the job rides out an overloaded node like any outage.
    spark_cassandra_concurrent_writes: int = Field(default=64, ge=1)
    # Longest string/bytes (and most array items) Avro may allocate while decoding.
    # Without a cap, a corrupt length prefix makes the JVM allocate up to 2 GB and die
    # of OutOfMemoryError, which no parse mode catches; with it, the record is dead-lettered.
    spark_avro_max_field_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)
    # The consumer group the job commits each batch's end offsets to (after the batch is
    # written), so Control Center, kafka-consumer-groups and AdminClient show its lag.
    # The checkpoint stays the source of truth for where the job resumes.
    spark_consumer_group: str = "userstream-spark"
    # Transient faults (Cassandra, registry or Kafka unreachable) are retried with backoff
    # for up to this long before the job exits non-zero naming the service.
    stream_fault_retry_seconds: float = Field(default=300.0, gt=0)
    # A registry "not found" for a schema id is final only after it has lasted this long.
    registry_not_found_grace_seconds: float = Field(default=60.0, ge=0)

    # --- Embedded stack (its launcher's own settings: stack/settings.py) ---------
    # Where the launcher keeps jars, logs, pid files and service state; the Spark job finds
    # its jars there, and the status view, monitor and demo the launcher's files.
    stack_home: Path = REPO_ROOT / ".stack"
    # STACK_SECURITY=on: the launcher runs Kafka (SASL_SSL, SCRAM), the registry (HTTPS, basic
    # auth) and Cassandra (password auth, TLS) secured, and every command reads the generated
    # client settings from <stack_home>/secure.env (see stack/security.py).
    stack_security: bool = False

    # --- Airflow -------------------------------------------------------------
    airflow_url: str = "http://localhost:8080"
    # The user_stream DAG's schedule: a cron expression or preset such as "@hourly"; empty: manual runs only.
    user_stream_schedule: str | None = None
    # REST API login for `make status` (POST {airflow_url}/auth/token). Without a
    # password, the SimpleAuthManager file under stack_home/airflow/ is read.
    airflow_admin_user: str = "admin"
    airflow_admin_password: SecretStr | None = None

    # --- Web monitor (ops.monitor) -------------------------------------------
    # Where the monitor serves its page, JSON and /metrics; the launcher binds it there.
    monitor_url: str = "http://127.0.0.1:8050"
    # Seconds between two history samples (throughput, freshness, lag) the charts draw.
    monitor_sample_seconds: float = Field(default=5.0, gt=0)

    def kafka_config(self) -> dict[str, str]:
        """librdkafka's dotted dict; SASL keys only when credentials are set."""
        conf = {
            "bootstrap.servers": self.kafka_bootstrap_servers,
            "security.protocol": self.kafka_security_protocol,
        }
        if self.kafka_sasl_username:
            conf["sasl.mechanism"] = self.kafka_sasl_mechanism
            conf["sasl.username"] = self.kafka_sasl_username
            conf["sasl.password"] = self.kafka_sasl_password.get_secret_value() if self.kafka_sasl_password else ""
        tls = {
            "ssl.ca.location": self.kafka_ssl_ca_location,
            "ssl.certificate.location": self.kafka_ssl_certificate_location,
            "ssl.key.location": self.kafka_ssl_key_location,
            "ssl.key.password": self.kafka_ssl_key_password.get_secret_value() if self.kafka_ssl_key_password else None,
        }
        conf.update({key: value for key, value in tls.items() if value})
        return conf

    def schema_registry_config(self) -> dict[str, object]:
        """Conf for confluent_kafka's SchemaRegistryClient; auth only when set."""
        # Without a timeout the client waits forever on a registry that accepts but never answers.
        conf = {"url": self.schema_registry_url, "timeout": self.schema_registry_timeout_seconds}
        if self.schema_registry_basic_auth_user_info:
            conf["basic.auth.user.info"] = self.schema_registry_basic_auth_user_info.get_secret_value()
        if self.schema_registry_ca_location:
            conf["ssl.ca.location"] = self.schema_registry_ca_location
        return conf

    def schema_registry_verify(self) -> str | bool:
        """`verify=` for plain-HTTP (requests) registry calls: the configured CA bundle, else the system's."""
        return self.schema_registry_ca_location or True

    def schema_registry_basic_auth(self) -> tuple[str, str] | None:
        """(user, password) for plain-HTTP registry calls, from the Confluent-style "user:password"."""
        if not self.schema_registry_basic_auth_user_info:
            return None
        user, _, password = self.schema_registry_basic_auth_user_info.get_secret_value().partition(":")
        return user, password

    def cassandra_contact_points(self) -> list[str]:
        return [host.strip() for host in self.cassandra_hosts.split(",") if host.strip()]


def secure_env_file(settings: Settings) -> Path:
    """Where the secured embedded stack writes its client settings (stack/security.py)."""
    return Path(settings.stack_home) / "secure.env"


@lru_cache(maxsize=1)
def load_settings() -> Settings:
    """The process-wide settings; tests that change the environment call `load_settings.cache_clear()`.

    With STACK_SECURITY=on, <stack_home>/secure.env is read after `.env` (the
    environment still wins), so every command reaches the secured stack
    without the user exporting its passwords.
    """
    settings = Settings()
    secured = secure_env_file(settings)
    if settings.stack_security and secured.is_file():
        return Settings(_env_file=(".env", secured))
    return settings
