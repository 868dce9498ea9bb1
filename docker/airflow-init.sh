#!/usr/bin/env bash
# One-shot Airflow setup for docker-compose.yml (service airflow-init):
#   0. make sure the Fernet key file exists (AIRFLOW_FERNET_KEY_FILE, on the airflow-auth
#      volume, 0600): AIRFLOW_FERNET_KEY from .env if given, else a new key, written once and
#      kept; every component reads it through AIRFLOW__CORE__FERNET_KEY_CMD, so connections
#      and variables are never stored unencrypted;
#   1. migrate the metadata database (PostgreSQL);
#   2. write the SimpleAuthManager password file with AIRFLOW_ADMIN_PASSWORD, so
#      the admin password is the one chosen in .env instead of a generated one
#      that only the api-server's log shows. `make status` reads the same file.
# Fails loudly on either step: the Airflow components wait for this to succeed.
set -euo pipefail

: "${AIRFLOW_ADMIN_PASSWORD:?AIRFLOW_ADMIN_PASSWORD is not set (see .env.example)}"
: "${AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE:?the password file path is not set}"

: "${AIRFLOW_FERNET_KEY_FILE:?the Fernet key file path is not set}"

python - <<'PY'
import os
from pathlib import Path

from cryptography.fernet import Fernet

path = Path(os.environ["AIRFLOW_FERNET_KEY_FILE"])
given = os.environ.get("AIRFLOW_FERNET_KEY", "").strip()
if path.exists() and path.read_text().strip():
    if given and given != path.read_text().strip():
        raise SystemExit(f"airflow-init: AIRFLOW_FERNET_KEY differs from the key already in {path}; "
                         "remove one of them (changing keys needs `airflow rotate-fernet-key`)")
    print(f"airflow-init: Fernet key kept in {path}")
else:
    key = given or Fernet.generate_key().decode()
    Fernet(key.encode())  # refuses a malformed key here, not at the first encrypted connection
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(key + "\n")
    print(f"airflow-init: Fernet key {'from AIRFLOW_FERNET_KEY' if given else 'generated'} in {path}")
PY

airflow db migrate

python - <<'PY'
import json
import os
from pathlib import Path

path = Path(os.environ["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"])
path.parent.mkdir(parents=True, exist_ok=True)
fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # private from the first byte
with os.fdopen(fd, "w") as out:
    out.write(json.dumps({"admin": os.environ["AIRFLOW_ADMIN_PASSWORD"]}) + "\n")
path.chmod(0o600)  # a file left by an older init
print(f"airflow-init: admin password written to {path}")
PY
