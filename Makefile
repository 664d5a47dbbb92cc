# Everything runs from the project's own .venv, created by `make install` with uv (bootstrapped
# from PyPI into .uv/). Only Python 3.11 and make are needed on the machine.
PYTHON ?= python3
VENV := .venv
UV := .uv/bin/uv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(VENV)
# Compile every installed module to bytecode at install time, and let Python cache our own:
# with PYTHONDONTWRITEBYTECODE set (some CI images do) each start would recompile Dagster and
# dbt from source, ten seconds and more.
export UV_COMPILE_BYTECODE := 1
unexport PYTHONDONTWRITEBYTECODE
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home

REDIS_DIR := .redis
REDIS_PORT ?= 6379

.PHONY: install system-packages demo scenario test soak dev serve stream redis-up redis-down lint fmt \
	bench bench-quick clean postgres-up postgres-down dev-postgres

install: $(STAMP) system-packages

# Programs some features need from the system (Debian packages), installed with apt-get when
# `make install` runs as root and they are missing; otherwise their tests skip, saying why.
# One line per package: PACKAGE then the programs (on PATH, or paths/globs) that provide it.
system-packages:
	@scripts/system-packages.sh postgresql pg_ctl '/usr/lib/postgresql/*/bin/pg_ctl'
	@scripts/system-packages.sh chromium chromium chromium-browser
	@scripts/system-packages.sh redis-server redis-server

$(UV):
	$(PYTHON) -m venv .uv
	.uv/bin/pip install --quiet --disable-pip-version-check "uv==0.13.9"

$(STAMP): pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --python $(PYTHON)
	@touch $(STAMP)

$(DAGSTER_HOME)/dagster.yaml: dagster.yaml
	@mkdir -p $(DAGSTER_HOME)
	cp dagster.yaml $(DAGSTER_HOME)/dagster.yaml

demo: install $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/fti demo

# The loop end to end (docs/scenario.md): a world whose data drift, released a day at a time and
# carried by the platform's own sensors and automation (landing -> features -> scoring ->
# monitoring -> breach -> retraining -> gates -> promotion). The defaults (500 cards, 88 days,
# concept drift from day 57, 36 simulated days) take about 26 min on 2 cores: ~20 s of CPU per
# simulated day. Sizes and drift through SCENARIO_ARGS (`.venv/bin/fti scenario drift --help`):
#   make scenario SCENARIO_ARGS="--days 66 --drift-kind covariate"
SCENARIO_ARGS ?=
SCENARIO_DATA ?= data/scenario
SCENARIO_OUT ?= $(SCENARIO_DATA)/out

scenario: install
	$(BIN)/fti scenario drift --data-dir $(SCENARIO_DATA) --out $(SCENARIO_OUT) $(SCENARIO_ARGS)
	@echo "scenario outputs in $(SCENARIO_OUT)/: scenario_timeline.png (the timeline)," \
		"scenario.md (summary), scenario.json (a row per day); its data and Dagster instance" \
		"in $(SCENARIO_DATA)/ (runs: DAGSTER_HOME=$(abspath $(SCENARIO_DATA))/dagster_home $(BIN)/dagster run list)"

# As root, `make install` apt-gets postgresql, redis-server and chromium: their tests must then
# run, so a missing program fails them instead of skipping (tests/conftest.py).
test: install
	FTI_REQUIRE_SYSTEM_PACKAGES=$$([ "$$(id -u)" = 0 ] && echo 1 || echo 0) \
		$(BIN)/pytest -n 2 --dist loadgroup --durations=15

# Crash trials (tests/crash): 20 SIGKILLs per kind instead of make test's 3, a line per kind.
soak: install
	FTI_CRASH_TRIALS=20 $(BIN)/pytest tests/crash -q -s

dev: install $(DAGSTER_HOME)/dagster.yaml
	@# The report links in the UI point at the reports server (FTI_REPORTS_URL, port 3001).
	@$(BIN)/fti reports serve --port 3001 & reports=$$!; \
	trap 'kill $$reports 2>/dev/null' EXIT INT TERM; \
	$(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

# The scale-out data layer on a local PostgreSQL server (docs/scale-out.md), chosen by FTI_PG_DIR
# (.pg/), FTI_PG_PORT (5433), FTI_PG_USER (fti), FTI_PG_PASSWORD (empty: trust 127.0.0.1).
# `postgres-up` prints the variables clients need: eval "$(make -s postgres-up)".
PG_DAGSTER_HOME := $(CURDIR)/.dagster_home_pg

postgres-up: install
	@$(BIN)/python scripts/postgres.py up

postgres-down: install
	@$(BIN)/python scripts/postgres.py down

# Dagster's runs/event log/schedules AND the lake's catalog on that server; the lake's Parquet
# files under FTI_LAKE_DATA_PATH (default: lake_postgres/data/ in FTI_DATA_DIR).
$(PG_DAGSTER_HOME)/dagster.yaml: dagster.yaml dagster-postgres.yaml
	@mkdir -p $(PG_DAGSTER_HOME)
	cat dagster.yaml dagster-postgres.yaml > $@

dev-postgres: postgres-up $(PG_DAGSTER_HOME)/dagster.yaml
	eval "$$($(BIN)/python scripts/postgres.py env)" && DAGSTER_HOME=$(PG_DAGSTER_HOME) \
		$(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

serve: install
	$(BIN)/fti serve --host 127.0.0.1 --port 8000

# The streaming feature pipeline: event log -> card window state -> online store (Ctrl-C stops).
stream: install
	$(BIN)/fti stream

# A redis-server for development on 127.0.0.1:$(REDIS_PORT) (data in $(REDIS_DIR)/, append-only
# file on). Then: FTI_ONLINE_URL=redis://127.0.0.1:$(REDIS_PORT)/0 (and FTI_EVENT_LOG_URL).
redis-up: system-packages
	@mkdir -p $(REDIS_DIR)
	redis-server --daemonize yes --bind 127.0.0.1 --port $(REDIS_PORT) --dir $(CURDIR)/$(REDIS_DIR) \
		--appendonly yes --pidfile $(CURDIR)/$(REDIS_DIR)/redis.pid \
		--logfile $(CURDIR)/$(REDIS_DIR)/redis.log
	@echo "redis on 127.0.0.1:$(REDIS_PORT); export FTI_ONLINE_URL=redis://127.0.0.1:$(REDIS_PORT)/0"

redis-down:
	redis-cli -p $(REDIS_PORT) shutdown

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

fmt: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: install
	$(BIN)/python -m benchmarks.run --scale full

bench-quick: install
	$(BIN)/python -m benchmarks.run --scale quick --out .bench/BENCHMARKS.quick.md

clean:
	rm -rf data .dagster_home .dagster_home_pg dbt_project/target dbt_project/logs .pytest_cache \
		.ruff_cache .bench $(REDIS_DIR)
