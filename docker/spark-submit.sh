#!/usr/bin/env bash
# Submits the streaming job (jobs/stream_job.py, spark-submit's entry file
# for spark/stream_job.py) to the standalone master (service spark-stream in
# docker-compose.yml), in client mode: this container is the driver, the
# workers run the executors. The jars are the ones docker/spark.Dockerfile
# resolved from stack/pom.xml; SPARK_JARS tells the job the same list, so it
# does not look for the embedded stack's jar folder.
set -euo pipefail

: "${SPARK_MASTER:?SPARK_MASTER is not set}"
: "${SPARK_CHECKPOINT_DIR:?SPARK_CHECKPOINT_DIR is not set}"

jars=$(find /opt/userstream/jars -name '*.jar' | sort | paste -sd, -)
if [ -z "$jars" ]; then
    echo "spark-submit.sh: no jars in /opt/userstream/jars; rebuild the image" >&2
    exit 1
fi
export SPARK_JARS="$jars"
mkdir -p "$(dirname "$SPARK_CHECKPOINT_DIR")"
# The Avro field-size cap must be in the driver JVM before it starts (spark/session.py
# sets the executors' own); the options come from the same function the job uses.
avro_limits=$(cd /opt/userstream && python3 -c \
    'from core.settings import load_settings; from spark.session import avro_limit_java_options; print(avro_limit_java_options(load_settings()))')

exec "$SPARK_HOME/bin/spark-submit" \
    --master "$SPARK_MASTER" \
    --deploy-mode client \
    --name user_stream \
    --jars "$jars" \
    --driver-java-options "$avro_limits" \
    --conf spark.driver.host="$(hostname)" \
    --conf spark.driver.bindAddress=0.0.0.0 \
    --conf spark.cores.max=2 \
    --conf spark.executor.memory=768m \
    /opt/userstream/jobs/stream_job.py "$@"
