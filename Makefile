# The developer actions. CI runs `make test` (through .ci/run), exactly as a person would.
VENV := .venv
BIN := $(VENV)/bin
PYTEST := $(BIN)/pytest -q -p no:cacheprovider

.PHONY: install demo check test test-fast bench down clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml scripts/install.sh
	bash scripts/install.sh
	touch $@

demo: install
	$(BIN)/slipstream up --detach
	$(BIN)/slipstream apply examples/render.yaml
	@$(BIN)/slipstream status

# lint, formatting and strict types; `make test` runs it first
check: install
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

# everything on two workers, a test file per unit of work (tests/conftest.py says why two files can
# run at once, which ones cannot, and in what order they are handed out); bytecode cached as for
# test-fast: the e2e tests start `python -m slipstream` hundreds of times, and without a cache each
# start compiled every module it imports
test: check
	env -u PYTHONDONTWRITEBYTECODE $(PYTEST) -n 2 --dist loadfile --durations=15

# unit and in-process tests only (no real daemon, database or app): seconds, for the edit loop;
# on two workers, with bytecode cached (a machine-wide PYTHONDONTWRITEBYTECODE=1 recompiled every
# module and re-rewrote every test file on each run: ~5 s of collection)
test-fast: install
	env -u PYTHONDONTWRITEBYTECODE $(PYTEST) -n 2 -m "not e2e and not real and not slow"

bench: install
	$(BIN)/python -m bench.run

down:
	@if [ -x $(BIN)/slipstream ]; then $(BIN)/slipstream down; else echo "slipstream is not installed"; fi

clean: down
	rm -rf $(VENV)
