"""Certificates and credentials of the secured embedded stack (STACK_SECURITY=on, `make up SECURE=1`).

With security on, the launcher runs Kafka with a SASL_SSL listener only
(SCRAM-SHA-512; the KRaft controller listener stays PLAINTEXT on 127.0.0.1,
see services.py), the registry on HTTPS with HTTP basic auth, and Cassandra
with PasswordAuthenticator and client-to-node TLS. Everything they need is
made here once, on the first `up`, and kept:

    <STACK_HOME>/secure/            folder 0700, every file 0600
        ca.pem, ca-key.pem          a local CA; its key signs the server certificate and nothing else
        server.pem, server-key.pem  the certificate every service presents (SAN localhost, 127.0.0.1, ::1)
        server.p12                  the same as a PKCS12 keystore (Kafka, Cassandra)
        ca.p12                      the CA as a Java truststore (Kafka's own inter-broker client, Cassandra)
        credentials.json            every generated password
    <STACK_HOME>/secure.env         the client settings (0600): `set -a; . .stack/secure.env; set +a`,
                                    or keep STACK_SECURITY=on and core.settings reads it

Certificates are made with `cryptography` (a kept library) rather than
keytool/openssl, so no JDK tool or shell parsing is involved and the PKCS12
files come out in the format both JVMs read.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import BestAvailableEncryption, pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from pydantic import SecretStr

from core.settings import Settings
from core.tls import write_java_truststore
from stack.layout import Layout

KAFKA_MECHANISM = "SCRAM-SHA-512"
KAFKA_BROKER_USER = "userstream-broker"  # inter-broker traffic on the SASL_SSL listener
KAFKA_CLIENT_USER = "userstream"  # the pipeline: producer, Spark job, status, the registry's journal
REGISTRY_USER = "userstream"
CASSANDRA_ROLE = "userstream"  # a non-default superuser; the built-in `cassandra` role is locked
CASSANDRA_DEFAULT_ROLE = ("cassandra", "cassandra")  # what Cassandra creates on first start with PasswordAuthenticator
SERVER_NAMES = ("localhost",)
SERVER_ADDRESSES = ("127.0.0.1", "::1")
VALID_DAYS = 825
_PASSWORDS = ("keystore", "kafka_broker", "kafka_client", "registry", "cassandra", "cassandra_default_locked")


class SecurityError(RuntimeError):
    """The secured stack's material or accounts are not as expected; the message says what to do."""


@dataclass(frozen=True)
class Material:
    """Paths of the secured stack's files and the generated passwords."""

    folder: Path
    env_file: Path
    passwords: dict[str, str]

    @property
    def ca_cert(self) -> Path:
        return self.folder / "ca.pem"

    @property
    def ca_key(self) -> Path:
        return self.folder / "ca-key.pem"

    @property
    def server_cert(self) -> Path:
        return self.folder / "server.pem"

    @property
    def server_key(self) -> Path:
        return self.folder / "server-key.pem"

    @property
    def keystore(self) -> Path:
        return self.folder / "server.p12"

    @property
    def truststore(self) -> Path:
        return self.folder / "ca.p12"

    @property
    def credentials(self) -> Path:
        return self.folder / "credentials.json"

    def files(self) -> list[Path]:
        """Every file holding a key, a password or a certificate: all must be 0600."""
        return [self.ca_cert, self.ca_key, self.server_cert, self.server_key, self.keystore, self.truststore,
                self.credentials, self.env_file]


def secure_folder(layout: Layout) -> Path:
    return layout.home / "secure"


def env_file(layout: Layout) -> Path:
    return layout.home / "secure.env"


def write_private(path: Path, data: bytes) -> Path:
    """Create or replace `path` as 0600 from the first byte on (never world-readable, not even briefly)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.unlink(missing_ok=True)
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    partial.replace(path)
    return path


def ensure_material(settings: Settings, layout: Layout) -> Material:
    """Make the CA, server certificate, keystores and passwords on first use; refresh secure.env; idempotent."""
    folder = secure_folder(layout)
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    credentials = folder / "credentials.json"
    if credentials.exists():
        passwords = json.loads(credentials.read_text())
    else:
        passwords = {name: secrets.token_urlsafe(24) for name in _PASSWORDS}
    material = Material(folder, env_file(layout), passwords)
    if not (material.keystore.exists() and material.truststore.exists()):
        _write_certificates(material)
    write_private(credentials, json.dumps(passwords, indent=1).encode())
    write_private(material.env_file, client_env_text(settings, material).encode())
    return material


def load_material(layout: Layout) -> Material:
    """The material an earlier `up` made; an error naming the fix when there is none."""
    credentials = secure_folder(layout) / "credentials.json"
    if not credentials.exists():
        raise SecurityError(f"no secured-stack credentials in {credentials.parent}: start it with STACK_SECURITY=on `python -m stack up`")
    return Material(secure_folder(layout), env_file(layout), json.loads(credentials.read_text()))


# --- Certificates -----------------------------------------------------------------------


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "userstream dev stack"), x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _certificate(subject: str, public_key, issuer: str, signing_key, ca: bool) -> x509.Certificate:
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca else None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False, data_encipherment=False,
                          key_agreement=False, key_cert_sign=True, crl_sign=True, encipher_only=False, decipher_only=False),
            critical=True,
        )
    else:
        names = [x509.DNSName(n) for n in SERVER_NAMES] + [x509.IPAddress(ipaddress.ip_address(a)) for a in SERVER_ADDRESSES]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False).add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
    return builder.sign(signing_key, hashes.SHA256())


def _write_certificates(material: Material) -> None:
    """A local CA and one server certificate signed by it, as PEM and as PKCS12 stores."""
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca_cert = _certificate("userstream local CA", ca_key.public_key(), "userstream local CA", ca_key, ca=True)
    server_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    server_cert = _certificate("localhost", server_key.public_key(), "userstream local CA", ca_key, ca=False)
    pem = serialization.Encoding.PEM
    unencrypted = serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    write_private(material.ca_key, ca_key.private_bytes(pem, *unencrypted))
    write_private(material.ca_cert, ca_cert.public_bytes(pem))
    write_private(material.server_key, server_key.private_bytes(pem, *unencrypted))
    write_private(material.server_cert, server_cert.public_bytes(pem) + ca_cert.public_bytes(pem))
    password = material.passwords["keystore"].encode()
    write_private(material.keystore, pkcs12.serialize_key_and_certificates(
        b"server", server_key, server_cert, [ca_cert], BestAvailableEncryption(password)))
    partial = material.truststore.with_name("ca.p12.partial")
    write_private(partial, b"")
    write_java_truststore([ca_cert], partial, material.passwords["keystore"])
    partial.replace(material.truststore)


# --- What clients need -------------------------------------------------------------------


def registry_url(settings: Settings) -> str:
    """The registry's https URL on the port the settings give (Apicurio's ccompat path)."""
    parsed = urlparse(settings.schema_registry_url)
    return f"https://localhost:{parsed.port or 8081}/apis/ccompat/v7"


def client_values(settings: Settings, material: Material) -> dict[str, str]:
    """Variable -> value of every client setting the secured stack needs (secrets included)."""
    ca = str(material.ca_cert)
    return {
        "STACK_SECURITY": "on",
        "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "KAFKA_SASL_MECHANISM": KAFKA_MECHANISM,
        "KAFKA_SASL_USERNAME": KAFKA_CLIENT_USER,
        "KAFKA_SASL_PASSWORD": material.passwords["kafka_client"],
        "KAFKA_SSL_CA_LOCATION": ca,
        "SCHEMA_REGISTRY_URL": registry_url(settings),
        "SCHEMA_REGISTRY_CA_LOCATION": ca,
        "SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO": f"{REGISTRY_USER}:{material.passwords['registry']}",
        "CASSANDRA_USERNAME": CASSANDRA_ROLE,
        "CASSANDRA_PASSWORD": material.passwords["cassandra"],
        "CASSANDRA_SSL": "true",
        "CASSANDRA_SSL_CA_LOCATION": ca,
    }


def client_env_text(settings: Settings, material: Material) -> str:
    lines = [
        "# The secured embedded stack's client settings (made by `python -m stack up` with STACK_SECURITY=on).",
        "# Private: 0600, never commit or print it. Use: set -a; . ./.stack/secure.env; set +a",
        "# (or keep STACK_SECURITY=on: core.settings then reads this file itself).",
    ]
    lines += [f"{name}={value}" for name, value in client_values(settings, material).items()]
    return "\n".join(lines) + "\n"


def client_settings(settings: Settings) -> Settings:
    """The settings with the secured stack's client values: what the launcher's own probes use.

    Without security it is `settings` unchanged. With it, the values come from
    the stack's credentials (not from the environment), so `up` can check the
    services before a user has sourced secure.env.
    """
    if not settings.stack_security:
        return settings
    material = load_material(Layout(settings.stack_home))
    ca = str(material.ca_cert)
    return settings.model_copy(update={
        "kafka_security_protocol": "SASL_SSL",
        "kafka_sasl_mechanism": KAFKA_MECHANISM,
        "kafka_sasl_username": KAFKA_CLIENT_USER,
        "kafka_sasl_password": SecretStr(material.passwords["kafka_client"]),
        "kafka_ssl_ca_location": ca,
        "schema_registry_url": registry_url(settings),
        "schema_registry_ca_location": ca,
        "schema_registry_basic_auth_user_info": SecretStr(f"{REGISTRY_USER}:{material.passwords['registry']}"),
        "cassandra_username": CASSANDRA_ROLE,
        "cassandra_password": SecretStr(material.passwords["cassandra"]),
        "cassandra_ssl": True,
        "cassandra_ssl_ca_location": ca,
    })


# --- Service configuration fragments -------------------------------------------------------


def _jaas(user: str, password: str) -> str:
    return f'org.apache.kafka.common.security.scram.ScramLoginModule required username="{user}" password="{password}";'


def kafka_server_properties(material: Material) -> str:
    """The broker's SASL_SSL lines: SCRAM-SHA-512 for clients and itself, the keystore, the CA to trust."""
    store = material.passwords["keystore"]
    return "\n".join([
        f"sasl.enabled.mechanisms={KAFKA_MECHANISM}",
        f"sasl.mechanism.inter.broker.protocol={KAFKA_MECHANISM}",
        f"listener.name.sasl_ssl.{KAFKA_MECHANISM.lower()}.sasl.jaas.config={_jaas(KAFKA_BROKER_USER, material.passwords['kafka_broker'])}",
        "ssl.keystore.type=PKCS12",
        f"ssl.keystore.location={material.keystore}",
        f"ssl.keystore.password={store}",
        f"ssl.key.password={store}",
        "ssl.truststore.type=PKCS12",
        f"ssl.truststore.location={material.truststore}",
        f"ssl.truststore.password={store}",
        "ssl.client.auth=none",
    ])


def kafka_scram_arguments(material: Material) -> list[str]:
    """StorageTool `--add-scram` arguments: the SCRAM users exist from the first start, before any listener."""
    users = {KAFKA_BROKER_USER: material.passwords["kafka_broker"], KAFKA_CLIENT_USER: material.passwords["kafka_client"]}
    arguments = []
    for user, password in users.items():
        arguments += ["--add-scram", f"{KAFKA_MECHANISM}=[name={user},password={password}]"]
    return arguments


def registry_properties(settings: Settings, material: Material, https_port: int) -> str:
    """Apicurio's HTTPS, basic auth (Quarkus embedded users, no identity server) and its Kafka journal client."""
    kafka_common = "apicurio.kafka.common."
    return "\n".join([
        f"quarkus.http.ssl-port={https_port}",
        "quarkus.http.insecure-requests=disabled",
        f"quarkus.http.ssl.certificate.files={material.server_cert}",
        f"quarkus.http.ssl.certificate.key-files={material.server_key}",
        "quarkus.http.auth.basic=true",
        "apicurio.authn.mechanism.priority=basic",
        "quarkus.security.users.embedded.enabled=true",
        "quarkus.security.users.embedded.plain-text=true",
        f"quarkus.security.users.embedded.users.{REGISTRY_USER}={material.passwords['registry']}",
        f"quarkus.security.users.embedded.roles.{REGISTRY_USER}=sr-admin",
        f"{kafka_common}security.protocol=SASL_SSL",
        f"{kafka_common}sasl.mechanism={KAFKA_MECHANISM}",
        f"{kafka_common}sasl.jaas.config={_jaas(KAFKA_CLIENT_USER, material.passwords['kafka_client'])}",
        f"{kafka_common}ssl.truststore.type=PEM",
        f"{kafka_common}ssl.truststore.location={material.ca_cert}",
    ]) + "\n"


def cassandra_yaml_values(material: Material | None) -> dict[str, str]:
    """The cassandra.yaml placeholders: open (AllowAll, no TLS) or PasswordAuthenticator with client TLS required."""
    if material is None:
        return {"AUTHENTICATOR": "AllowAllAuthenticator", "AUTHORIZER": "AllowAllAuthorizer", "CLIENT_ENCRYPTION": ""}
    store = material.passwords["keystore"]
    block = "\n".join([
        "client_encryption_options:",
        "  enabled: true",
        "  optional: false",
        f"  keystore: {material.keystore}",
        f"  keystore_password: {store}",
        f"  truststore: {material.truststore}",
        f"  truststore_password: {store}",
        "  store_type: PKCS12",
        "  require_client_auth: false",
    ])
    return {"AUTHENTICATOR": "PasswordAuthenticator", "AUTHORIZER": "CassandraAuthorizer", "CLIENT_ENCRYPTION": block}


# --- Cassandra's own accounts ---------------------------------------------------------------


def _auth_refused(exc: BaseException) -> bool:
    """cassandra-driver wraps an AuthenticationFailed per host inside NoHostAvailable."""
    from cassandra import AuthenticationFailed

    errors = getattr(exc, "errors", None) or {}
    return isinstance(exc, AuthenticationFailed) or any(isinstance(e, AuthenticationFailed) for e in errors.values())


def _run_as(settings: Settings, statements: list[tuple[str, tuple]], timeout: float) -> None:
    from core.cassandra_schema import cassandra_cluster

    cluster = cassandra_cluster(settings, timeout)
    try:
        session = cluster.connect()
        for statement, parameters in statements:
            session.execute(statement, parameters)
    finally:
        cluster.shutdown()


def ensure_cassandra_role(settings: Settings, timeout: float) -> str | None:
    """Log in as the stack's own superuser, creating it first (as the default `cassandra`) and then locking the default.

    `settings` are the secured client settings. Returns None once our role
    logs in, else why not yet: the node is still starting, or has not made
    its default role yet (it does so shortly after opening the CQL port).
    """
    from cassandra import DriverException
    from cassandra.cluster import NoHostAvailable

    material = load_material(Layout(settings.stack_home))
    try:
        _run_as(settings, [("SELECT release_version FROM system.local", ())], timeout)
        return None
    except NoHostAvailable as exc:
        if not _auth_refused(exc):
            return f"CQL not answering yet ({exc})"[:200]
    except (DriverException, OSError) as exc:
        return f"CQL not answering yet ({exc})"[:200]
    default_user, default_password = CASSANDRA_DEFAULT_ROLE
    as_default = settings.model_copy(update={"cassandra_username": default_user, "cassandra_password": SecretStr(default_password)})
    create = ("CREATE ROLE IF NOT EXISTS " + CASSANDRA_ROLE + " WITH SUPERUSER = true AND LOGIN = true AND PASSWORD = %s",
              (material.passwords["cassandra"],))
    lock = ("ALTER ROLE " + default_user + " WITH SUPERUSER = false AND LOGIN = false AND PASSWORD = %s",
            (material.passwords["cassandra_default_locked"],))
    try:
        _run_as(as_default, [create], timeout)
        _run_as(settings, [lock], timeout)  # our role changes the default one: a role cannot demote itself
    except NoHostAvailable as exc:
        if _auth_refused(exc):
            return (f"role {CASSANDRA_ROLE} and the default role are both refused: the default role is not made yet, "
                    f"or this node's auth data predates {material.credentials} (then remove "
                    f"{Layout(settings.stack_home).data('cassandra')} or use another STACK_HOME)")
        return f"CQL not answering yet ({exc})"[:200]
    except (DriverException, OSError) as exc:
        return f"creating role {CASSANDRA_ROLE}: {exc}"[:200]
    return None
