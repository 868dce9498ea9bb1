# One entry point per user action; every target is a thin call into a
# `python -m` command, so each also works without make.
#
#   make demo    the whole pipeline end to end on the embedded stack (the main job)
#   make test    unit, integration and end-to-end tests against the real services
#   make test-fast  only the tests that need no service, JDK, Airflow, Spark or browser
#
# Both install what they need first (Python venv from requirements.lock,
# jars through Maven from stack/pom.xml).

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
export PYTHONUNBUFFERED := 1

# `make up SECURE=1` (or any target with SECURE=1): the secured embedded stack, STACK_SECURITY=on
# (Kafka SASL_SSL, registry HTTPS + basic auth, Cassandra password + TLS; stack/security.py).
ifdef SECURE
export STACK_SECURITY := on
endif

.PHONY: setup jars browser up up-all down status monitor clean register cassandra-schema stream demo test test-fast bench lock

setup: $(VENV)/.installed jars

$(VENV)/.installed: requirements.lock pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "setup: $(PYTHON) not found; install Python 3.10-3.12" >&2; exit 1; }
	@echo "setup: Python venv in $(VENV) from requirements.lock"
	$(PYTHON) -m venv $(VENV)
	@# uv installs the same pinned set as pip, 2.4x faster on a cold cache (36 s against 88 s here): CI starts cold.
	$(PY) -m pip install --quiet uv==0.13.9
	$(PY) -m uv pip install --quiet --python $(PY) -r requirements.lock
	$(PY) -m uv pip install --quiet --python $(PY) --no-deps -e .
	@touch $@

jars: $(VENV)/.installed
	$(PY) -m stack fetch

# Chromium and its driver for the monitor's browser tests (tests/ops/test_monitor_browser.py),
# from Debian's packages when missing: CI starts from a fresh machine.
browser:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; \
	elif command -v apt-get >/dev/null; then \
	  echo "browser: installing chromium and chromium-driver (Debian packages)"; \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q chromium chromium-driver; \
	else echo "browser: install Chromium and chromedriver (Debian: apt-get install chromium chromium-driver)" >&2; exit 1; fi

up: setup
	$(PY) -m stack up

up-all: setup
	$(PY) -m stack up --all

down:
	@if [ -x $(PY) ]; then $(PY) -m stack down; else echo "down: no venv, nothing was started by make"; fi

status: setup
	$(PY) -m ops.status

monitor: setup
	$(PY) -m stack up monitor

clean: down
	$(PY) -m stack clean

register: setup
	$(PY) -m producer.register

cassandra-schema: setup
	$(PY) -m core.cassandra_schema

stream: setup
	$(PY) -m stack up stream

demo: setup
	$(PY) -m stack up monitor
	$(PY) -m ops.demo $(DEMO_ARGS)

test: setup browser
	$(PY) -m stack test $(PYTEST_ARGS)

# The fast tier: every test no marker of pyproject.toml's list sends to the stack, a JDK,
# Airflow, Spark or a browser; it starts nothing and needs no jars (tests/test_tiers.py
# keeps this expression naming every marker).
FAST_TESTS := not integration and not spark and not airflow and not e2e and not faults and not jdk and not browser

test-fast: $(VENV)/.installed
	$(PY) -m pytest -m "$(FAST_TESTS)" $(PYTEST_ARGS)

bench: setup
	$(PY) -m stack run-with-stack -- $(PY) -m bench $(BENCH_ARGS)

lock:
	rm -rf /tmp/userstream-lock-venv
	$(PYTHON) -m venv /tmp/userstream-lock-venv
	/tmp/userstream-lock-venv/bin/pip install --quiet -r requirements.in
	{ echo "# pip freeze of a venv built from requirements.in on Python 3.11 (Linux x86_64)."; \
	  echo "# Regenerate: make lock"; \
	  /tmp/userstream-lock-venv/bin/pip freeze --exclude-editable; } > requirements.lock
