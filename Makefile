# `make test` from a fresh clone: creates .venv, installs, runs ruff, mypy and pytest.
# `make up` from a fresh clone: the same install, then the whole herd on ./topology.yaml.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test lint unit bench clean up down native

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -e '.[test,lint]'
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check node herdctl tests bench tools
	$(BIN)/ruff format --check node herdctl tests bench tools
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest -q

test: lint unit

up: $(STAMP)
	$(BIN)/herdctl up

down: $(STAMP)
	$(BIN)/herdctl down

# `make bench BENCH_ARGS=--quick` for a smoke run; see README "Performance". The figures are
# measured on uvloop, as shipped with the `fast` extra.
BENCH_ARGS ?=
FAST_STAMP := $(VENV)/.installed-fast

$(FAST_STAMP): $(STAMP)
	$(BIN)/pip install --quiet -e '.[test,lint,fast]'
	touch $(FAST_STAMP)

# The compiled core (node/native.py): rebuilt when a compiled module or the C scanner
# changes. Without a C compiler the build says so and the node runs from source.
NATIVE_SOURCES := $(foreach m,protocol store ingest entries replies counters logbook reader turn_journal turn_writes client server journal peers/inbound peers/outbound,node/$(m).py)
NATIVE_SOURCES += node/_blocks.c node/_kept.c node/_order.c
NATIVE := $(VENV)/herd-native/herd-native.json

$(NATIVE): $(FAST_STAMP) $(NATIVE_SOURCES) node/native.py tools/build_native.py
	$(BIN)/python tools/build_native.py || true

native: $(NATIVE)

bench: $(FAST_STAMP) $(NATIVE)
	$(BIN)/python bench/run.py $(BENCH_ARGS)
	$(BIN)/python bench/places_bench.py
	$(BIN)/python bench/startup.py
	$(BIN)/python bench/observed.py
	$(BIN)/python bench/hops.py
	$(BIN)/python bench/hop_steps.py
	$(BIN)/python bench/polled_steps.py
	$(BIN)/python bench/in_process.py
	$(BIN)/python bench/large_herd.py $(if $(findstring --quick,$(BENCH_ARGS)),--quick)

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
