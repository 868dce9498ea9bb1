"""The producing half, wired: source -> transform -> publish. What the Airflow DAG calls.

`run()` fetches N users in replayable pages (seed + page), maps each record to
a `User` or a dead-letter reason, publishes users as Avro to USERS_TOPIC and
rejects to DEAD_LETTER_TOPIC, waits for every delivery report and returns
small counts. Login secrets are dropped at the source; PROTECTED_FIELDS are
tokenized or encrypted (producer.protect) before anything is produced, dead
letters included. Any failure raises (DataSourceError, PublishError,
SchemaNotRegisteredError, RegistryUnavailable, ProtectionError, ValueError for
bad bounds) with a message saying what to do.

Usage:
    python -m producer.pipeline --users 1000 --batch-size 500 --nat gb,ir --seed userstream
    python -m producer.pipeline --check      # only check the schema is registered (exit 1 if not)

    from producer.pipeline import run
    counts = run(load_settings(), users=100, batch_size=50, nat="", seed="abc")
    # {"fetched": 100, "published": 97, "dead_lettered": 3}
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import tenacity

from core.settings import Settings, load_settings
from core.subjects import user_subject
from core.topics import ensure_pipeline_topics
from producer import publish as publish_stage
from producer import source as source_stage
from producer.bounds import Bounds
from producer.protect import FieldProtector, ProtectionError, protect_result
from producer.registry import RegistryUnavailable, make_client
from producer.transform import transform

log = logging.getLogger(__name__)
REGISTRY_CHECK_ATTEMPTS = 5  # with backoff 1, 2, 4, 8 s: rides out a registry restart of about 15 s


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def _registry_blip(failure: BaseException) -> bool:
    """Worth asking again: the registry unreachable, or answering 408/429/5xx. A 404 is final at once."""
    return isinstance(failure, RegistryUnavailable) or (
        isinstance(failure, publish_stage.RegistryError) and failure.transient)


def check_schema_registered(settings: Settings, *, attempts: int = REGISTRY_CHECK_ATTEMPTS,
                            backoff_seconds: float = 1.0) -> dict[str, Any]:
    """Fail fast, before fetching anything, if the users subject has no schema; returns its id and version.

    A registry blip (unreachable, 5xx, 408, 429) is retried with exponential
    backoff, `attempts` tries in all, each logged; "not registered" (404) is
    final at once: waiting will not register it.
    """
    subject = user_subject(settings)

    def log_retry(state: tenacity.RetryCallState) -> None:
        log.warning("schema registry: %s; attempt %d of %d, again in %.1f s", state.outcome.exception(),
                    state.attempt_number, attempts, state.upcoming_sleep)

    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception(_registry_blip), stop=tenacity.stop_after_attempt(attempts),
        wait=tenacity.wait_exponential(multiplier=backoff_seconds, max=30 * backoff_seconds),
        before_sleep=log_retry, reraise=True)
    # The client's own retries are off here: this loop is the one retry policy, so attempts mean attempts.
    _, registered = retrying(publish_stage.user_serializer, make_client(settings, max_retries=0), subject,
                             settings.user_schema_version)
    return {"subject": subject, "schema_id": registered.schema_id, "version": registered.version}


def run(
    settings: Settings,
    users: int,
    batch_size: int,
    nat: str = "",
    seed: str = "userstream",
    *,
    clock: Callable[[], datetime] = utc_now,
) -> dict[str, int]:
    """Fetch `users` users and publish them; returns {"fetched", "published", "dead_lettered"} (delivered counts).

    Settings are checked before anything is fetched: the transform bounds, the field
    protection (PROTECTED_FIELDS without a key is an error here), the schema.
    """
    bounds = Bounds.from_settings(settings)
    protector = FieldProtector.from_settings(settings)
    subject = user_subject(settings)
    serializer, _ = publish_stage.user_serializer(make_client(settings), subject, settings.user_schema_version)
    ensure_pipeline_topics(settings)
    session = source_stage.make_session(settings.datasource_retries, settings.datasource_backoff_factor,
                                        max_retry_after=settings.datasource_max_retry_after_seconds)
    producer = publish_stage.make_producer(settings)
    report = publish_stage.DeliveryReport()
    fetched = 0
    try:
        for batch in source_stage.fetch_batches(session, settings.datasource_url, users, batch_size, seed, nat,
                                                settings.datasource_timeout_seconds,
                                                deadline_seconds=settings.datasource_deadline_seconds):
            ingested_at = clock()  # one timestamp per fetched page
            fetched += len(batch.records)
            results = (protect_result(protector, raw, transform(raw, ingested_at, bounds)) for raw in batch.records)
            publish_stage.publish(producer, serializer, results, topic=settings.users_topic,
                                  dead_letter_topic=settings.dead_letter_topic, source=batch.source, report=report,
                                  max_message_bytes=settings.producer_max_message_bytes)
    except Exception as failure:
        # Deliver what was already produced, then raise the failure that stopped the run;
        # a delivery problem on top of it is attached to it, not swallowed.
        try:
            publish_stage.finish(producer, report)
        except publish_stage.PublishError as delivery:
            failure.add_note(f"Also, while flushing what was already produced: {delivery}")
        raise
    finally:
        session.close()
    publish_stage.finish(producer, report)
    return {
        "fetched": fetched,
        "published": report.delivered.get(settings.users_topic, 0),
        "dead_lettered": report.delivered.get(settings.dead_letter_topic, 0),
    }


def run_seed(explicit: str | None, logical_date: datetime | None, run_id: str) -> str:
    """The API seed of a DAG run: the one given in its conf, else one drawn from the run itself.

    A scheduled run has a logical date, so each one draws new users, and running the
    same run again (a retry, a clear) fetches the same ones; a manual run without a
    logical date uses its run id. The seed is recorded with the run, and giving it
    back in the conf (`{"seed": ...}`) replays the run exactly.
    """
    if explicit and explicit.strip():
        return explicit.strip()
    if logical_date is not None:
        return f"user_stream@{logical_date.astimezone(timezone.utc).isoformat()}"
    return run_id


class RunCheckError(RuntimeError):
    """A run that finished but must not count as a success (mostly rejected, or records unaccounted for)."""


def check_counts(counts: dict[str, int], max_dead_letter_fraction: float) -> None:
    """Fail a run whose counts say something is wrong, instead of letting it look green.

    Every fetched record must be either published or dead-lettered; and a run
    where more than `max_dead_letter_fraction` of records were rejected means
    the source changed shape, which someone must look at.
    """
    fetched, published, dead = counts["fetched"], counts["published"], counts["dead_lettered"]
    if published + dead != fetched:
        raise RunCheckError(f"counts do not add up, records were lost: {counts}")
    if fetched and dead / fetched > max_dead_letter_fraction:
        raise RunCheckError(
            f"{dead} of {fetched} records were dead-lettered (limit {max_dead_letter_fraction:.0%}); "
            "inspect the dead_letter.reason headers on the dead-letter topic: the source may have changed shape."
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m producer.pipeline", description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--nat", default="", help="comma list of nationalities; empty means all")
    parser.add_argument("--seed", default="userstream")
    parser.add_argument("--max-dead-letter-fraction", type=float, default=0.1,
                        help="exit non-zero when more than this fraction of records was dead-lettered")
    parser.add_argument("--check", action="store_true", help="only check the users schema is registered")
    args = parser.parse_args(argv)
    settings = load_settings()
    try:
        if args.check:
            result = check_schema_registered(settings)
        else:
            result = run(settings, args.users, args.batch_size, args.nat, args.seed)
            print(json.dumps(result))
            check_counts(result, args.max_dead_letter_fraction)
            return 0
    except (source_stage.DataSourceError, publish_stage.PublishError, RegistryUnavailable, RunCheckError,
            ProtectionError, ValueError) as exc:
        print(f"producer: error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
