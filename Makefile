# The two commands: `make run` and `make test`. Both work on a machine with only python3, if it is 3.11.
# pyproject.toml pins 3.11: prefer python3.11 when it runs (a pyenv shim may exist without it), else python3.
PYTHON_VERSION := 3.11
PYTHON ?= $(shell python$(PYTHON_VERSION) -c '' >/dev/null 2>&1 && echo python$(PYTHON_VERSION) || echo python3)
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
# Only this machine by default: the embedded default has the sandbox cashier (pays any order) and admin/admin.
HOST ?= 127.0.0.1

.PHONY: run test install lint schema bench clean

# Checked before the venv exists: a venv of another Python would fail later, far from the cause.
$(BIN)/python:
	@found="$$($(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)"; \
	if [ "$$found" != "$(PYTHON_VERSION)" ]; then \
		echo "Python $(PYTHON_VERSION) is needed, but $(PYTHON) is $${found:-not a working Python}: install python$(PYTHON_VERSION) or run make PYTHON=/path/to/python$(PYTHON_VERSION)." >&2; \
		exit 1; \
	fi
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

install: $(VENV)/.installed

run: install
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py ensure_dev_superuser
	$(BIN)/python manage.py seed_demo_products
	@if [ "$(HOST)" != "127.0.0.1" ] && [ "$(HOST)" != "localhost" ]; then \
		echo ""; \
		echo "  WARNING: serving on $(HOST), with DEBUG on: anyone who reaches port $(PORT) can pay any order at the"; \
		echo "  sandbox cashier and log in to the admin as admin/admin. Use HOST=127.0.0.1 (the default) unless you mean it."; \
	fi
	@echo ""
	@echo "  GraphiQL:  http://localhost:$(PORT)/graphql/"
	@echo "  Sandbox:   http://localhost:$(PORT)/sandbox/"
	@echo "  Admin:     http://localhost:$(PORT)/admin/   (login admin / admin)"
	@echo "  Health:    http://localhost:$(PORT)/healthz"
	@echo ""
	@# Unbuffered: piped (tee, a log file, a test), the server's lines still show as they happen.
	PORT=$(PORT) PYTHONUNBUFFERED=1 $(BIN)/python manage.py runserver $(HOST):$(PORT)

# tests/start_postgres_redis.py picks PostgreSQL and Redis when reachable (and starts them under CI=true,
# failing if it cannot); otherwise SQLite and locmem, and pytest lists what it skipped.
test: install
	@env_lines="$$($(BIN)/python tests/start_postgres_redis.py)" && eval "$$env_lines" && $(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/mypy

schema: install
	$(BIN)/python manage.py graphql_schema --schema schema.schema.schema --out schema.graphql

# Load benchmark (by hand; see bench/README.md): gunicorn, PostgreSQL, Redis and wrk on this machine.
bench: install
	bash bench/run.sh

clean:
	rm -rf $(VENV) db.sqlite3 .pytest_cache
