"""Where decoded batches go: good rows to Cassandra, poison records to the dead-letter topic.

Both sinks have the same shape, `write(df)`, and are called from the stream
job's foreachBatch (spark/batch.py). foreachBatch is at-least-once (a batch
can be replayed after a crash), so both writes must tolerate replays:
Cassandra writes are upserts by primary key, and a replayed dead letter is a
duplicate a human can see (same source topic/partition/offset header), not a
loss. Columns whose name starts with `_` (helper columns such as a row
number) are never written to Cassandra.
"""

from __future__ import annotations

import json
import logging
import time

from pyspark.errors import AnalysisException
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from core import dead_letter
from core.cassandra_schema import column_problems, columns_for_schema, connect, live_columns
from core.settings import Settings
from spark.kafka_options import kafka_options
from spark.registry import RegisteredSchema

log = logging.getLogger(__name__)

KEY = "id"
# Columns the job writes besides the reader schema's fields (see cassandra/schema.cql).
PROVENANCE_COLUMNS = {
    "schema_id": "int",
    "kafka_topic": "text",
    "kafka_partition": "int",
    "kafka_offset": "bigint",
    "kafka_timestamp": "timestamp",
}
CASSANDRA_FORMAT = "org.apache.spark.sql.cassandra"
# How long the connector may take to hear of a table or column the driver already sees.
CONNECTOR_SCHEMA_WAIT_SECONDS = 30.0
# A connection setting of the connector's: part of the key its cached driver sessions are found by.
CONNECT_TIMEOUT_KEY = "spark.cassandra.connection.timeoutMS"
CONNECT_TIMEOUT_DEFAULT_MS = 5000


# A dead letter is at most DEAD_LETTER_MAX_VALUE_BYTES of its record plus headers: let the topic's
# max.message.bytes decide, not the Java producer's own 1 MiB request cap (buffer.memory must hold one
# record). Compressed like the producer's batches: a record the source topic took compressed (a 16 MiB
# row of repeated text) is then as small in the dead-letter topic.
DEAD_LETTER_PRODUCER_OPTIONS = {
    "kafka.max.request.size": str(64 * 1024 * 1024),
    "kafka.buffer.memory": str(128 * 1024 * 1024),
    "kafka.compression.type": "zstd",
}


class SchemaMismatchError(RuntimeError):
    """The reader schema has fields the Cassandra table cannot hold; writing would fail or lose data."""


def latest_per_key(rows: DataFrame) -> DataFrame:
    """One row per id, the last one Kafka has: within a batch the connector's write order is not the Kafka order.

    "Last" is the highest position, never the timestamp: producers key by id,
    so one id's records are in one partition, in offset order, and a record's
    timestamp is the producer's clock, which can go backwards. Partition
    breaks a tie only if a key ever moved partitions (more partitions added).
    Across batches the same rule holds, since later batches have later offsets.
    """
    newest_first = Window.partitionBy(KEY).orderBy(F.col("kafka_offset").desc(), F.col("kafka_partition").desc())
    return rows.withColumn("_rank", F.row_number().over(newest_first)).where("_rank = 1").drop("_rank")


def wait_for_connector(spark: SparkSession, keyspace: str, table: str, columns: set[str],
                       timeout: float = CONNECTOR_SCHEMA_WAIT_SECONDS, options: dict[str, str] | None = None) -> None:
    """Wait until the connector's own metadata has a table and columns that Cassandra already has.

    The connector keeps a long-lived driver session of its own, which hears
    of a new table or an ALTER TABLE through debounced schema events; a
    write in that window fails the batch on an unknown table or column.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            seen = set(spark.read.format(CASSANDRA_FORMAT).options(keyspace=keyspace, table=table)
                       .options(**(options or {})).load().columns)
        except AnalysisException as exc:
            if "Couldn't find" not in str(exc):
                raise
            seen = set()
        missing = columns - seen
        if not missing:
            return
        if time.monotonic() > deadline:
            raise SchemaMismatchError(
                f"Cassandra has {keyspace}.{table} with {', '.join(sorted(missing))}, but the Spark "
                f"Cassandra connector still does not see them after {timeout:.0f} s: "
                "check schema agreement (`nodetool describecluster`), then restart the job"
            )
        log.info("waiting for the Cassandra connector to see %s", ", ".join(sorted(missing)))
        time.sleep(1)


class CassandraSink:
    """Upserts decoded rows into settings.cassandra_keyspace.cassandra_table through the Spark Cassandra connector."""

    def __init__(self, settings: Settings, spark: SparkSession | None = None):
        self.settings = settings
        self.spark = spark  # when given, check_columns also waits for the connector to see the columns
        self.keyspace = settings.cassandra_keyspace
        self.table = settings.cassandra_table
        self.session_generation = 0  # bumped by renew_session(): every connector call then uses a new driver session
        self.saves = 0  # connector writes started: a batch tells from it whether its write went in at the first attempt

    def needed_columns(self, reader: RegisteredSchema) -> dict[str, str]:
        return {**columns_for_schema(json.loads(reader.schema)), **PROVENANCE_COLUMNS}

    def check_columns(self, reader: RegisteredSchema) -> None:
        """Fail fast when the table cannot hold the reader schema: the evolution order is ALTER TABLE, then register."""
        with connect(self.settings) as session:
            live = live_columns(session, self.keyspace, self.table)
        where = f"{self.keyspace}.{self.table}"
        if live is None:
            raise SchemaMismatchError(f"table {where} does not exist: run `make cassandra-schema` (python -m core.cassandra_schema)")
        missing, mismatched = column_problems(self.needed_columns(reader), live)
        what = f"reader schema {reader.subject} version {reader.version} (id {reader.id})"
        if missing:
            adds = "; ".join(f"ALTER TABLE {where} ADD {name} {kind}" for name, kind in missing.items())
            raise SchemaMismatchError(
                f"{where} has no column for {', '.join(missing)} of {what}. Add the columns first "
                f"(`python -m core.cassandra_schema --add-columns-for <new schema .avsc>`, or in cqlsh: {adds}), "
                "then restart the job; the batch was not committed and will be decoded again"
            )
        if mismatched:
            raise SchemaMismatchError(
                f"{where} column types do not fit {what}: "
                + ", ".join(f"{name} is {live_type}, the schema needs {kind}" for name, (kind, live_type) in mismatched.items())
            )
        if self.spark is not None:
            wait_for_connector(self.spark, self.keyspace, self.table, set(self.needed_columns(reader)),
                               options=self.session_options())
        log.info("%s can hold %s", where, what)

    def write(self, rows: DataFrame, unique_keys: bool = False) -> None:
        """Upsert one row per id: a replayed batch rewrites the same rows with the same values.

        `unique_keys` says the caller counted no id twice among `rows`: the
        dedupe (a shuffle of every row) would change nothing, so it is skipped.
        """
        self.save(rows if unique_keys else latest_per_key(rows))

    def write_options(self) -> dict[str, str]:
        """The connector's write tuning, per write: a submitted job's session conf is not ours to set."""
        return {"spark.cassandra.output.concurrent.writes": str(self.settings.spark_cassandra_concurrent_writes),
                **self.session_options()}

    def renew_session(self) -> None:
        """From now on, reach Cassandra through a new driver session of the connector's (after an outage).

        Why: one failed schema refresh ("Control channel not available", while
        Cassandra is away) leaves a driver session's schema refresh stuck for
        good: the Java driver (4.18, MetadataManager.startSchemaRequest) never
        clears its in-flight refresh on that path, and the connector refreshes
        the schema on every write, so the next write waits forever (seen in
        the fault suite's 30 s outage: the job hung). The connector keeps one
        cached session per connection configuration and cannot be told to
        drop one that is in use, so the job moves to another configuration:
        the connect timeout plus one millisecond per renewal. Idle sessions
        are closed too.
        """
        self.session_generation += 1
        if self.spark is not None:
            self.spark._jvm.com.datastax.spark.connector.cql.CassandraConnector.evictCache()

    def session_options(self) -> dict[str, str]:
        """The per-call connector options that select this generation's driver session (none at first)."""
        if not self.session_generation:
            return {}
        base = int(self.spark.conf.get(CONNECT_TIMEOUT_KEY, str(CONNECT_TIMEOUT_DEFAULT_MS)) if self.spark else CONNECT_TIMEOUT_DEFAULT_MS)
        return {CONNECT_TIMEOUT_KEY: str(base + self.session_generation)}

    def save(self, rows: DataFrame) -> None:
        """Upsert these rows as they are (already one per id); `_` columns are left out."""
        helpers = [name for name in rows.columns if name.startswith("_")]
        self.saves += 1
        (
            # drop, not a select of the rest: each name in a select is a py4j call that looks up a JVM class.
            (rows.drop(*helpers) if helpers else rows)
            .write.format(CASSANDRA_FORMAT)
            .options(keyspace=self.keyspace, table=self.table)
            .options(**self.write_options())
            .mode("append")
            .save()
        )


class DeadLetterSink:
    """Publishes records that cannot go on to settings.dead_letter_topic: original key and bytes, why in headers.

    Input columns: key, value, headers (as consumed), topic, partition,
    offset, schema_id (null when the header had none) and reason.
    """

    def __init__(self, settings: Settings):
        self.settings = settings
        self.topic = settings.dead_letter_topic

    def value_and_headers(self, stage: str = dead_letter.DECODE) -> tuple[F.Column, F.Column]:
        """The record's bytes, cut to `dead_letter_max_value_bytes` if need be, and the dead letter's headers.

        A cut value gets `dead_letter.original_bytes` and says so in its reason:
        a dead letter the dead-letter topic refused (RecordTooLargeException)
        would fail its batch on every attempt, a crash loop.
        """
        cap = self.settings.dead_letter_max_value_bytes
        size = F.length(F.col("value"))
        cut = F.coalesce(size > cap, F.lit(False))
        value = F.when(cut, F.substring(F.col("value"), 1, cap)).otherwise(F.col("value"))
        reason = F.when(cut, F.concat(F.col("reason"), F.format_string(
            "; the record is %d bytes, only its first %d are kept here (DEAD_LETTER_MAX_VALUE_BYTES): "
            "the whole record is at dead_letter.source", size, F.lit(cap)))).otherwise(F.col("reason"))
        return value, self.headers(stage, reason, F.when(cut, size.cast("string")))

    @staticmethod
    def headers(stage: str = dead_letter.DECODE, reason: F.Column | None = None,
                original_bytes: F.Column | None = None) -> F.Column:
        """Original headers (if any), then stage, reason, source, schema id (and full size) as core/dead_letter.py defines them."""
        def header(key: str, value: F.Column) -> F.Column:
            return F.struct(F.lit(key).alias("key"), value.cast("binary").alias("value"))

        source = F.concat_ws("/", F.col("topic"), F.col("partition").cast("string"), F.col("offset").cast("string"))
        ours = F.array(
            header(dead_letter.STAGE, F.lit(stage)),
            header(dead_letter.REASON, F.col("reason") if reason is None else reason),
            header(dead_letter.SOURCE, source),
            header(dead_letter.SCHEMA_ID, F.col("schema_id").cast("string")),
            header(dead_letter.ORIGINAL_BYTES, F.lit(None).cast("string") if original_bytes is None else original_bytes),
        )
        ours = F.filter(ours, lambda h: h["value"].isNotNull())  # no schema id header when the header had none
        no_headers = F.array().cast("array<struct<key:string,value:binary>>")
        return F.concat(F.coalesce(F.col("headers"), no_headers), ours)

    def write(self, dead: DataFrame, stage: str = dead_letter.DECODE) -> None:
        """Key and value byte-for-byte as consumed (up to the cap), so a fixed record can be replayed as is."""
        value, headers = self.value_and_headers(stage)
        (
            dead.select("key", value.alias("value"), headers.alias("headers"))
            .write.format("kafka")
            .options(**kafka_options(self.settings))
            .options(**DEAD_LETTER_PRODUCER_OPTIONS)
            .option("topic", self.topic)
            .save()
        )
