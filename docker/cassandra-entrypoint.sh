#!/usr/bin/env bash
# Cassandra with CQL password auth, for docker-compose.yml (service cassandra):
#   1. turn on PasswordAuthenticator and CassandraAuthorizer in the image's cassandra.yaml
#      (the image's own entrypoint sets only a few keys from CASSANDRA_* variables);
#   2. once CQL answers, create the pipeline's superuser role CASSANDRA_USERNAME with
#      CASSANDRA_PASSWORD from .env (as the built-in `cassandra` role), then lock the
#      built-in role (no login, no superuser, a random password);
#   3. hand over to the image's entrypoint.
# Step 2 runs in the background and stops as soon as the pipeline's role logs in, so
# a restart with an existing data volume does nothing there.
set -euo pipefail

: "${CASSANDRA_USERNAME:?CASSANDRA_USERNAME is not set}"
: "${CASSANDRA_PASSWORD:?CASSANDRA_PASSWORD is not set (see .env.example)}"
CONF=${CASSANDRA_CONF:-/etc/cassandra}/cassandra.yaml

python3 - "$CONF" <<'PY'
import re
import sys

path = sys.argv[1]
text = open(path).read()
for key, name in (("authenticator", "PasswordAuthenticator"), ("authorizer", "CassandraAuthorizer")):
    # "key: Class" or the parameterized form "key:\n  class_name : ...".
    text, count = re.subn(rf"^{key}:.*(\n[ \t]+class_name\s*:.*)?$", f"{key}: {name}", text, count=1, flags=re.M)
    if count != 1:
        sys.exit(f"cassandra-entrypoint: no '{key}:' line in {path}")
open(path, "w").write(text)
PY

quoted_password=${CASSANDRA_PASSWORD//\'/\'\'}
locked_password=$(head -c 24 /dev/urandom | base64 | tr -d '/+=')

bootstrap_role() {
    # Until the pipeline's role logs in: create it as the built-in role (refused while the node
    # is still starting, hence the retry). Then lock the built-in role; idempotent on every start.
    until cqlsh -u "$CASSANDRA_USERNAME" -p "$CASSANDRA_PASSWORD" -e "SELECT release_version FROM system.local" >/dev/null 2>&1; do
        cqlsh -u cassandra -p cassandra \
            -e "CREATE ROLE IF NOT EXISTS \"$CASSANDRA_USERNAME\" WITH SUPERUSER = true AND LOGIN = true AND PASSWORD = '$quoted_password'" \
            >/dev/null 2>&1 || sleep 5
    done
    if cqlsh -u "$CASSANDRA_USERNAME" -p "$CASSANDRA_PASSWORD" \
        -e "ALTER ROLE cassandra WITH SUPERUSER = false AND LOGIN = false AND PASSWORD = '$locked_password'" >/dev/null; then
        echo "cassandra-entrypoint: role $CASSANDRA_USERNAME logs in; built-in role cassandra locked"
    else
        echo "cassandra-entrypoint: could not lock the built-in role cassandra (see the cqlsh error above)" >&2
    fi
}
bootstrap_role &

exec docker-entrypoint.sh "$@"
