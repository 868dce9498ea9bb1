"""The embedded stack launcher's settings: the product's, plus what only the launcher reads.

The product (producer/, spark/, dags/, ops/) reads `core.settings.Settings`:
where the services are, credentials, topics, STACK_HOME. The launcher also
needs what it takes to *run* those services on this machine: the ports they
listen on besides their client ports, JVM heaps, which Java runs the
registry. Those live here, so the product's settings carry nothing of the
dev launcher and Docker Compose has nothing to set for them. Same sources as
the product's: the environment, then `.env`, then these defaults (and with
STACK_SECURITY=on, `<STACK_HOME>/secure.env` through `core.settings`).

Use:
    from stack.settings import load_stack_settings
    settings = load_stack_settings()
    launcher.up(settings, Layout(settings.stack_home), ["kafka"])
"""

from __future__ import annotations

from functools import lru_cache

from core.settings import Settings, load_settings


class StackSettings(Settings):
    """Typed launcher settings; each field is read from the upper-case variable of its name."""

    # Ports the embedded services listen on besides the client ports of the product's settings
    # (which are read from KAFKA_BOOTSTRAP_SERVERS, SCHEMA_REGISTRY_URL, CASSANDRA_PORT, ...).
    stack_kafka_controller_port: int = 9093
    stack_registry_management_port: int = 9091
    stack_cassandra_storage_port: int = 7000
    stack_cassandra_heap: str = "768m"
    stack_kafka_heap: str = "512m"
    stack_registry_heap: str = "384m"
    # Apicurio Registry 3.3 needs Java 21+; empty means: look at JAVA_HOME, PATH and /usr/lib/jvm.
    registry_java_home: str | None = None


def for_launcher(settings: Settings) -> StackSettings:
    """`settings` as the launcher's: itself when it is one already, else its values plus the launcher's own.

    The product's values (a test's private topic, a demo's ports) are kept as
    given; only the launcher's fields are read from the environment and `.env`.
    """
    if isinstance(settings, StackSettings):
        return settings
    return StackSettings(**settings.model_dump())


@lru_cache(maxsize=1)
def load_stack_settings() -> StackSettings:
    """The process-wide launcher settings; tests that change the environment call `load_stack_settings.cache_clear()`."""
    return for_launcher(load_settings())
