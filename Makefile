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
        lab lab-down bench lock wheels clean

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

wheels: venv ## build the altmesh wheels and the wheelhouse the roles ship to hosts
	scripts/build-wheels.sh

image: host ## build the test-host image (only when its recipe changed)
	scripts/testhost-image.sh

network: host ## create the internal podman network the test hosts live on
	scripts/testhost-network.sh

lint: venv ## ansible-lint (production profile), yamllint, ruff, mypy --strict on the protocol core
	yamllint -s .
	ansible-lint --profile production
	ruff check .
	ruff format --check files bench scripts
	cd files/relay && mypy --strict src/altmesh/protocol

test: host venv image network lint test-relay test-dashboard test-molecule ## install everything and run every test
	@echo "make test: all suites passed"

test-relay: venv ## the altmesh protocol, relay and client tests (real named, real processes)
	cd files/relay && pytest -p no:cacheprovider tests

test-dashboard: venv ## the dashboard tests, against SQLite and PostgreSQL, with a real browser
	scripts/test-dashboard.sh

test-molecule: venv image network ## every molecule scenario, full sequence
	scripts/molecule.sh

lab: host venv image network ## build the local lab network from inventory/lab and show it working
	scripts/lab.sh up

lab-down: ## remove the local lab
	scripts/lab.sh down

bench: venv ## run the benchmarks and print figures beside their peers
	bench/run.sh

clean: ## remove the virtual environment and build output (not the image, not the lab)
	rm -rf $(VENV) build dist files/*/dist files/*/build
