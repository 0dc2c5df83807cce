# Developer entry points. `make run` serves, `make test` is what CI runs (via .ci/run).
PYTHON ?= python3
PORT ?= 8000
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-python test-ts test-e2e lint typecheck hypothesis-long bench clean check-python

# Fails early, with the fix in the message, rather than deep inside pip or mypy.
check-python:
	@command -v $(PYTHON) >/dev/null 2>&1 || { \
		echo "error: '$(PYTHON)' not found; Touchline needs Python >= 3.11 (make PYTHON=python3.11 ...)" >&2; \
		exit 1; }
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else \
		"error: Touchline needs Python >= 3.11 but $(PYTHON) is " + sys.version.split()[0] + \
		"; run make with PYTHON=python3.11 (or newer)")'

$(STAMP): pyproject.toml | check-python
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -e '.[dev]'
	touch $@

run: check-python $(STAMP)
	$(BIN)/sync-server migrate
	$(BIN)/sync-server serve --port $(PORT)

test: check-python $(STAMP) lint typecheck test-python test-ts test-e2e

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

test-python: $(STAMP)
	$(BIN)/pytest

# Hook for the TypeScript client's tests: a no-op until clients/typescript/package.json exists.
test-ts:
	@if [ -f clients/typescript/package.json ]; then \
		cd clients/typescript && \
		if [ -f package-lock.json ]; then npm ci; else npm install; fi && \
		npm test; \
	else \
		echo "test-ts: no clients/typescript/package.json yet; nothing to run"; \
	fi

# The browser story (clients/demo): two coaches on the demo page in headless Chromium, offline
# and back, and a parent on the share link, against a real server from the venv. Chromium is
# Debian's (/usr/bin/chromium, installed by .ci/run); no browser is ever downloaded.
CHROMIUM := /usr/bin/chromium
test-e2e: $(STAMP)
	@if [ ! -x $(CHROMIUM) ]; then \
		if [ "$$CI" = "true" ]; then \
			echo "test-e2e: FAILED: $(CHROMIUM) is missing; the browser tests need Debian's chromium package (apt-get install -y chromium, as .ci/run does)" >&2; \
			exit 1; \
		fi; \
		echo "************************************************************************"; \
		echo "test-e2e: SKIPPED: $(CHROMIUM) is missing, so the browser tests did not run."; \
		echo "test-e2e: install Debian's chromium package (apt-get install -y chromium) to run them."; \
		echo "************************************************************************"; \
		exit 0; \
	fi; \
	cd clients/demo && npm ci && CHROMIUM=$(CHROMIUM) npm test

# The merge's convergence properties and the three-device state machine at 100,000 examples
# each (about 40 minutes on two cores); results in bench/README.md.
hypothesis-long: $(STAMP)
	HYPOTHESIS_PROFILE=long $(BIN)/pytest -q -p no:cacheprovider --durations=0 \
		tests/protocol/test_protocol_convergence.py tests/protocol/test_protocol_merge.py \
		-k "TestSync or same_state or associative"

# Push throughput and pull latency beside the bare stack; see bench/README.md.
bench: $(STAMP)
	$(BIN)/python bench/push_pull.py $(BENCH_ARGS)

# Leaves data/ alone: it holds the local database and the development secret.
clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis dist build *.egg-info
	find . -name __pycache__ -type d -prune -not -path './node_modules/*' -exec rm -rf {} +
