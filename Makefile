# Set-up and entry points. Every target installs what it needs first and is quick
# when the machine is already set up.

PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
STAMP := $(VENV)/.provex-installed
DEMO_ARGS ?=
PYTEST_ARGS ?=

export TOKENIZERS_PARALLELISM ?= false

.PHONY: install system-packages demo test test-fast lint format bench clean

install: $(STAMP) system-packages

# Debian packages, installed only when missing: SWI-Prolog (swi-prolog-nox) for the
# Prolog engine, and fortunes, the English prose corpus of the FlexMoRE build.
system-packages:
	@missing=""; \
	command -v swipl >/dev/null 2>&1 || missing="$$missing swi-prolog-nox"; \
	test -d /usr/share/games/fortunes || missing="$$missing fortunes"; \
	if [ -n "$$missing" ]; then \
	  echo "Installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && \
	  $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi

$(STAMP): requirements/cpu.txt requirements/data.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements/cpu.txt
	$(BIN)/python -m pip install -q --no-deps -r requirements/data.txt
	$(BIN)/python -m pip install -q --no-deps -e .
	@touch $@

demo: install
	$(BIN)/provex demo $(DEMO_ARGS)

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The fast subset, for the edit-test loop.
test-fast: install
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/ruff check src tests benchmarks

format: install
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/ruff check --fix src tests benchmarks

bench: install
	$(BIN)/python benchmarks/prolog_throughput.py
	$(BIN)/python benchmarks/rewards.py

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache .ruff_cache
