#!/usr/bin/env bash
# One-shot Airflow setup for docker-compose.yml (service airflow-init):
#   1. migrate the metadata database (PostgreSQL);
#   2. write the SimpleAuthManager password file with AIRFLOW_ADMIN_PASSWORD, so
#      the admin password is the one chosen in .env instead of a generated one
#      that only the api-server's log shows. `make status` reads the same file.
# Fails loudly on either step: the Airflow components wait for this to succeed.
set -euo pipefail

: "${AIRFLOW_ADMIN_PASSWORD:?AIRFLOW_ADMIN_PASSWORD is not set (see .env.example)}"
: "${AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE:?the password file path is not set}"

airflow db migrate

python - <<'PY'
import json
import os
from pathlib import Path

path = Path(os.environ["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"])
path.parent.mkdir(parents=True, exist_ok=True)
path.write_text(json.dumps({"admin": os.environ["AIRFLOW_ADMIN_PASSWORD"]}) + "\n")
path.chmod(0o600)
print(f"airflow-init: admin password written to {path}")
PY
