# Two commands for a fresh machine with Python >= 3.10 and make:
#   make check   - self-check of the op on this machine's default device (the main job);
#                  its venv holds the runtime package only (jax, jaxlib, numpy)
#   make test    - the full test suite (what CI runs); adds the `test` extra to the same venv
# Each extra level has its own stamp file in the venv, so `make test` after `make check`
# installs only what is missing, and `make check` after `make test` installs nothing.
# --no-compile: no bytecode for the whole of jaxlib and scipy up front (Python writes it for
# the modules it imports), which keeps the runtime venv under 600 MB.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install --quiet --disable-pip-version-check --no-compile

.PHONY: check bench test lint docs clean

$(PY):
	$(PYTHON) -m venv $(VENV)

# Runtime: the package and its three dependencies.
$(VENV)/.runtime: pyproject.toml | $(PY)
	$(PIP) -e .
	touch $@

$(VENV)/.bench: pyproject.toml $(VENV)/.runtime
	$(PIP) -e ".[bench]"
	touch $@

$(VENV)/.test: pyproject.toml $(VENV)/.runtime
	$(PIP) -e ".[test]"
	touch $@

check: $(VENV)/.runtime
	$(PY) -m jaxconvt check

bench: $(VENV)/.bench
	$(PY) -m jaxconvt bench

lint: $(VENV)/.test
	$(PY) -m ruff check jaxconvt tests benchmarks scripts
	$(PY) -m ruff format --check jaxconvt tests benchmarks scripts

test: $(VENV)/.test
	$(PY) -m ruff check jaxconvt tests
	$(PY) -m pytest -n 2 --dist loadfile jaxconvt tests README.md

docs: $(VENV)/.test
	$(PY) -m mkdocs build --strict

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis site
