# The two commands the README gives: `make demo` and `make test`. Both go through `make install`.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
export TF_USE_LEGACY_KERAS := 1
export TF_CPP_MIN_LOG_LEVEL := 2

.PHONY: install system demo test lint typecheck clean

install:
	@bash scripts/install.sh

# PostgreSQL and Chromium for the tests (Debian packages; skipped without root, and those tests then skip)
system:
	@bash scripts/install-system.sh

demo: install
	@bash scripts/demo.sh

lint: install
	$(VENV)/bin/ruff check .

typecheck: install
	$(VENV)/bin/mypy

test: install system
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(PY) -m pytest -q $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .ruff_cache .pytest_cache
