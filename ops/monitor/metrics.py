"""/metrics in Prometheus' text format, from the monitor's newest sample (prometheus-client).

A custom collector reads the sample at scrape time instead of keeping a second
copy of every number in Gauge objects: what Prometheus scrapes is exactly what
the page shows. The counters are the job's own totals (its progress file
survives restarts) and the dead-letter topic's contents, so they only reset
when the checkpoint or the topic does, which Prometheus' rate() handles.
"""

from __future__ import annotations

from typing import Any, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ops.monitor.history import Sampler

PREFIX = "userstream"


class PipelineCollector(Collector):
    def __init__(self, sampler: Sampler):
        self.sampler = sampler

    def collect(self) -> Iterator[Metric]:
        latest: dict[str, Any] = self.sampler.latest
        if not latest:
            return
        sample = latest["sample"]
        yield from self._services(latest)
        yield from self._totals(sample)
        yield from self._dead_letters(latest["dead_letters"])
        yield from self._gauges(sample)
        yield from self._lag(latest["lag"])

    def _services(self, latest: dict[str, Any]) -> Iterator[Metric]:
        up = GaugeMetricFamily(f"{PREFIX}_service_up", "1 when the service answers its own protocol", labels=["service"])
        for row in latest["services"]:
            up.add_metric([row["name"]], 1.0 if row["up"] else 0.0)
        yield up

    def _totals(self, sample: dict[str, Any]) -> Iterator[Metric]:
        for key, name, doc in (
            ("rows_written_total", "rows_written", "rows the streaming job wrote to Cassandra (its progress file's totals)"),
            ("records_in_total", "records_in", "Kafka records the streaming job read"),
        ):
            if sample.get(key) is not None:
                counter = CounterMetricFamily(f"{PREFIX}_{name}", doc)
                counter.add_metric([], float(sample[key]))
                yield counter

    def _dead_letters(self, counts: dict[str, Any]) -> Iterator[Metric]:
        family = CounterMetricFamily(f"{PREFIX}_dead_letters", "records on the dead-letter topic, by stage and reason",
                                     labels=["stage", "reason"])
        for stage, reasons in sorted(counts.get("by_reason", {}).items()):
            for why, count in sorted(reasons.items()):
                family.add_metric([stage, why], float(count))
        yield family

    def _gauges(self, sample: dict[str, Any]) -> Iterator[Metric]:
        for key, doc in (
            ("batch_duration_seconds", "how long the job's last micro-batch took"),
            ("freshness_seconds", "how long the oldest record not yet in Cassandra has waited (0 when caught up)"),
            ("last_batch_age_seconds", "seconds since the job last finished a batch"),
            ("rows_per_second", "rows written per second between the last two samples"),
        ):
            if sample.get(key) is not None:
                gauge = GaugeMetricFamily(f"{PREFIX}_{key}", doc)
                gauge.add_metric([], float(sample[key]))
                yield gauge

    def _lag(self, lag: dict[str, Any]) -> Iterator[Metric]:
        family = GaugeMetricFamily(f"{PREFIX}_consumer_lag", "end offset minus the job's committed offset, per partition",
                                   labels=["group", "topic", "partition"])
        for row in lag.get("partitions", []):
            family.add_metric([lag["group"], row["topic"], str(row["partition"])], float(row["lag"]))
        yield family


def exposition(sampler: Sampler) -> bytes:
    """The text a Prometheus scrape gets."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(PipelineCollector(sampler))
    return generate_latest(registry)
