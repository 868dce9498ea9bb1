"""The size bench: which files count as a topic's log segments, and the real measurement on the stack."""

from __future__ import annotations

import pytest
from confluent_kafka.admin import AdminClient

from bench import size
from core.settings import load_settings


def test_segment_bytes_counts_only_the_topics_partition_logs(tmp_path):
    for folder, files in {
        "users-0": {"00000000000000000000.log": 100, "00000000000000000000.index": 10_485_760},
        "users-1": {"00000000000000000000.log": 50},
        "users-0.abc123-delete": {"00000000000000000000.log": 7},  # a deleted partition
        "users.dead_letter-0": {"00000000000000000000.log": 9},
        "users-raw-0": {"00000000000000000000.log": 11},
    }.items():
        (tmp_path / folder).mkdir()
        for name, length in files.items():
            (tmp_path / folder / name).write_bytes(b"x" * length)
    assert size.segment_bytes(tmp_path, "users") == 150


@pytest.mark.integration
def test_size_bench_measures_every_variant_and_removes_its_topics():
    settings = load_settings()
    before = set(AdminClient(settings.kafka_config()).list_topics(timeout=10).topics)
    result = size.run_size(300, ["none", "zstd"], settings)
    per_user = result["bytes_per_user"]
    assert set(per_user) == {"avro-none", "avro-zstd", "seed json", "json batched"}
    # The JSON value alone is the floor of the seed's records; Avro and compression must each shrink it.
    assert per_user["seed json"] > result["json_value_bytes_per_user"]
    assert per_user["seed json"] > per_user["avro-none"] > per_user["avro-zstd"] > 0
    assert result["ratio_to_seed_json"]["seed json"] == 1.0
    after = set(AdminClient(settings.kafka_config()).list_topics(timeout=10).topics)
    assert not {t for t in after - before if t.startswith("bench_size_")}, "the bench left topics behind"
