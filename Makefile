# orderstream: `make run` starts everything on one machine, `make test` runs the suite.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: run test test-faults test-soak chromium axe compose bench bench-state lint clean screenshot

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# One stamp per extra, rebuilt when pyproject.toml changes.
$(VENV)/.installed-%: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[$*]'
	@touch $@

run: $(VENV)/.installed-embedded
	@$(BIN)/python scripts/run.py

test: $(VENV)/.installed-test chromium axe compose
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# axe-core from npm, for the dashboard's accessibility check in the browser tests, into
# .cache/npm once; without npm the check skips with a line saying why.
AXE_VERSION := 4.14.1
axe:
	@if [ -e .cache/npm/node_modules/axe-core/axe.min.js ]; then :; \
	elif command -v npm >/dev/null; then \
	  npm install --silent --no-audit --no-fund --prefix .cache/npm axe-core@$(AXE_VERSION) \
	    >/dev/null || echo "npm could not install axe-core: the accessibility check will skip"; \
	else echo "no npm: the accessibility check will skip"; fi

# docs/dashboard.png (shown in the README): make run's stack with datagen at 50 orders/s on
# spare ports, the dashboard after a minute, in headless Chromium.
screenshot: $(VENV)/.installed-test chromium
	$(BIN)/python scripts/screenshot.py

# Debian's Chromium for the browser tests, installed where apt-get can (as root), tried
# once per venv; elsewhere the browser tests skip with a line saying why (CHROMIUM=path
# points them at another Chromium).
chromium: | $(BIN)/python
	@if [ -x "$${CHROMIUM:-/usr/bin/chromium}" ] || [ -e $(VENV)/.chromium-tried ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing Debian's chromium for the browser tests"; \
	  touch $(VENV)/.chromium-tried; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) \
	    >/dev/null || echo "chromium could not be installed: the browser tests will skip"; \
	else echo "no chromium (sudo apt-get install chromium): the browser tests will skip"; fi

# Broker faults on Apache Kafka (~5 min): the broker stopped for 20 s mid-stream (SIGTERM,
# SIGKILL), one broker of three killed; 0 lost, 0 doubled. Not part of `make test`.
test-faults: $(VENV)/.installed-test
	$(BIN)/python -m pytest -m faults tests/integration/test_kafka_faults.py $(PYTEST_ARGS)

# Debian's docker-compose (Compose v1, 1.29) for the compose checks, installed like
# chromium; PyPI's 1.29 no longer builds on Python 3.11. --no-install-recommends: the
# recommends pull in a Docker engine, which the checks do not need.
compose: | $(BIN)/python
	@if command -v docker-compose >/dev/null || [ -e $(VENV)/.compose-tried ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing Debian's docker-compose for the compose checks"; \
	  touch $(VENV)/.compose-tried; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    --no-install-recommends docker-compose) >/dev/null \
	    || echo "docker-compose could not be installed: the compose checks will skip"; \
	else echo "no docker-compose (sudo apt-get install docker-compose): the compose checks will skip"; fi

# N=<orders> (default 200000), 3 runs (medians); BENCH_ARGS="--runs 1 --only raw,orderstream"
# or "--no-scaling" for a quicker look. The `bench` extra is Quix Streams, the peer.
# On tansu (the embedded broker) only, by default; BENCH_ARGS="--broker kafka" (or "both")
# runs every pipeline on an Apache Kafka node the bench starts (Java 17+; Maven fetches the
# jars into .cache/kafka once), with Quix exactly-once and orderstream without transactions.
bench: $(VENV)/.installed-test,bench
	$(BIN)/python scripts/bench.py $(BENCH_ARGS)

# Query latency under full-speed ingest, lookups/s at 50 connections, recovery with ~1M
# window rows, worker RSS after 1M orders (scripts/bench_state.py; STATE_ARGS="--only latency" for one of them).
# On tansu by default; STATE_ARGS="--only recovery --broker kafka": the restore from compacted changelogs.
bench-state: $(VENV)/.installed-test
	$(BIN)/python scripts/bench_state.py $(STATE_ARGS)

# 30 minutes at 2,000 orders/s, 100 live-push clients, 10 lookups/s, kill -9 every 5 min;
# then lost/doubled/went-back checks and the RSS slope (scripts/soak.py; SOAK_ARGS="--minutes 5").
# Not in CI.
test-soak: $(VENV)/.installed-test
	$(BIN)/python scripts/soak.py $(SOAK_ARGS)

# ruff, then mypy --strict on the packages ([tool.mypy] in pyproject.toml).
lint: $(VENV)/.installed-test
	$(BIN)/pip install -q ruff
	$(BIN)/ruff check .
	$(BIN)/python -m mypy

clean:
	rm -rf data .pytest_cache
