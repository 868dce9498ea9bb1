# Spark 3.5.7 standalone (master, workers) and the streaming job's driver, in one image.
#
# Built the way the embedded stack runs Spark: pyspark from requirements.lock
# (it ships bin/spark-class and spark-submit) on Python 3.11 with Java 17, plus
# the connector jars pinned in stack/pom.xml. Master, workers and driver share
# the image, so the driver and the executors run the same Python and libraries.
# (apache/spark:3.5.7's Python is Ubuntu 22.04's 3.10, for which the locked
# fastavro 1.13.1 has no wheel.) Build context is the repository root:
#
#   docker build -f docker/spark.Dockerfile -t userstream-spark:0.1.0 .

# --- The connector jars, resolved by Maven from the same manifest as `make setup`.
FROM maven:3.9.11-eclipse-temurin-17 AS jars
COPY stack/pom.xml /build/pom.xml
RUN mvn -B -q -f /build/pom.xml -P spark dependency:copy-dependencies \
        -DincludeScope=runtime -DoutputDirectory=/build/jars

# --- The runtime image.
FROM python:3.11.14-slim-bookworm

RUN apt-get update \
 && apt-get install -y --no-install-recommends openjdk-17-jre-headless procps curl \
 && rm -rf /var/lib/apt/lists/*

COPY requirements.lock docker/spark-requirements.txt /opt/userstream/
RUN pip install --no-cache-dir -c /opt/userstream/requirements.lock \
        pyspark -r /opt/userstream/spark-requirements.txt

ENV SPARK_HOME=/usr/local/lib/python3.11/site-packages/pyspark \
    PYSPARK_PYTHON=python3 \
    PYSPARK_DRIVER_PYTHON=python3 \
    PYTHONPATH=/opt/userstream
RUN test -x "$SPARK_HOME/bin/spark-class" \
 && ln -s "$SPARK_HOME" /opt/spark \
 && useradd --system --uid 185 --home-dir /opt/spark-work --no-create-home spark \
 && mkdir -p /opt/spark-work /var/lib/userstream/spark-checkpoints \
 && chown -R spark /opt/spark-work /var/lib/userstream

# Only the jars Spark lacks: a dependency whose artifact Spark already ships
# (hadoop-client, scala-library, slf4j, ...) stays Spark's own version, as with --packages.
COPY --from=jars /build/jars /opt/userstream/jars
RUN set -eu; cd /opt/userstream/jars; \
    for jar in *.jar; do \
        name="${jar%%-[0-9]*}"; \
        if ls "$SPARK_HOME/jars/$name"-[0-9]*.jar >/dev/null 2>&1; then rm "$jar"; fi; \
    done; \
    ls /opt/userstream/jars

COPY pyproject.toml /opt/userstream/
COPY core /opt/userstream/core
COPY producer /opt/userstream/producer
COPY spark /opt/userstream/spark
COPY jobs /opt/userstream/jobs
COPY schemas /opt/userstream/schemas
COPY docker /opt/userstream/docker

ENV SPARK_WORKER_DIR=/opt/spark-work
WORKDIR /opt/spark-work
USER spark
