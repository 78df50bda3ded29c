# Two commands for a fresh machine with Python >= 3.10 and make:
#   make check   - self-check of the op on this machine's default device (the main job)
#   make test    - the full test suite (what CI runs)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: check bench test lint clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	touch $@

check: $(VENV)/.installed
	$(PY) -m jaxconvt check

bench: $(VENV)/.installed
	$(PY) -m jaxconvt bench

lint: $(VENV)/.installed
	$(PY) -m ruff check jaxconvt tests benchmarks
	$(PY) -m ruff format --check jaxconvt tests benchmarks

test: $(VENV)/.installed
	$(PY) -m ruff check jaxconvt tests
	$(PY) -m pytest -n 2 --dist loadfile jaxconvt tests README.md

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
