"""TLS material in the shapes the JVM clients want, made from the PEM files the settings name.

The Python clients (librdkafka, cassandra-driver, the registry client) read a
PEM CA file directly. Spark's Cassandra connector reads only a Java
truststore, so `java_truststore()` turns the same PEM CA into a PKCS12
truststore, next to nothing secret: it holds public certificates only, and
its password guards integrity, not secrecy. `cryptography` (a kept library)
writes it, so no `keytool` is needed on the machine.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import BestAvailableEncryption, pkcs12

# Public certificates only: this password keeps the file intact, it protects no secret.
TRUSTSTORE_PASSWORD = "userstream-truststore"


class TlsMaterialError(RuntimeError):
    """A CA file named in the settings cannot be read; the message names the setting."""


def load_ca_certificates(ca_pem: str | Path, setting: str) -> list[x509.Certificate]:
    """Every certificate of a PEM bundle; a missing or empty file names `setting`."""
    path = Path(ca_pem)
    try:
        certificates = x509.load_pem_x509_certificates(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise TlsMaterialError(f"{setting}={path}: cannot read a PEM certificate there ({exc}); point {setting} at the CA that signed the server") from exc
    return certificates


def write_java_truststore(certificates: list[x509.Certificate], target: Path, password: str = TRUSTSTORE_PASSWORD) -> Path:
    """A PKCS12 truststore Java accepts (each certificate marked trusted)."""
    entries = [pkcs12.PKCS12Certificate(cert, f"ca-{index}".encode()) for index, cert in enumerate(certificates)]
    target.write_bytes(pkcs12.serialize_java_truststore(entries, BestAvailableEncryption(password.encode())))
    return target


def java_truststore(ca_pem: str | Path, setting: str) -> Path:
    """A truststore for the CA bundle at `ca_pem`, cached per content in the temp folder."""
    data = Path(ca_pem).read_bytes() if Path(ca_pem).is_file() else b""
    certificates = load_ca_certificates(ca_pem, setting)
    target = Path(tempfile.gettempdir()) / f"userstream-truststore-{os.getuid()}-{hashlib.sha256(data).hexdigest()[:16]}.p12"
    if not target.exists():
        partial = target.with_suffix(f".{os.getpid()}.tmp")
        write_java_truststore(certificates, partial)
        partial.replace(target)  # atomic: a concurrent reader never sees half a file
    return target
