# Everything a newcomer needs: `make run` to serve, `make test` to check. `make help` lists the rest.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
CMS_REPO ?= var/content
export CMS_REPO

.DEFAULT_GOAL := check

.PHONY: help run test soak check lint types bench clean services

help: ## list the targets
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP) ## create .venv and install the project with its tools

run: $(STAMP) ## create and seed the content repository if missing, then serve the API
	@$(BIN)/python -m compileall -q cms
	@test -e "$(CMS_REPO)" || $(BIN)/cms init
	$(BIN)/cms serve

# The system packages that tests start for real, from Debian's packages, when missing: PostgreSQL
# (run by the tests themselves, unprivileged, in a temporary folder) and Chromium (the browser
# the reference site is checked in). git, with `git daemon`, is there already.
services: ## install what the tests start for real (PostgreSQL, Chromium), when missing
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && command -v chromium >/dev/null || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
		 --no-install-recommends postgresql chromium >/dev/null)

test: $(STAMP) services ## run the whole test suite
	$(BIN)/python -m pytest

soak: $(STAMP) services ## the reliability tests with large numbers (several processes, crashes, fuzzing)
	CMS_SOAK_SCALE=$${CMS_SOAK_SCALE:-10} CMS_SOAK_COMMITS=$${CMS_SOAK_COMMITS:-20000} \
	CMS_FUZZ_EXAMPLES=$${CMS_FUZZ_EXAMPLES:-300} \
	$(BIN)/python -m pytest -q tests/reliability tests/store/test_resources.py tests/api/test_fuzz.py

lint: $(STAMP) ## ruff
	$(BIN)/ruff check cms tests bench

types: $(STAMP) ## mypy --strict
	$(BIN)/mypy

check: lint types test ## lint, types and tests: run before every commit

bench: $(STAMP) ## measure commits and reads; writes bench/results/latest.json
	@command -v wrk >/dev/null || (apt-get install -y -qq wrk >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq wrk) >/dev/null 2>&1 || echo "wrk could not be installed: the 32-connection read figures will be skipped")
	@# An installed package ships compiled bytecode; an editable one is compiled on every start
	@# when PYTHONDONTWRITEBYTECODE is set, which would add that to every start-up figure.
	$(BIN)/python -m compileall -q cms
	$(BIN)/python -m bench $(BENCH_ARGS)

clean: ## remove the virtualenv and local state (var/)
	rm -rf $(VENV) var
