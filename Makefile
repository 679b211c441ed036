# The developer actions. CI runs `make test` (through .ci/run), exactly as a person would.
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install demo test bench down clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml scripts/install.sh
	bash scripts/install.sh
	touch $@

demo: install
	$(BIN)/slipstream up --detach
	$(BIN)/slipstream apply examples/render.yaml
	@$(BIN)/slipstream status

test: install
	$(BIN)/pytest -q -p no:cacheprovider

bench: install
	$(BIN)/python -m bench.run

down:
	@if [ -x $(BIN)/slipstream ]; then $(BIN)/slipstream down; else echo "slipstream is not installed"; fi

clean: down
	rm -rf $(VENV)
