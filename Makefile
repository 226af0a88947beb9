# altmesh: the entry points. `make lab` builds the local lab; `make test` installs what it
# needs and runs every test. Every target is safe to re-run.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

VENV      ?= .venv
PY        := $(VENV)/bin/python
BIN       := $(abspath $(VENV))/bin
export PATH := $(BIN):$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
export ANSIBLE_ROLES_PATH := $(CURDIR)/roles

.PHONY: help host venv image network lint test test-relay test-dashboard test-molecule \
        lab lab-down bench soak fuzz lock wheels clean

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

host: ## install the Debian packages and container settings the controller needs (idempotent)
	scripts/prepare-host.sh

$(VENV)/.stamp: requirements.lock files/relay/pyproject.toml files/dashboard/pyproject.toml
	scripts/make-venv.sh $(VENV)
	touch $@

venv: $(VENV)/.stamp ## build the controller virtual environment from requirements.lock

lock: ## re-pin requirements.lock from requirements/*.in
	scripts/lock.sh

wheels: venv ## build the altmesh wheels and the wheelhouse the roles ship to hosts (reproducible)
	scripts/build-wheels.sh

image: host ## build the test-host image (only when its recipe changed)
	scripts/testhost-image.sh

network: host ## create the internal podman network the test hosts live on
	scripts/testhost-network.sh

lint: venv ## ansible-lint (production profile), yamllint, ruff, mypy --strict on altmesh and altmesh_dashboard
	yamllint -s .
	ansible-lint --profile production
	ruff check .
	ruff format --check files bench scripts
	cd files/relay && mypy --strict src/altmesh
	cd files/dashboard && mypy --strict src/altmesh_dashboard

test: host venv image network lint test-relay test-dashboard test-molecule ## install everything and run every test
	@echo "make test: all suites passed"

test-relay: venv ## the altmesh protocol, relay and client tests (real named, real processes)
	cd files/relay && pytest -p no:cacheprovider tests

test-dashboard: venv ## the dashboard tests, against SQLite and PostgreSQL, with a real browser
	scripts/test-dashboard.sh

test-molecule: venv image network wheels ## every molecule scenario, full sequence (test hosts named per run)
	scripts/molecule.sh

lab: host venv image network wheels ## build the local lab network from inventory/lab and show it working
	scripts/lab.sh up

lab-down: venv ## remove the local lab
	scripts/lab.sh down

bench: venv ## run the benchmarks and print figures beside their peers
	bench/run.sh

SOAK_MINUTES ?= 10
soak: venv ## a bounded stability run of a 4-relay mesh (SOAK_MINUTES, default 10): streams, rekeys, restarts, RSS plot
	$(PY) scripts/soak.py --minutes $(SOAK_MINUTES)

TIME ?= 60
fuzz: venv ## run each fuzz target for TIME seconds (default 60): executions, coverage, crashes
	$(PY) files/relay/fuzz/run.py $(TIME)

clean: ## remove the virtual environment and build output (not the image, not the lab)
	rm -rf $(VENV) build dist files/*/dist files/*/build
