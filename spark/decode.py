"""Decode Confluent-framed Avro Kafka records into reader-schema rows, or say why not.

Input: the Kafka source's columns (key, value, topic, partition, offset,
timestamp, headers). Output of `decode`: the same rows plus `schema_id`,
`user` (a struct in the reader schema's shape) and `reason`, which is null
for a good row and otherwise the human-readable reason the record goes to the
dead-letter topic. No row is dropped and no row raises: every failure mode of
a single record becomes a reason.

Why the header is parsed by hand: open-source Spark's `from_avro` knows nothing
of the Confluent wire format (byte 0 magic 0x00, bytes 1-4 the writer schema
id, big-endian) and nothing of the registry, so the 5-byte header is split
off with SQL expressions and each record is decoded with its OWN writer
schema, resolved into the reader schema. Decoding everything with the latest
schema would silently shift fields of records written with an older one.

What `from_avro(..., {"mode": "PERMISSIVE"})` really does in Spark 3.5.7
(checked on this machine, see tests/spark/test_decode.py):
  * a failed decode gives a struct whose fields are all null, NOT a null
    struct, so "decode failed" is tested as "a required field is null";
  * truncated payloads fail (Avro hits end of input) -> dead-lettered;
  * trailing bytes are ignored: a record written with v2 but labelled with
    v1's id decodes "successfully" into v1 minus the extra field. So every
    record is read a second time with its writer schema plus one more field,
    a 1-byte `fixed`, projected onto that field alone: Avro skips the
    writer's fields (no values are built) and the extra byte can be read
    only if one is left after the record. Exact for any encoding, and about
    half the cost of re-encoding each record with `to_avro` and comparing
    lengths, which this replaced;
  * `to_avro`, which the job no longer calls, throws on a timestamp before
    1900 unless the session's rebase modes are CORRECTED; spark/session.py
    still sets them and `decode` still checks, for anything that encodes;
  * a corrupt length prefix makes Avro allocate up to 2 GB: OutOfMemoryError
    is fatal and kills the JVM, PERMISSIVE or not. spark/session.py sets
    Avro's own limits (org.apache.avro.limits.*) so it throws a catchable
    SystemLimitException instead;
  * a writer schema that cannot be resolved into the reader also just gives
    all-null rows, so resolvability is checked once per schema id with Avro's
    SchemaCompatibility in the driver, and such records get their own reason;
  * flipped bits inside string or number content decode into plausible wrong
    values: Avro has no checksum, and nothing downstream can detect that.
    Such bits in the `id` (logicalType uuid, not validated by Spark) are
    caught by a UUID check, because Cassandra would fail the whole batch.
"""

from __future__ import annotations

import json
from functools import reduce
from typing import Any

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.avro.functions import from_avro
from py4j.protocol import Py4JJavaError

from spark.registry import CompatibilityCheck, SchemaSnapshot

HEADER_BYTES = 5
MAX_SCHEMA_ID = 2**31 - 1
# The settings to_avro reads; EXCEPTION (Spark 3.5's default) throws on timestamps before 1900.
REBASE_WRITE_KEYS = ("spark.sql.avro.datetimeRebaseModeInWrite",)
# The field and type names the trailing-byte check appends to a writer schema (no user schema uses them).
TRAILING_FIELD = "userstream_trailing_byte"
TRAILING_TYPE = "UserstreamTrailingByte"
UUID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"


def from_avro_options(reader_schema: str | None = None) -> dict[str, str]:
    """PERMISSIVE so one bad record cannot fail the batch; dates as written (proleptic Gregorian, like Python and Cassandra)."""
    options = {"mode": "PERMISSIVE", "datetimeRebaseMode": "CORRECTED"}
    if reader_schema is not None:
        options["avroSchema"] = reader_schema
    return options


def with_header(df: DataFrame) -> DataFrame:
    """Add `header_error` (why the header is unusable) and `schema_id` (null unless the header is valid)."""
    header_error, schema_id = _header_columns()
    return df.select("*", header_error.alias("header_error"), schema_id.alias("schema_id"))


def _header_columns() -> tuple[Column, Column]:
    """The header's two columns; one select instead of two withColumn (each is a round of JVM analysis per batch)."""
    value = F.col("value")
    size = F.length(value)
    magic_hex = F.lower(F.hex(F.substring(value, 1, 1)))
    raw_id = F.conv(F.hex(F.substring(value, 2, 4)), 16, 10).cast("bigint")
    header_error = (
        F.when(value.isNull(), F.lit("null value (tombstone): nothing to decode"))
        .when(F.col("key").isNull(), F.lit("null key: every user record is keyed by its id"))
        .when(size < HEADER_BYTES, F.format_string("too short: %d bytes, the Confluent wire format needs a 5-byte header", size))
        .when(magic_hex != "00", F.concat(F.lit("wrong magic byte 0x"), magic_hex, F.lit(": not Confluent wire format")))
        .when(raw_id > MAX_SCHEMA_ID, F.format_string("invalid schema id %d: above the int32 range", raw_id))
    )
    return header_error, F.when(header_error.isNull(), raw_id.cast("int"))


def required_fields(schema_json: str) -> list[str]:
    """Fields that can never be null in a successfully decoded record (not a union with null)."""
    fields = json.loads(schema_json)["fields"]
    return [f["name"] for f in fields if not (isinstance(f["type"], list) and "null" in f["type"])]


def decode_failed(struct: Column, schema_json: str) -> Column:
    """True where PERMISSIVE from_avro gave up: it returns a struct of nulls, so a required field is null."""
    required = required_fields(schema_json)
    if required:
        return struct[required[0]].isNull()
    # Every field nullable: only "all fields null" is indistinguishable from a failed decode.
    return reduce(lambda a, b: a & b, [struct[f["name"]].isNull() for f in json.loads(schema_json)["fields"]])


def uuid_fields(schema_json: str) -> list[tuple[str, bool]]:
    """(name, nullable) of fields with logicalType uuid: Spark decodes them as plain strings."""
    result = []
    for f in json.loads(schema_json)["fields"]:
        kind, nullable = f["type"], False
        if isinstance(kind, list):
            nullable = "null" in kind
            kind = next((k for k in kind if k != "null"), None)
        if isinstance(kind, dict) and kind.get("logicalType") == "uuid":
            result.append((f["name"], nullable))
    return result


def with_trailing_byte(schema_json: str) -> str:
    """The writer schema with one more field at the end, a 1-byte fixed: readable only if a byte follows the record."""
    schema = json.loads(schema_json)
    extra = {"name": TRAILING_FIELD, "type": {"type": "fixed", "name": TRAILING_TYPE, "size": 1}}
    return json.dumps({**schema, "fields": [*schema["fields"], extra]})


def trailing_byte_reader(schema_json: str) -> str:
    """The reader for `with_trailing_byte`: the same record name (Avro resolves by name) with only the extra field."""
    schema = json.loads(with_trailing_byte(schema_json))
    return json.dumps({**schema, "fields": schema["fields"][-1:]})


def without_docs(schema_json: str) -> str:
    """The schema without its `doc` strings, which Avro's resolution ignores.

    Why: each schema is carried by several expressions of every batch's plan,
    which Spark serializes into each stage and prints into each query's
    description; the user schema's docs are 60% of its text.
    """
    def strip(node: Any) -> Any:
        if isinstance(node, dict):
            return {key: strip(value) for key, value in node.items() if key != "doc"}
        if isinstance(node, list):
            return [strip(value) for value in node]
        return node

    return json.dumps(strip(json.loads(schema_json)), separators=(",", ":"))


def _payload() -> Column:
    """The Avro binary after the 5-byte header."""
    return F.expr(f"substring(value, {HEADER_BYTES + 1})")


def _by_schema_id(branches: dict[int, Column]) -> Column:
    """CASE schema_id WHEN id THEN expr ... END: each record evaluates only its own id's branch."""
    column = None
    for schema_id, expr in sorted(branches.items()):
        condition = F.col("schema_id") == schema_id
        column = F.when(condition, expr) if column is None else column.when(condition, expr)
    return column


def _id_reasons(ids: dict[int, str]) -> Column | None:
    """A per-id reason (unknown/incompatible ids), or None when there are none."""
    return _by_schema_id({sid: F.lit(reason) for sid, reason in ids.items()}) if ids else None


def require_corrected_rebase(spark: Any) -> None:
    """Refuse to decode in a session whose `to_avro` would throw on a valid pre-1900 timestamp (see spark/session.py)."""
    wrong = {key: spark.conf.get(key, None) for key in REBASE_WRITE_KEYS}
    wrong = {key: value for key, value in wrong.items() if (value or "").upper() != "CORRECTED"}
    if wrong:
        raise RuntimeError(
            f"this SparkSession has {wrong}: to_avro would throw on dates before 1900 and stop the stream; "
            "build the session with spark.session.build_spark_session (it sets them to CORRECTED)"
        )


def decode(framed: DataFrame, snapshot: SchemaSnapshot, registry_url: str = "the registry") -> DataFrame:
    """Decode every header-valid record with its own writer schema into the reader schema; set `reason` for the rest.

    `framed` comes from `with_header`. A stream decodes batch after batch with
    one snapshot: it keeps a `Decoder` instead, which builds the columns once.
    """
    return Decoder(snapshot, registry_url).decode(framed)


class Decoder:
    """The decode's columns for one schema snapshot, built once and applied to every batch decoded with it.

    Why kept: building them is some hundred py4j calls (the schemas' JSON
    crosses to the JVM in every from_avro), a few hundred milliseconds of
    each micro-batch's fixed cost when rebuilt per batch.
    """

    def __init__(self, snapshot: SchemaSnapshot, registry_url: str = "the registry"):
        self.snapshot = snapshot
        self.registry_url = registry_url
        # Built at first use, in a live Spark session.
        self._columns: tuple[Column, Column, Column] | None = None
        self._header: tuple[Column, Column] | None = None
        self._good: tuple[Column, list[Column]] | None = None

    def with_header(self, df: DataFrame) -> DataFrame:
        """`with_header`, with columns built once."""
        if self._header is None:
            self._header = _header_columns()
        header_error, schema_id = self._header
        return df.select("*", header_error.alias("header_error"), schema_id.alias("schema_id"))

    def good_rows(self, decoded: DataFrame) -> DataFrame:
        """`good_rows`, with columns built once."""
        if self._good is None:
            self._good = _good_row_columns()
        good, columns = self._good
        return decoded.where(good).select(*columns)

    def decode(self, framed: DataFrame) -> DataFrame:
        """`framed` plus `user` and `reason`; one pass (the per-id decodes are branches of one CASE expression)."""
        require_corrected_rebase(framed.sparkSession)
        user, trailing, reason = self.columns()
        stage = framed.select("*", user.alias("user"), trailing.alias("_trailing"))
        return stage.select(*[F.col(name) for name in framed.columns], "user", reason.alias("reason"))

    def columns(self) -> tuple[Column, Column, Column]:
        """The `user` struct, the trailing-byte probe and the `reason`, built once (bench.sink_steps times each alone)."""
        if self._columns is None:
            self._columns = self._build()
        return self._columns

    def _build(self) -> tuple[Column, Column, Column]:
        """The `user` struct, the trailing-byte probe, and the `reason` over both."""
        snapshot = self.snapshot
        reader = snapshot.reader
        writers = {sid: without_docs(schema) for sid, schema in {**snapshot.writers, reader.id: reader.schema}.items()}
        payload = _payload()

        # Step 1: decode into the reader shape.
        reader_options = from_avro_options(without_docs(reader.schema))
        user = _by_schema_id({sid: from_avro(payload, schema, reader_options) for sid, schema in writers.items()})

        # Step 2: is a byte left after the record? (Null when not, or when the record itself does not decode.)
        trailing = {sid: from_avro(payload, with_trailing_byte(schema), from_avro_options(trailing_byte_reader(schema)))
                    for sid, schema in writers.items()}
        trailing = _by_schema_id(trailing)[TRAILING_FIELD]

        # Step 3: the first failing check names the reason; null means the row is good.
        sid = F.col("schema_id")
        payload_size = F.length(F.col("value")) - HEADER_BYTES
        reader_name = f"{reader.subject} version {reader.version} (id {reader.id})" if reader.subject else f"reader schema id {reader.id}"
        reason = F.when(F.col("header_error").isNotNull(), F.col("header_error"))
        unknown = {s: f"unknown schema id {s}: not in {self.registry_url}" for s in snapshot.unknown}
        incompatible = {s: f"schema id {s} cannot be read as {reader_name}: {why}" for s, why in snapshot.incompatible.items()}
        for reasons in (unknown, incompatible):
            if reasons:
                reason = reason.when(sid.isin(list(reasons)), _id_reasons(reasons))
        reason = reason.when(
            F.col("user").isNull() | decode_failed(F.col("user"), reader.schema),
            F.format_string("corrupt or truncated Avro for schema id %d", sid),
        ).when(
            F.col("_trailing").isNotNull(),
            F.format_string(
                "Avro for schema id %d ends before the %d-byte payload does: trailing bytes, probably written with another schema",
                sid, payload_size,
            ),
        )
        for name, nullable in uuid_fields(reader.schema):
            bad = ~F.col(f"user.{name}").rlike(UUID_PATTERN)
            reason = reason.when(bad if not nullable else (F.col(f"user.{name}").isNotNull() & bad),
                                 F.concat(F.lit(f"field {name} is not a UUID: "), F.col(f"user.{name}")))
        if any(f["name"] == "id" for f in reader.fields):
            # The producer keys every record by its user id so that Kafka keeps one user's records in one
            # partition, in order; a record under another key can overtake that user's newer records, and
            # the upsert would then keep stale data. A producer bug, so the record is set aside, not written.
            key = F.col("key").cast("string")
            reason = reason.when(key != F.col("user.id"),
                                 F.concat(F.lit("Kafka key "), key, F.lit(" is not the record's id "), F.col("user.id")))
        return user, trailing, reason


def good_rows(decoded: DataFrame) -> DataFrame:
    """The rows to write: reader fields flattened, plus which schema and Kafka position each came from."""
    good, columns = _good_row_columns()
    return decoded.where(good).select(*columns)


def _good_row_columns() -> tuple[Column, list[Column]]:
    """The filter and the columns of `good_rows`."""
    return F.col("reason").isNull(), [
        F.col("user.*"),
        F.col("schema_id"),
        F.col("topic").alias("kafka_topic"),
        F.col("partition").alias("kafka_partition"),
        F.col("offset").alias("kafka_offset"),
        F.col("timestamp").alias("kafka_timestamp"),
    ]


def dead_rows(decoded: DataFrame) -> DataFrame:
    """The rows to dead-letter, with everything the dead-letter sink needs."""
    return decoded.where(F.col("reason").isNotNull())


def avro_compatibility(spark: Any) -> CompatibilityCheck:
    """A check that asks the JVM's own Avro (the library that will decode) whether writer data resolves into the reader."""
    jvm = spark._jvm

    def check(reader_schema: str, writer_schema: str) -> str | None:
        parse = lambda text: jvm.org.apache.avro.Schema.Parser().parse(text)  # noqa: E731 - fresh parser per schema: names are per-parser
        try:
            result = jvm.org.apache.avro.SchemaCompatibility.checkReaderWriterCompatibility(parse(reader_schema), parse(writer_schema))
        except Py4JJavaError as exc:  # SchemaParseException: the registry gave us something Avro cannot parse
            return f"Avro cannot parse the schema: {exc.java_exception.getMessage()}"
        if result.getType().toString() == "COMPATIBLE":
            return None
        problems = result.getResult().getIncompatibilities()
        return "; ".join(f"{p.getType().toString()} at {p.getLocation()}: {p.getMessage()}" for p in problems)

    return check
