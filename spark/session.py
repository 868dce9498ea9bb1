"""The one way Spark entry points (stream job, bench, tests) get a SparkSession.

    from spark.session import build_spark_session
    spark = build_spark_session(load_settings(), "users-to-cassandra", master="local[2]")

Connector jars (Kafka source/sink, spark-avro, Cassandra connector) come from,
in order:
  1. SPARK_JARS (settings.spark_jars), a comma-separated list of jar paths;
  2. `--packages` coordinates with SPARK_USE_PACKAGES=1 (settings.spark_use_packages)
     (needs Maven Central at start-up; versions from stack/pom.xml);
  3. the jars `make setup` fetched into <STACK_HOME>/jars/spark/.
Under `spark-submit` the driver JVM already exists, so the jars must come
from its own `--jars`/`--packages`; this module then only checks that the
classes are there.

It also caps how much Avro may allocate for one string/bytes field (see
settings.spark_avro_max_field_bytes): without the cap a corrupt length prefix
in a poison record makes the JVM die of OutOfMemoryError instead of the
record being dead-lettered.

Dates are proleptic Gregorian everywhere (Avro, Python, Cassandra), so the
session says so (`DATETIME_CONF`). Spark 3.5's defaults would otherwise make
one valid record a poison pill or a silently wrong row:
  * the rebase modes default to EXCEPTION: `to_avro` of a timestamp before
    1900-01-01Z (decode's length check) throws SparkUpgradeException and fails
    the batch again on every restart (Spark 4.0 changed the default, SPARK-46440);
  * without the Java 8 time API, rows reach the Cassandra connector as
    java.sql.Timestamp (hybrid Julian calendar): a date before 1582-10-15 is
    written shifted by days (year 1 lands two days early; checked on this stack).
"""

from __future__ import annotations

import logging
import os
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from py4j.protocol import Py4JJavaError

from core.settings import REPO_ROOT, Settings
from core.tls import TRUSTSTORE_PASSWORD, java_truststore
from spark.faults import SparkStalled, run_bounded

# Artifact name prefixes of the three connector jars the job cannot run without.
REQUIRED_ARTIFACTS = ("spark-sql-kafka-0-10_2.12-", "spark-avro_2.12-", "spark-cassandra-connector_2.12-")
# One class from each, to check the running JVM really has them.
REQUIRED_CLASSES = (
    "org.apache.spark.sql.kafka010.KafkaSourceProvider",
    "org.apache.spark.sql.avro.AvroDataToCatalyst",
    "com.datastax.spark.connector.cql.CassandraConnector",
)
AVRO_LIMIT_PROPERTIES = (
    "org.apache.avro.limits.string.maxLength",
    "org.apache.avro.limits.bytes.maxLength",
    "org.apache.avro.limits.collectionItems.maxLength",
)
POM = REPO_ROOT / "stack" / "pom.xml"
# How long SparkContext.stop() may take before the JVM is killed instead (a healthy stop takes a few seconds).
SPARK_STOP_TIMEOUT_SECONDS = 60.0

log = logging.getLogger("spark.stream_job")
# CORRECTED: read and write dates as they are (proleptic Gregorian), never rebase, never throw.
_REBASE_KEYS = (
    "spark.sql.avro.datetimeRebaseModeInWrite",
    "spark.sql.avro.datetimeRebaseModeInRead",
    "spark.sql.parquet.datetimeRebaseModeInWrite",
    "spark.sql.parquet.datetimeRebaseModeInRead",
    "spark.sql.parquet.int96RebaseModeInWrite",
    "spark.sql.parquet.int96RebaseModeInRead",
    "spark.sql.legacy.avro.datetimeRebaseModeInWrite",
    "spark.sql.legacy.avro.datetimeRebaseModeInRead",
    "spark.sql.legacy.parquet.datetimeRebaseModeInWrite",
    "spark.sql.legacy.parquet.datetimeRebaseModeInRead",
    "spark.sql.legacy.parquet.int96RebaseModeInWrite",
    "spark.sql.legacy.parquet.int96RebaseModeInRead",
)
# The plan text Spark makes for every query's start event (the SQL tab, the event log): "formatted"
# (the default) prints each node's details besides the tree, which for the decode's wide CASE of
# from_avro expressions cost about a tenth of the job's CPU per micro-batch (a JFR profile).
PLAN_TEXT_CONF = {"spark.sql.ui.explainMode": "simple"}

DATETIME_CONF = {
    **{key: "CORRECTED" for key in _REBASE_KEYS},
    # Timestamps leave Catalyst as java.time.Instant (proleptic), not java.sql.Timestamp (Julian before 1582).
    "spark.sql.datetime.java8API.enabled": "true",
}


class MissingJarsError(RuntimeError):
    """The connector jars are not where the session expects them."""


class AvroLimitError(RuntimeError):
    """The driver JVM decodes Avro without a field-size cap, so a poison record could kill it."""


def fetched_jars(settings: Settings) -> list[str]:
    """The jars of <stack_home>/jars/spark, checked to contain the three connectors."""
    folder = Path(settings.stack_home) / "jars" / "spark"
    jars = sorted(str(path) for path in folder.glob("*.jar"))
    names = [Path(jar).name for jar in jars]
    missing = [prefix.rstrip("-") for prefix in REQUIRED_ARTIFACTS if not any(n.startswith(prefix) for n in names)]
    if missing:
        raise MissingJarsError(
            f"Spark connector jars missing from {folder}: {', '.join(missing)}; run `make setup` "
            "(or `python -m stack fetch`), set SPARK_JARS to your own jars, or SPARK_USE_PACKAGES=1 to use --packages"
        )
    return jars


def configured_jars(settings: Settings) -> list[str]:
    """SPARK_JARS split and checked: a typo should fail here, not as a ClassNotFoundException later."""
    jars = [jar.strip() for jar in (settings.spark_jars or "").split(",") if jar.strip()]
    absent = [jar for jar in jars if not Path(jar).is_file()]
    if absent:
        raise MissingJarsError(f"SPARK_JARS names files that do not exist: {', '.join(absent)}")
    return jars


def package_coordinates(pom: Path = POM) -> list[str]:
    """Maven coordinates for `--packages`, versions read from stack/pom.xml so they cannot drift."""
    import pyspark

    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    props = ET.parse(pom).getroot().find("m:properties", ns)
    connector = props.find("m:spark.cassandra.connector.version", ns).text
    return [
        f"org.apache.spark:spark-sql-kafka-0-10_2.12:{pyspark.__version__}",
        f"org.apache.spark:spark-avro_2.12:{pyspark.__version__}",
        f"com.datastax.spark:spark-cassandra-connector_2.12:{connector}",
    ]


def avro_limit_java_options(settings: Settings) -> str:
    """`-D` options that make Avro throw (caught by from_avro PERMISSIVE) instead of allocating gigabytes."""
    limit = settings.spark_avro_max_field_bytes
    return " ".join(f"-D{prop}={limit}" for prop in AVRO_LIMIT_PROPERTIES)


def cassandra_conf(settings: Settings) -> dict[str, str]:
    """The connector's connection settings; credentials only when set."""
    conf = {
        "spark.cassandra.connection.host": settings.cassandra_hosts,
        "spark.cassandra.connection.port": str(settings.cassandra_port),
        "spark.sql.extensions": "com.datastax.spark.connector.CassandraSparkExtensions",
        # The connector retries a failed statement 60 times by default, which hides an outage for
        # minutes inside one task; the job rides out outages itself, batch-wide (spark/faults.py).
        "spark.cassandra.query.retry.count": "3",
    }
    if settings.cassandra_username:
        conf["spark.cassandra.auth.username"] = settings.cassandra_username
        conf["spark.cassandra.auth.password"] = (
            settings.cassandra_password.get_secret_value() if settings.cassandra_password else ""
        )
    if settings.cassandra_ssl:
        conf["spark.cassandra.connection.ssl.enabled"] = "true"
        if settings.cassandra_ssl_ca_location:
            # The connector reads only a Java truststore: made from the same PEM CA the Python driver uses.
            # Without a CA, the JVM's default truststore applies. On a cluster the path must exist on the executors too.
            conf["spark.cassandra.connection.ssl.trustStore.path"] = str(java_truststore(settings.cassandra_ssl_ca_location, "CASSANDRA_SSL_CA_LOCATION"))
            conf["spark.cassandra.connection.ssl.trustStore.password"] = TRUSTSTORE_PASSWORD
            conf["spark.cassandra.connection.ssl.trustStore.type"] = "PKCS12"
    return conf


def jvm_already_running() -> bool:
    """True under spark-submit (or after an earlier session): JVM options and jars are fixed by then."""
    from pyspark import SparkContext

    # spark-submit hands its JVM's port to the Python driver in this variable (pyspark's own handshake, not a setting).
    return SparkContext._gateway is not None or "PYSPARK_GATEWAY_PORT" in os.environ


def session_conf(settings: Settings, app_name: str, master: str | None, jvm_running: bool | None = None) -> dict[str, str]:
    """Every Spark setting the pipeline relies on, as one dict; launch-time ones only when we launch the JVM."""
    launching = not (jvm_already_running() if jvm_running is None else jvm_running)
    java_options = avro_limit_java_options(settings)
    conf = {
        "spark.app.name": app_name,
        "spark.sql.shuffle.partitions": str(settings.spark_shuffle_partitions),
        "spark.sql.session.timeZone": "UTC",
        "spark.ui.showConsoleProgress": "false",
        # Executors on a standalone cluster start after the session, so they always get this.
        "spark.executor.extraJavaOptions": java_options,
        "spark.pyspark.python": sys.executable,
        **DATETIME_CONF,
        **PLAN_TEXT_CONF,
        **cassandra_conf(settings),
    }
    if master or launching:
        conf["spark.master"] = master or settings.spark_master
    if launching:
        conf["spark.driver.extraJavaOptions"] = java_options
        if settings.spark_jars:
            conf["spark.jars"] = ",".join(configured_jars(settings))
        elif settings.spark_use_packages:
            conf["spark.jars.packages"] = ",".join(package_coordinates())
        else:
            conf["spark.jars"] = ",".join(fetched_jars(settings))
    return conf


def check_connector_classes(spark) -> None:
    """Fail at start-up, with the fix, when the driver cannot load a connector class."""
    jvm = spark._jvm
    loader = jvm.org.apache.spark.util.Utils.getContextOrSparkClassLoader()
    for name in REQUIRED_CLASSES:
        try:
            jvm.java.lang.Class.forName(name, False, loader)
        except Py4JJavaError as exc:  # ClassNotFoundException
            raise MissingJarsError(
                f"the Spark driver cannot load {name}: pass the connector jars, e.g. "
                "`spark-submit --jars $(ls .stack/jars/spark/*.jar | paste -sd,) ...` after `make setup`"
            ) from exc


def ensure_avro_limits(spark, settings: Settings) -> None:
    """Make sure the driver JVM (the executor in local mode) caps Avro field sizes.

    A JVM started by this module already has the `-D` options. Under
    spark-submit we set the system properties now, which works as long as
    nothing has decoded Avro yet (Avro reads them once); then we check the cap
    is really in force by asking Avro to accept a length just above it.
    """
    jvm = spark._jvm
    limit = settings.spark_avro_max_field_bytes
    for prop in AVRO_LIMIT_PROPERTIES:
        if jvm.java.lang.System.getProperty(prop) is None:
            jvm.java.lang.System.setProperty(prop, str(limit))
    try:
        jvm.org.apache.avro.SystemLimitException.checkMaxStringLength(limit + 1)
    except Py4JJavaError as exc:
        if exc.java_exception.getClass().getName() == "org.apache.avro.SystemLimitException":
            return  # the refusal we asked for: the cap is in force
        raise
    raise AvroLimitError(
        f"Avro in the driver JVM accepts strings longer than {limit} bytes, so a corrupt record can exhaust the heap: "
        f"start the driver with --driver-java-options '{avro_limit_java_options(settings)}'"
    )


def submitted_executor_java_options() -> str:
    """spark.executor.extraJavaOptions as given to spark-submit (empty when this process launches the JVM)."""
    from pyspark import SparkConf, SparkContext

    if not jvm_already_running():
        return ""
    SparkContext._ensure_initialized()  # connect to spark-submit's JVM so SparkConf sees its settings
    return SparkConf().get("spark.executor.extraJavaOptions", "") or ""


def build_spark_session(settings: Settings, app_name: str, master: str | None = None, extra_conf: dict[str, str] | None = None):
    """A SparkSession with the connectors, Cassandra connection and Avro caps configured and checked."""
    from pyspark.sql import SparkSession

    conf = session_conf(settings, app_name, master)
    submitted, ours = submitted_executor_java_options(), conf["spark.executor.extraJavaOptions"]
    if submitted:  # keep the user's executor options, add the Avro caps once
        conf["spark.executor.extraJavaOptions"] = submitted if ours in submitted else f"{submitted} {ours}"
    builder = SparkSession.builder
    for key, value in {**conf, **(extra_conf or {})}.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    check_connector_classes(spark)
    ensure_avro_limits(spark, settings)
    quiet_avro_nullability_warning(spark)
    return spark


def quiet_avro_nullability_warning(spark) -> None:
    """Silence spark-avro's per-task warning about nullable columns written with a non-nullable schema.

    decode's length check re-encodes each decoded row with `to_avro` and its
    writer schema; PERMISSIVE decoding makes every column nullable, so Spark
    warns once per task (hundreds of lines per batch) about a case the check
    handles: a null in a required field already marks the row as dead.
    Applies to the driver JVM, which in local mode runs the tasks too.
    """
    jvm = spark.sparkContext._jvm
    jvm.org.apache.logging.log4j.core.config.Configurator.setLevel(
        "org.apache.spark.sql.avro.AvroSerializer", jvm.org.apache.logging.log4j.Level.ERROR
    )


def stop_spark(spark: Any, timeout: float = SPARK_STOP_TIMEOUT_SECONDS) -> bool:
    """spark.stop(), bounded: False when it hung and the JVM this process started was killed instead.

    SparkContext.stop() joins the listener bus's threads without a timeout,
    so one listener that never returns holds the stop forever. A CI run saw
    it: the job's error was printed, the stop hung, and a job that never
    exits is never restarted by its supervisor. Killing the JVM loses
    nothing the stop would have kept: the checkpoint replays an uncommitted
    batch either way.
    """
    try:
        run_bounded(spark.stop, timeout, "Spark's stop")
    except SparkStalled:
        jvm = getattr(spark.sparkContext._gateway, "proc", None)  # None when spark-submit started this process
        log.error("Spark did not stop within %.0f s (a listener or shutdown step hung); killing its JVM%s",
                  timeout, f" (pid {jvm.pid})" if jvm is not None else "")
        if jvm is not None:
            jvm.kill()
            jvm.wait(30)
        return False
    return True
