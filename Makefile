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

.PHONY: install redis-server demo test dev serve stream redis-up redis-down lint fmt bench \
	bench-quick clean

install: $(STAMP) redis-server

# The Redis online store, event log and test fixtures need Debian's redis-server. Installed with
# apt-get when it is missing and make runs as root; otherwise the Redis tests skip and say why.
redis-server:
	@command -v redis-server >/dev/null 2>&1 || { \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			echo "installing redis-server (Debian package)"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
				redis-server >/dev/null; \
		else \
			echo "note: redis-server is not installed and make is not root; the Redis tests" \
				"will skip (as root: apt-get install redis-server)"; \
		fi; }

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

test: install
	$(BIN)/pytest -n 2 --dist loadgroup

dev: install $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

serve: install
	$(BIN)/fti serve --host 127.0.0.1 --port 8000

# The streaming feature pipeline: event log -> card window state -> online store (Ctrl-C stops).
stream: install
	$(BIN)/fti stream

# A redis-server for development on 127.0.0.1:$(REDIS_PORT) (data in $(REDIS_DIR)/, append-only
# file on). Then: FTI_ONLINE_URL=redis://127.0.0.1:$(REDIS_PORT)/0 (and FTI_EVENT_LOG_URL).
redis-up: redis-server
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
	rm -rf data .dagster_home dbt_project/target dbt_project/logs .pytest_cache .ruff_cache .bench \
		$(REDIS_DIR)
