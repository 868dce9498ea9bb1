"""One way to talk to the Schema Registry: confluent-kafka's `SchemaRegistryClient`.

The registration script, the publisher, the Spark job's driver and the
status view all build their client here, so they share its retries (`max.retries` on 408/429/5xx
and connection errors), its caches, its timeout and its basic auth.

- `make_client()` builds the client from the settings.
- `RegistryUnavailable` / `REGISTRY_TRANSPORT_ERRORS`: the registry cannot be
  reached at all, after the client's own retries.
- `is_not_found()` tells a 404 answer (no such subject/version/id) from a failure.
"""

from __future__ import annotations

from typing import Any

from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from core.security_hints import registry_hint
from core.settings import Settings


def _transport_errors() -> tuple[type[BaseException], ...]:
    """The network exceptions SchemaRegistryClient lets through after its own retries.

    confluent-kafka 2.16 talks HTTP through `httpx2` when installed, else `httpx`;
    both may be importable, so catch whichever exist.
    """
    errors: list[type[BaseException]] = []
    for name in ("httpx2", "httpx"):
        try:
            module = __import__(name)
        except ImportError:
            continue
        errors.append(module.TransportError)
    return tuple(errors)


REGISTRY_TRANSPORT_ERRORS = _transport_errors()


class RegistryUnavailable(RuntimeError):
    """The Schema Registry could not be reached at all."""

    def __init__(self, url: str, cause: BaseException) -> None:
        hint = registry_hint(cause)  # it answered, but not in a way this client accepts (TLS, scheme)
        super().__init__(
            f"cannot reach the Schema Registry at {url} ({type(cause).__name__}: {cause}). "
            + (f"{hint}." if hint else
               "Is it running? Start the stack with `make up` (check with `python -m stack status`), "
               "or set SCHEMA_REGISTRY_URL to a reachable Confluent-compatible registry.")
        )
        self.url = url


def make_client(settings: Settings, max_retries: int | None = None, timeout: float | None = None) -> SchemaRegistryClient:
    """A SchemaRegistryClient for the configured registry; basic auth only when configured.

    `max_retries` and `timeout` override the defaults for callers that must
    answer quickly (the status view) rather than ride out a restart.
    """
    conf: dict[str, Any] = dict(settings.schema_registry_config())
    if max_retries is not None:
        conf["max.retries"] = max_retries
    if timeout is not None:
        conf["timeout"] = timeout
    return SchemaRegistryClient(conf)


def is_not_found(error: SchemaRegistryError, *codes: int) -> bool:
    """A 404 answer, optionally with one of the Confluent error codes (40401 subject, 40402 version, 40403 schema)."""
    return error.http_status_code == 404 and (not codes or error.error_code in codes)
