"""Issue 11.5c: the producer places keys like every other Kafka client (murmur2), checked against Kafka's Java code.

The pipeline publishes users to a topic with 7 partitions on the real broker;
the partition each record landed in (as the broker recorded it) must be
`Utils.toPositive(Utils.murmur2(key)) % 7`, computed by the kafka-clients jar
of the embedded stack (what the Java producer's BuiltInPartitioner does for a
keyed record), run by `java` on a tiny source file.
"""

from __future__ import annotations

import shutil
import subprocess
from datetime import datetime, timezone

import pytest

from producer import register
from producer.pipeline import run
from tests.producer.stack_fixtures import consume

pytestmark = [pytest.mark.integration, pytest.mark.jdk]  # Kafka, the registry, and `java` for Kafka's own code
PARTITIONS = 7

JAVA_PARTITIONS = """
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import org.apache.kafka.common.utils.Utils;

public class Partitions {
    public static void main(String[] args) throws Exception {
        int partitions = Integer.parseInt(args[0]);
        BufferedReader keys = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        for (String key; (key = keys.readLine()) != null; ) {
            byte[] bytes = key.getBytes(StandardCharsets.UTF_8);
            System.out.println(key + " " + Utils.toPositive(Utils.murmur2(bytes)) % partitions);
        }
    }
}
"""


def java_partitions(stack_home, keys: list[str], partitions: int, tmp_path) -> dict[str, int]:
    """Each key's partition as Kafka's Java client computes it."""
    jars = sorted((stack_home / "jars" / "kafka").glob("*.jar"))
    assert any(j.name.startswith("kafka-clients-") for j in jars), f"no kafka-clients jar in {stack_home}/jars/kafka"
    java = shutil.which("java")
    assert java, "java is needed to run Kafka's own partitioning code"
    source = tmp_path / "Partitions.java"
    source.write_text(JAVA_PARTITIONS)
    done = subprocess.run([java, "-cp", ":".join(map(str, jars)), str(source), str(partitions)],
                          input="\n".join(keys) + "\n", capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    return {key: int(partition) for key, partition in (line.rsplit(" ", 1) for line in done.stdout.splitlines())}


def test_keys_land_on_the_partition_the_java_client_would_choose(stack_settings, datasource, tmp_path):
    settings = stack_settings.model_copy(update={"users_topic_partitions": PARTITIONS})
    assert register.main(["--topic", settings.users_topic], settings=settings) == 0
    counts = run(settings, users=200, batch_size=100, seed="murmur2",
                 clock=lambda: datetime(2025, 5, 4, tzinfo=timezone.utc))
    assert counts["published"] == 200

    messages = consume(settings, settings.users_topic, 200)
    landed = {m.key().decode(): m.partition() for m in messages}
    assert len(landed) == 200 and len(set(landed.values())) == PARTITIONS  # spread over every partition
    expected = java_partitions(settings.stack_home, sorted(landed), PARTITIONS, tmp_path)
    wrong = {key: (landed[key], expected[key]) for key in landed if landed[key] != expected[key]}
    assert not wrong, f"{len(wrong)} of 200 keys on another partition than Java's murmur2 (got, java): " \
                      f"{dict(list(wrong.items())[:3])}"
