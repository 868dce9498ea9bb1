"""Create (or evolve) the Cassandra keyspace and table the Spark job writes to.

Usage:
    python -m core.cassandra_schema              # apply cassandra/schema.cql (make cassandra-schema)
    python -m core.cassandra_schema --dry-run    # print the CQL for the current settings, change nothing
    python -m core.cassandra_schema --add-columns-for schemas/user_v2.avsc [--dry-run]
                                                     # ALTER TABLE ADD the columns a new schema version needs

Keyspace, table and replication come from the settings (CASSANDRA_KEYSPACE,
CASSANDRA_TABLE, CASSANDRA_REPLICATION = "SimpleStrategy:1" or
"NetworkTopologyStrategy:dc1=3,dc2=2"). Applying is idempotent: statements use
IF NOT EXISTS, and columns the file has but an older live table lacks are
added. What cannot be fixed safely is raised, not ignored: a keyspace that
exists with another replication (changing it needs a repair), or a column
whose type differs from the file.

The Avro-to-CQL type mapping lives here (`cql_type`), so the CQL file, the
evolution helper and the Spark sink's column check agree on it.
"""

from __future__ import annotations

import argparse
import json
import re
import ssl
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from string import Template
from typing import Any

from core.security_hints import cassandra_hint
from core.settings import REPO_ROOT, Settings, load_settings

SCHEMA_FILE = REPO_ROOT / "cassandra" / "schema.cql"

# Unquoted CQL identifiers are folded to lower case; allowing only lower case
# means the name in the settings is the name in Cassandra.
_IDENTIFIER = re.compile(r"^[a-z][a-z0-9_]{0,47}$")
_COLUMN_LINE = re.compile(r"^\s*([a-z][a-z0-9_]*)\s+([a-z]+)(\s+PRIMARY\s+KEY)?\s*,?\s*$", re.IGNORECASE)

# Avro primitive / logical type -> CQL type. Anything else is refused rather
# than guessed, so a new field type is a deliberate decision.
_AVRO_TO_CQL = {
    "string": "text",
    "int": "int",
    "long": "bigint",
    "float": "float",
    "double": "double",
    "boolean": "boolean",
    "bytes": "blob",
}
_LOGICAL_TO_CQL = {
    "uuid": "uuid",
    "timestamp-millis": "timestamp",
    "timestamp-micros": "timestamp",
    "date": "date",
}


class CassandraSchemaError(RuntimeError):
    """The live keyspace or table cannot be brought in line with the file without a human."""


class CassandraUnavailable(RuntimeError):
    """Cassandra did not answer on the configured host and port."""


def validate_identifier(name: str, what: str) -> str:
    """Refuse names that would need quoting: they are pasted into CQL text."""
    if not _IDENTIFIER.match(name):
        raise ValueError(f"{what} {name!r} is not a plain lower-case CQL identifier ([a-z][a-z0-9_]*, at most 48 chars)")
    return name


def parse_replication(text: str) -> dict[str, Any]:
    """Turn "SimpleStrategy:1" or "NetworkTopologyStrategy:dc1=3,dc2=2" into a CQL replication map."""
    strategy, _, spec = text.partition(":")
    strategy, spec = strategy.strip(), spec.strip()
    if strategy == "SimpleStrategy":
        if not spec.isdigit() or int(spec) < 1:
            raise ValueError(f"replication {text!r}: SimpleStrategy needs a factor >= 1, e.g. 'SimpleStrategy:1'")
        return {"class": "SimpleStrategy", "replication_factor": int(spec)}
    if strategy == "NetworkTopologyStrategy":
        replication: dict[str, Any] = {"class": "NetworkTopologyStrategy"}
        for part in filter(None, (p.strip() for p in spec.split(","))):
            dc, _, factor = part.partition("=")
            dc, factor = dc.strip(), factor.strip()
            if not re.match(r"^[A-Za-z0-9_.-]+$", dc) or not factor.isdigit() or int(factor) < 1:
                raise ValueError(f"replication {text!r}: expected 'dc=factor' pairs, e.g. 'NetworkTopologyStrategy:dc1=3,dc2=2'")
            replication[dc] = int(factor)
        if len(replication) == 1:
            raise ValueError(f"replication {text!r}: NetworkTopologyStrategy needs at least one 'dc=factor'")
        return replication
    raise ValueError(f"replication {text!r}: expected 'SimpleStrategy:N' or 'NetworkTopologyStrategy:dc1=N,...'")


def replication_cql(replication: dict[str, Any]) -> str:
    """The CQL map literal for a replication dict."""
    items = ", ".join(f"'{key}': {value}" if isinstance(value, int) else f"'{key}': '{value}'" for key, value in replication.items())
    return "{" + items + "}"


def render_statements(settings: Settings, path: Path = SCHEMA_FILE) -> list[str]:
    """The schema file with keyspace, table and replication filled in, split into statements."""
    text = Template(path.read_text(encoding="utf-8")).substitute(
        keyspace=validate_identifier(settings.cassandra_keyspace, "keyspace"),
        table=validate_identifier(settings.cassandra_table, "table"),
        replication=replication_cql(parse_replication(settings.cassandra_replication)),
    )
    # Drop `--` comments and blank lines; a statement ends with ';' at the end of a line.
    lines = [line.split("--", 1)[0].rstrip() for line in text.splitlines()]
    body = "\n".join(line for line in lines if line.strip())
    return [stmt.strip() for stmt in re.split(r";[ \t]*$", body, flags=re.MULTILINE) if stmt.strip()]


def file_columns(statements: list[str]) -> dict[str, str]:
    """Column name -> CQL type from the CREATE TABLE statement of the rendered file."""
    create = next(s for s in statements if s.upper().startswith("CREATE TABLE"))
    body = create[create.index("(") + 1 : create.rindex(")")]
    columns = {}
    for line in body.splitlines():
        match = _COLUMN_LINE.match(line)
        if match:
            columns[match.group(1)] = match.group(2).lower()
        elif line.strip():
            raise CassandraSchemaError(f"{SCHEMA_FILE}: cannot read column definition {line.strip()!r}; keep one 'name type,' per line")
    return columns


def cql_type(avro_type: Any) -> str:
    """The CQL column type for an Avro field type; nullable unions map to their non-null branch."""
    if isinstance(avro_type, list):
        branches = [t for t in avro_type if t != "null"]
        if len(branches) != 1:
            raise ValueError(f"Avro union {avro_type} has no single CQL type: only ['null', T] is supported")
        return cql_type(branches[0])
    if isinstance(avro_type, dict):
        logical = avro_type.get("logicalType")
        if logical in _LOGICAL_TO_CQL:
            return _LOGICAL_TO_CQL[logical]
        return cql_type(avro_type["type"])
    if avro_type in _AVRO_TO_CQL:
        return _AVRO_TO_CQL[avro_type]
    raise ValueError(f"Avro type {avro_type!r} has no CQL mapping in core.cassandra_schema")


def columns_for_schema(avro_schema: dict[str, Any]) -> dict[str, str]:
    """Column name -> CQL type a table needs to hold every field of an Avro record schema."""
    return {field["name"]: cql_type(field["type"]) for field in avro_schema["fields"]}


def column_problems(needed: dict[str, str], live: dict[str, str]) -> tuple[dict[str, str], dict[str, tuple[str, str]]]:
    """(missing columns, columns whose live type differs: name -> (needed, live))."""
    missing = {name: kind for name, kind in needed.items() if name not in live}
    mismatched = {name: (kind, live[name]) for name, kind in needed.items() if name in live and live[name] != kind}
    return missing, mismatched


def cassandra_ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """Client-to-node TLS (CASSANDRA_SSL): the CA that signed the nodes, host names checked unless turned off."""
    if not settings.cassandra_ssl:
        return None
    try:
        context = ssl.create_default_context(cafile=settings.cassandra_ssl_ca_location or None)
    except (OSError, ssl.SSLError) as exc:
        raise CassandraUnavailable(
            f"CASSANDRA_SSL_CA_LOCATION={settings.cassandra_ssl_ca_location}: cannot load it as a PEM CA ({exc})"
        ) from exc
    # The driver then checks the node's certificate against the contact point's address or name.
    context.check_hostname = settings.cassandra_ssl_verify_hostname
    return context


def cassandra_cluster(settings: Settings, timeout: float = 30.0):
    """The one way the project builds a cassandra-driver Cluster: auth and TLS only when set, one request timeout."""
    from cassandra.auth import PlainTextAuthProvider
    from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
    from cassandra.policies import RoundRobinPolicy

    auth = None
    if settings.cassandra_username:
        password = settings.cassandra_password.get_secret_value() if settings.cassandra_password else ""
        auth = PlainTextAuthProvider(settings.cassandra_username, password)
    return Cluster(
        settings.cassandra_contact_points(),
        port=settings.cassandra_port,
        auth_provider=auth,
        ssl_context=cassandra_ssl_context(settings),
        connect_timeout=min(timeout, 5),
        control_connection_timeout=min(timeout, 5),
        # v5 is what Cassandra 4.0+ speaks; saying so skips the driver's downgrade dance (and its warnings).
        protocol_version=5,
        execution_profiles={EXEC_PROFILE_DEFAULT: ExecutionProfile(load_balancing_policy=RoundRobinPolicy(), request_timeout=timeout)},
    )


@contextmanager
def connect(settings: Settings) -> Iterator[Any]:
    """A cassandra-driver session; an unreachable cluster becomes an error naming host and port."""
    from cassandra.cluster import NoHostAvailable

    cluster = cassandra_cluster(settings)
    try:
        try:
            session = cluster.connect()
        except NoHostAvailable as exc:
            hint = cassandra_hint(exc)
            if hint:  # it answered, but refused this client: name the setting to fix
                raise CassandraUnavailable(f"Cassandra at {settings.cassandra_hosts}:{settings.cassandra_port} refused the connection: {hint} ({exc})") from exc
            raise CassandraUnavailable(
                f"cannot reach Cassandra at {settings.cassandra_hosts}:{settings.cassandra_port} ({exc}); "
                "is it running? `make up` starts the embedded stack, `python -m stack status` shows it"
            ) from exc
        yield session
    finally:
        cluster.shutdown()


def live_columns(session: Any, keyspace: str, table: str) -> dict[str, str] | None:
    """Column name -> CQL type of a live table, or None when the table does not exist."""
    session.cluster.refresh_schema_metadata()
    ks = session.cluster.metadata.keyspaces.get(keyspace)
    if ks is None or table not in ks.tables:
        return None
    return {name: column.cql_type for name, column in ks.tables[table].columns.items()}


def live_replication(session: Any, keyspace: str) -> dict[str, Any] | None:
    """The replication map of a live keyspace (factors as ints), or None when it does not exist."""
    row = session.execute(
        "SELECT replication FROM system_schema.keyspaces WHERE keyspace_name = %s", (keyspace,)
    ).one()
    if row is None:
        return None
    replication = {}
    for key, value in row.replication.items():
        short = value.rsplit(".", 1)[-1] if key == "class" else value
        replication[key] = int(short) if str(short).isdigit() else short
    return replication


def add_column_statements(keyspace: str, table: str, columns: dict[str, str]) -> list[str]:
    """ALTER TABLE statements that add columns, safe to run twice."""
    return [f"ALTER TABLE {keyspace}.{table} ADD IF NOT EXISTS {name} {kind}" for name, kind in columns.items()]


def apply(settings: Settings, session: Any) -> list[str]:
    """Create keyspace and table, add columns the file has and the live table lacks; return what ran."""
    statements = render_statements(settings)
    keyspace, table = settings.cassandra_keyspace, settings.cassandra_table
    for statement in statements:
        session.execute(statement)
    wanted = parse_replication(settings.cassandra_replication)
    actual = live_replication(session, keyspace)
    if actual != wanted:
        raise CassandraSchemaError(
            f"keyspace {keyspace} exists with replication {actual}, settings ask for {wanted}: "
            f"run `ALTER KEYSPACE {keyspace} WITH replication = {replication_cql(wanted)}` and then "
            "`nodetool repair`, or change CASSANDRA_REPLICATION; this tool does not change replication"
        )
    missing, mismatched = column_problems(file_columns(statements), live_columns(session, keyspace, table) or {})
    if mismatched:
        raise CassandraSchemaError(
            f"{keyspace}.{table} has columns whose type differs from {SCHEMA_FILE.name}: "
            + ", ".join(f"{name} is {live} (file says {needed})" for name, (needed, live) in mismatched.items())
            + "; Cassandra cannot change a column's type: migrate to a new table"
        )
    added = add_column_statements(keyspace, table, missing)
    for statement in added:
        session.execute(statement)
    return statements + added


def add_columns_for(settings: Settings, session: Any, avro_schema: dict[str, Any], dry_run: bool) -> list[str]:
    """ALTER TABLE ADD every column a (new) schema version needs; step 1 of evolving the schema."""
    keyspace, table = settings.cassandra_keyspace, settings.cassandra_table
    live = live_columns(session, keyspace, table)
    if live is None:
        raise CassandraSchemaError(f"table {keyspace}.{table} does not exist: run `make cassandra-schema` first")
    missing, mismatched = column_problems(columns_for_schema(avro_schema), live)
    if mismatched:
        raise CassandraSchemaError(
            f"schema {avro_schema.get('name')} does not fit {keyspace}.{table}: "
            + ", ".join(f"{name} is {live_type}, schema needs {needed}" for name, (needed, live_type) in mismatched.items())
        )
    statements = add_column_statements(keyspace, table, missing)
    if not dry_run:
        for statement in statements:
            session.execute(statement)
    return statements


def main(argv: list[str] | None = None) -> int:
    """The command line; an expected, explained failure is one line on stderr and exit 1 (a traceback would bury it)."""
    args = parse_args(argv)
    try:
        return run(args, load_settings())
    except (CassandraUnavailable, CassandraSchemaError, ValueError) as error:
        print(f"cassandra-schema: error: {error}", file=sys.stderr)
        return 1


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Apply the schema file, or the columns for a new Avro schema; print the CQL."""
    if args.add_columns_for:
        avro_schema = json.loads(Path(args.add_columns_for).read_text(encoding="utf-8"))
        with connect(settings) as session:
            statements = add_columns_for(settings, session, avro_schema, args.dry_run)
        print(";\n".join(statements) + (";" if statements else f"-- {settings.cassandra_table} already has every column"))
        return 0
    if args.dry_run:
        print(";\n\n".join(render_statements(settings)) + ";")
        return 0
    with connect(settings) as session:
        ran = apply(settings, session)
    print(
        f"cassandra-schema: {settings.cassandra_keyspace}.{settings.cassandra_table} ready at "
        f"{settings.cassandra_hosts}:{settings.cassandra_port} ({len(ran)} statements, replication {settings.cassandra_replication})"
    )
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m core.cassandra_schema", description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="print the CQL, change nothing")
    parser.add_argument("--add-columns-for", metavar="AVSC", help="add the columns this Avro schema needs to the live table")
    return parser.parse_args(argv)


if __name__ == "__main__":
    sys.exit(main())
