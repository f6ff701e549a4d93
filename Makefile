# Two commands do all set-up on a fresh machine (Python 3.11): `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install demo test test-fast lint defs format bench catalog dev clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,catalog]'
	touch $(STAMP)

install: $(STAMP)

## The main job: a full refresh of every city against the bundled sandbox API (SQLite).
demo: $(STAMP)
	$(BIN)/python -m choosemypower_dagster.cli.demo

## The test suite (PostgreSQL cases run when CHOOSEMYPOWER_TEST_POSTGRES_URL is set). CI runs this.
## Whole modules run in TEST_WORKERS parallel workers (pytest-xdist), in collection order (the
## longest first: conftest.py); most tests wait on servers, daemons and subprocesses. Two, not
## three: on two cores three measured 618 s and 747 s, two 678 s and 717 s, and a third worker
## loads the machine the timing-sensitive tests run on. TEST_WORKERS=0 runs in one process.
TEST_WORKERS ?= 2
test: $(STAMP)
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadscope --no-loadscope-reorder

## The unit tests only (marker `unit`, set in conftest): no webserver, subprocess or full refresh.
test-fast: $(STAMP)
	$(BIN)/pytest -m unit

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	env -u DAGSTER_HOME $(BIN)/dg check defs

## What the code location defines, as Dagster's project tool lists it.
defs: $(STAMP)
	env -u DAGSTER_HOME $(BIN)/dg list defs

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(STAMP)
	$(BIN)/python benchmarks/refresh.py

## Rebuild the packaged city catalog from ../shared/reference.
catalog: $(STAMP)
	$(BIN)/python scripts/build_city_catalog.py

## The Dagster UI and daemon on http://127.0.0.1:3000 with the instance in .dagster_home/.
dev: $(STAMP)
	mkdir -p .dagster_home
	test -f .dagster_home/dagster.yaml || cp dagster.yaml .dagster_home/dagster.yaml
	DAGSTER_HOME=$(CURDIR)/.dagster_home $(BIN)/dagster dev -w workspace.yaml

clean:
	rm -rf .dagster_home build .pytest_cache .ruff_cache
