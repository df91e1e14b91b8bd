# The README's two commands: `make demo` and `make test`. Both set up .venv first.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench lint typecheck clean workflows-demo

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/scorebus demo

# The AI-workflow loop end to end (a few seconds): see docs/workflows.md.
workflows-demo: $(STAMP)
	$(BIN)/python -m examples.workflows.run

test: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider

# The whole suite (~10 minutes on 2 cores); `make bench BENCH_ARGS=--quick` is a smoke run.
# The `bench` extra adds the Apache Beam peer and matplotlib for docs/benchmarks.png.
BENCH_STAMP := $(VENV)/.installed-bench
BENCH_ARGS ?=

$(BENCH_STAMP): $(STAMP) pyproject.toml
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(BIN)/python -m benchmarks.run $(BENCH_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/ruff format --check src tests benchmarks examples
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .scorebus
