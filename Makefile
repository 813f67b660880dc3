# The README's commands. Each one sets up what it needs on a fresh clone.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LAUNCH := $(BIN)/python -m config.launcher
UV_VERSION := 0.13.8

.PHONY: run test lint format bench install browser bench-tools clean lock

run: $(STAMP)
	$(LAUNCH) run

test: $(STAMP) browser lint node_modules/.package-lock.json
	SECRET_KEY=$${SECRET_KEY:-test-only-secret-key} $(LAUNCH) exec -- $(BIN)/pytest $(PYTEST_ARGS)

# The real CleverTap web SDK for the browser tests (package-lock.json pins it).
node_modules/.package-lock.json: package-lock.json
	npm ci --no-audit --no-fund

bench: $(STAMP) bench-tools
	SECRET_KEY=$${SECRET_KEY:-bench-only-secret-key} $(LAUNCH) exec -- $(BIN)/python -m tests.bench $(BENCH_ARGS)

# Lint, format, types, and models that agree with their migrations.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	# mypy loads the settings, which only parse DATABASE_URL: no server is needed.
	SECRET_KEY=lint-only-secret-key DATABASE_URL=postgres://localhost/typecheck $(BIN)/mypy .
	SECRET_KEY=$${SECRET_KEY:-lint-only-secret-key} $(LAUNCH) exec -- $(BIN)/python manage.py makemigrations --check --dry-run

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

install: $(STAMP)

# Every install takes the exact versions and hashes in requirements.lock
# (regenerate it with `make lock` after changing pyproject.toml).
$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet 'uv==$(UV_VERSION)'
	$(BIN)/uv pip install --quiet --python $(BIN)/python --require-hashes -r requirements.lock
	touch $(STAMP)

lock: $(STAMP)
	$(BIN)/uv pip compile pyproject.toml --extra dev --generate-hashes --python-version 3.11 \
		--python-platform x86_64-manylinux_2_28 --quiet -o requirements.lock

# Browser tests drive Debian's Chromium. Install it when missing and we are
# root; otherwise the browser tests say so loudly and skip.
browser:
	@if [ ! -x /usr/bin/chromium ]; then \
		if [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null; then \
			echo "Installing Debian's chromium for the browser tests..."; \
			(apt-get install -y -q chromium || (apt-get update -q && apt-get install -y -q chromium)) >/dev/null; \
		else \
			echo "WARNING: /usr/bin/chromium is missing and we cannot install it: browser tests will be SKIPPED."; \
		fi; \
	fi

# The sdk part's load generator is Debian's wrk (one C thread): a Python client would
# take the cores it measures. Installed when missing and we are root, like chromium.
bench-tools:
	@if ! command -v wrk >/dev/null; then \
		if [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null; then \
			echo "Installing Debian's wrk for the sdk part..."; \
			(apt-get install -y -q wrk || (apt-get update -q && apt-get install -y -q wrk)) >/dev/null; \
		else \
			echo "WARNING: wrk is missing and we cannot install it: the sdk part uses its slower asyncio client."; \
		fi; \
	fi

clean:
	rm -rf $(VENV)
