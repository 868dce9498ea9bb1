"""Which setting to fix when a secured service refuses a client.

A refused login or a TLS mismatch surfaces as a driver's own words
("Bad credentials", "Connection reset by peer", "SSL handshake failed");
these functions add the variable the user should change, so the error says
what to do. They only read the error's text: each client library words its
failures differently, and none of them knows the project's setting names.
"""

from __future__ import annotations

import re

_CASSANDRA = (
    (r"Bad credentials|username .* password are incorrect",
     "Cassandra refused the login: check CASSANDRA_USERNAME and CASSANDRA_PASSWORD"),
    (r"requires authentication",
     "Cassandra requires a login: set CASSANDRA_USERNAME and CASSANDRA_PASSWORD"),
    (r"CERTIFICATE_VERIFY_FAILED|certificate verify failed",
     "the node's certificate is not trusted: set CASSANDRA_SSL_CA_LOCATION to the CA that signed it "
     "(or CASSANDRA_SSL_VERIFY_HOSTNAME=false when only the host name differs)"),
    (r"WRONG_VERSION_NUMBER|wrong version number|record layer failure|UNEXPECTED_EOF",
     "the node does not speak TLS on this port: set CASSANDRA_SSL=false, or check CASSANDRA_PORT"),
    (r"Connection reset by peer|ConnectionResetError|Connection closed",
     "the node closed the connection at once; if it requires client TLS, set CASSANDRA_SSL=true and CASSANDRA_SSL_CA_LOCATION"),
)

_KAFKA = (
    (r"SASL authentication error|Authentication failed|invalid credentials|SaslAuthenticationException",
     "Kafka refused the login: check KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD and KAFKA_SASL_MECHANISM"),
    (r"certificate verify failed|CERTIFICATE_VERIFY_FAILED|PKIX path|unable to find valid certification path",
     "the broker's certificate is not trusted: set KAFKA_SSL_CA_LOCATION to the CA that signed it"),
    (r"SSL handshake failed|wrong version number|WRONG_VERSION_NUMBER|SslAuthenticationException",
     "the TLS handshake failed: check KAFKA_SECURITY_PROTOCOL (SSL/SASL_SSL only for a TLS listener) and KAFKA_SSL_CA_LOCATION"),
    (r"connecting to a SSL listener|incorrect security\.protocol|in state APIVERSION_QUERY|while requesting ApiVersion"
     r"|Unexpected Kafka request of type \w+ during SASL handshake",
     "the broker expects another protocol: check KAFKA_SECURITY_PROTOCOL (SASL_SSL for the secured stack) and KAFKA_SASL_MECHANISM"),
)

_REGISTRY = (
    (r"\b401\b|Unauthorized|unauthorized",
     "the Schema Registry refused the login: check SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO (user:password)"),
    (r"CERTIFICATE_VERIFY_FAILED|certificate verify failed",
     "the registry's certificate is not trusted: set SCHEMA_REGISTRY_CA_LOCATION to the CA that signed it"),
    (r"WRONG_VERSION_NUMBER|wrong version number",
     "the registry does not speak TLS there: check the scheme (http/https) of SCHEMA_REGISTRY_URL"),
    (r"Server disconnected without sending a response|RemoteProtocolError|Connection reset by peer",
     "the registry closed the connection; if it serves HTTPS, use an https:// SCHEMA_REGISTRY_URL"),
)


def _first(rules: tuple[tuple[str, str], ...], text: str) -> str | None:
    for pattern, hint in rules:
        if re.search(pattern, text):
            return hint
    return None


def cassandra_hint(error: BaseException | str) -> str | None:
    """The setting to fix for a refused Cassandra connection, or None when nothing points at one."""
    return _first(_CASSANDRA, str(error))


def kafka_hint(error: BaseException | str) -> str | None:
    """The setting to fix for a refused Kafka connection (librdkafka's or the Java client's words)."""
    return _first(_KAFKA, str(error))


def registry_hint(error: BaseException | str) -> str | None:
    """The setting to fix for a refused Schema Registry call."""
    return _first(_REGISTRY, str(error))
