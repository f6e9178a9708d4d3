# The two set-up commands: `make run` (build the default spec end to end) and `make test`.
# Both create .venv on first use. PYTHON must be 3.11+.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home
export GEOSOLVER_HOME ?= $(CURDIR)/.geosolver
DAGSTER := $(BIN)/dagster
DEFS := -m pipelines.definitions
# dg finds the project's environment by VIRTUAL_ENV (as after `source .venv/bin/activate`).
DG := VIRTUAL_ENV=$(abspath $(VENV)) $(BIN)/dg
# `make dev` runs from DAGSTER_HOME (see below), so a relative spec path is made absolute first.
ifdef GEOSOLVER_SPEC
export GEOSOLVER_SPEC := $(abspath $(GEOSOLVER_SPEC))
endif

.PHONY: init run test lint docs docs-reference docs-demo dev play bench clean

LOCKS := requirements.txt requirements-model.txt requirements-dev.txt
GEOCLIP := geoclip==1.3.0

$(BIN)/.installed: pyproject.toml $(LOCKS)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(addprefix -r ,$(LOCKS)) -e '.[model,dev,ui,postgres,s3]'
	# GeoCLIP's published weights and MP-16 gallery (model.location_init / model.gallery). Only its files
	# are read, so its dependencies (torchvision, an older huggingface-hub) are not installed.
	$(BIN)/pip install --quiet --no-deps $(GEOCLIP)
	touch $@

$(DAGSTER_HOME)/dagster.yaml: dagster.yaml
	mkdir -p $(DAGSTER_HOME)
	cp dagster.yaml $@

# Create (or upgrade) the Dagster instance's storage once, before any run: two processes that both
# find a fresh DAGSTER_HOME would race to create it. Idempotent, so every target below calls it.
init: $(BIN)/.installed $(DAGSTER_HOME)/dagster.yaml
	$(DAGSTER) instance migrate > /dev/null

# The named jobs, so the runs show in the UI as `ingest` (one per region, or region part) and `build`.
# Ingest partitions share nothing (each has its own ledger and folders), so two run at once, as many
# as dagster.yaml's max_concurrent_runs lets a backfill run: one run's start-up overlaps the other's
# image work. xargs exits non-zero when any run fails, and then `build` does not start.
run: init
	@keys=$$($(BIN)/geosolver partitions) && printf '%s\n' $$keys | \
		xargs -P 2 -I {} sh -c 'echo "== ingest[{}]"; $(DG) launch --job ingest --partition "{}"'
	$(DG) launch --job build
	$(BIN)/geosolver show

# MkDocs prints a notice about its 2.0 on every build; the docs are built, strictly, either way.
export NO_MKDOCS_2_WARNING := 1

test: init
	$(BIN)/ruff check .
	site=$$(mktemp -d) && $(BIN)/mkdocs build --strict --quiet --site-dir "$$site" && rm -rf "$$site"
	$(BIN)/python -m pytest -n 2 --dist loadfile --durations=10 $(PYTEST_ARGS)

lint: $(BIN)/.installed
	$(BIN)/ruff check .

# The docs site on http://127.0.0.1:8000/ (sources under docs/; the configuration reference is generated first).
docs: docs-reference
	$(BIN)/mkdocs serve --dev-addr 127.0.0.1:8000

docs-reference: $(BIN)/.installed
	$(BIN)/python -m geosolver_data.spec_reference > docs/reference/configuration.md

# The demo's results in the docs from the artifacts `make run` published (run it after): docs/model.md's
# table from the evaluation, and docs/play.png from a round played in headless Chromium.
docs-demo: $(BIN)/.installed
	$(BIN)/python -m geosolver_model.evaluation.demo_docs --home "$(GEOSOLVER_HOME)"
	$(BIN)/python docs/screenshots.py --home "$(GEOSOLVER_HOME)"

# `dg dev` (the UI and the daemon) from DAGSTER_HOME, which make describes as a dg workspace of this one
# project: dg then starts Dagster in the instance's own folder. From the repo root it would warn that the
# dagster.yaml there (the template make copies into DAGSTER_HOME) is not the instance's.
$(DAGSTER_HOME)/dg.toml: Makefile
	mkdir -p $(DAGSTER_HOME)
	printf 'directory_type = "workspace"\n\n[workspace]\n\n[[workspace.projects]]\npath = "%s"\n' "$(CURDIR)" > $@

dev: init $(DAGSTER_HOME)/dg.toml
	cd $(DAGSTER_HOME) && VIRTUAL_ENV=$(abspath $(VENV)) $(abspath $(BIN))/dg dev

# GeoGuessr against the latest model, on http://127.0.0.1:8765/ (after `make run`).
play: $(BIN)/.installed
	$(BIN)/geosolver play $(PLAY_ARGS)

bench: $(BIN)/.installed
	$(BIN)/python -m bench.bench_data
	$(BIN)/python -m bench.bench_fetch
	$(BIN)/python -m bench.bench_model
	$(BIN)/python -m bench.bench_index
	$(BIN)/python -m bench.bench_hub

clean:
	rm -rf $(VENV) .geosolver .dagster_home
