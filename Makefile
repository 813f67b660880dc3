# The README's commands. Each one sets up what it needs on a fresh clone.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LAUNCH := $(BIN)/python -m config.launcher

.PHONY: run test lint format bench install browser clean

run: $(STAMP)
	$(LAUNCH) run

test: $(STAMP) browser
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	SECRET_KEY=$${SECRET_KEY:-test-only-secret-key} $(LAUNCH) exec -- $(BIN)/pytest $(PYTEST_ARGS)

bench: $(STAMP)
	SECRET_KEY=$${SECRET_KEY:-bench-only-secret-key} $(LAUNCH) exec -- $(BIN)/python -m tests.bench $(BENCH_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

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

clean:
	rm -rf $(VENV)
