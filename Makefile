# Two commands do all set-up on a fresh clone: `make dev` and `make test`.
PYTHON ?= python3
VENV   := .venvs/dev
SAMENV := .venvs/sam
PY     := $(VENV)/bin/python
SAM    := $(SAMENV)/bin/sam

.PHONY: dev test test-unit test-integration test-template openapi bench soak reconcile clean

$(VENV)/.installed: requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

$(SAMENV)/.installed: requirements-sam.txt
	$(PYTHON) -m venv $(SAMENV)
	$(SAMENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-sam.txt
	touch $@

venv: $(VENV)/.installed
sam: $(SAMENV)/.installed

## make dev: the whole stack on 127.0.0.1 with demo data (Ctrl-C stops it)
dev: $(VENV)/.installed
	$(PY) -m local.stack

## make test: every test (unit, integration on a real local stack, template checks)
test: $(VENV)/.installed $(SAMENV)/.installed
	SAM_CLI_TELEMETRY=0 SAM_BIN=$(abspath $(SAM)) $(PY) -m pytest -q

test-unit: $(VENV)/.installed
	$(PY) -m pytest -q tests/unit

test-integration: $(VENV)/.installed
	$(PY) -m pytest -q tests/integration

test-template: $(VENV)/.installed $(SAMENV)/.installed
	SAM_CLI_TELEMETRY=0 SAM_BIN=$(abspath $(SAM)) $(PY) -m pytest -q tests/template

## make openapi: regenerate the committed OpenAPI document after changing routes
openapi: $(VENV)/.installed
	$(PY) -m tools.openapi

## make bench: print the benchmark figures
bench: $(VENV)/.installed
	$(PY) -m bench

## make soak: a whole sale (2,000 buyers, 500 seats) on its own local stack, then the invariants
soak: $(VENV)/.installed
	$(PY) -m bench.soak

## make reconcile: compare Stripe with the orders (ARGS="--repair" to fix drift); uses the AWS/Stripe of your environment
reconcile: $(VENV)/.installed
	PYTHONPATH=layers/common/python $(PY) -m ticketing.reconcile $(ARGS)

clean:
	rm -rf .venvs .aws-sam .local .pytest_cache
