# Set-up and everyday commands. Everything installs into .venv; nothing else is needed.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
EXTRAS ?= test,lint,examples

.PHONY: install example test lint type bench-latency clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[$(EXTRAS)]'
	touch $@

install: $(VENV)/.installed

## Run an example experiment end to end: an SVM on scikit-learn's digits, tuned by random
## search with trials as local processes; prints live progress and the best trials.
example: install
	$(VENV)/bin/katib run examples/random.yaml

## Run the test suite (the command CI runs). Installs PostgreSQL and MariaDB from Debian
## packages when missing: the DB tests start throw-away servers of both.
test: install
	bash .ci/install-db-servers
	$(PY) -m pytest

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

type: install
	$(VENV)/bin/mypy api suggestion earlystopping db controller bench nas

## The README's suggestion-latency figure: GetSuggestions with a 1 000-trial history against a
## separate katib-suggestion process (every benchmark is a `katib-bench` subcommand).
bench-latency: install
	$(VENV)/bin/katib-bench service --algorithms random,sobol,tpe

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
