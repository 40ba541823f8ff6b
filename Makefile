# Datagate: `make run` starts the gateway on the embedded default, `make test` runs every check.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench bench-scale bench-privacy bench-lineage bench-history bench-console load clean

$(STAMP): pyproject.toml constraints.txt
	@echo "make: installing Datagate and its dependencies into $(VENV) (first run, or after a dependency change; a few minutes)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	@echo "make: starting Datagate on http://127.0.0.1:8000 (SQLite and snapshots in .datagate/, contracts from contracts/; Ctrl-C stops it)"
	$(BIN)/datagate serve

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint
	$(BIN)/pytest

bench: $(STAMP)
	$(BIN)/python -m bench.ingest

bench-scale: $(STAMP)
	$(BIN)/python -m bench.scale
	$(BIN)/python -m bench.spread

bench-privacy: $(STAMP)
	$(BIN)/python -m bench.privacy

# Evidently (the comparison) lives in a virtualenv of its own: it needs pandas < 3.
EVIDENTLY := .venv-evidently/.installed
$(EVIDENTLY): bench/evidently-requirements.txt
	python3 -m venv .venv-evidently
	.venv-evidently/bin/python -m pip install --quiet -r bench/evidently-requirements.txt
	touch $(EVIDENTLY)

bench-history: $(STAMP) $(EVIDENTLY)
	$(BIN)/python -m bench.history --evidently .venv-evidently/bin/python

bench-console: $(STAMP)
	$(BIN)/python -m bench.console

bench-lineage: $(STAMP)
	$(BIN)/python -m bench.lineage

load: $(STAMP)
	$(BIN)/python -m bench.load

clean:
	rm -rf $(VENV) .datagate .pytest_cache .mypy_cache .ruff_cache
