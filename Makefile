# Two commands do all set-up on a fresh clone: `make dev` and `make test`.
PYTHON ?= python3
VENV   := .venvs/dev
SAMENV := .venvs/sam
PY     := $(VENV)/bin/python
SAM    := $(SAMENV)/bin/sam

.PHONY: dev test test-unit bytecode web chromium test-integration test-template openapi lock bench soak reconcile clean

# uv (pinned, installed into the dev venv by pip) installs the rest: about 15 s per
# environment on a fresh machine where pip alone takes a minute and a half. It compiles the
# packages' bytecode as it installs (about 30 s for both): uv does not by default, and where
# PYTHONDONTWRITEBYTECODE is set (as in these machines' shells) every process the suite starts (each
# function's runtime, the stand-ins, the test workers) compiled botocore, pydantic, moto and
# the rest from source again: a function's cold start took 1.9 s of CPU instead of 0.6 s.
UV_VERSION := 0.13.9
UV := $(VENV)/bin/uv

$(UV):
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

# The functions' locks constrain the dev environment, so the tests run the versions deployed.
LOCKS := $(wildcard functions/*/requirements.txt)

$(VENV)/.installed: requirements-dev.txt $(LOCKS) | $(UV)
	$(UV) pip install --quiet --compile-bytecode --python $(VENV)/bin/python -r requirements-dev.txt $(addprefix -c ,$(LOCKS))
	touch $@

$(SAMENV)/.installed: requirements-sam.txt | $(UV)
	$(PYTHON) -m venv $(SAMENV)
	$(UV) pip install --quiet --compile-bytecode --python $(SAMENV)/bin/python -r requirements-sam.txt
	touch $@

venv: $(VENV)/.installed
sam: $(SAMENV)/.installed

## make web: the pages' npm dependencies (`npm ci` from the committed lock) vendored into
## web/app/vendor/, and the scanner page's compressed size printed
WEB_STAMP := web/app/vendor/.built
$(WEB_STAMP): web/package.json web/package-lock.json tools/build_web.py | $(VENV)/.installed
	cd web && npm ci --no-audit --no-fund --loglevel=error
	$(PY) -m tools.build_web
	touch $@
web: $(WEB_STAMP)

## make chromium: Debian's chromium and chromium-driver for the browser tests (skipped when present)
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
chromium:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; else \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends \
	    chromium chromium-driver >/dev/null; fi

## make bytecode: our own sources compiled (about a second), as the environments' packages are
## at install: where PYTHONDONTWRITEBYTECODE is set, every process would compile them again
bytecode: $(VENV)/.installed
	$(PY) -m compileall -q layers functions local tests

## make dev: the whole stack on 127.0.0.1 with demo data (Ctrl-C stops it)
dev: $(VENV)/.installed $(WEB_STAMP) bytecode
	$(PY) -m local.stack

## make test: every test (template checks, integration on real local stacks, unit), one
## pytest worker per core (each starts one local stack on free ports, shared by its
## integration tests), tests handed out one by one, in a random order
test: $(VENV)/.installed $(SAMENV)/.installed $(WEB_STAMP) chromium bytecode
	SAM_CLI_TELEMETRY=0 SAM_BIN=$(abspath $(SAM)) $(PY) -m pytest -q -n auto --dist loadgroup

test-unit: $(VENV)/.installed bytecode
	$(PY) -m pytest -q tests/unit

test-integration: $(VENV)/.installed $(WEB_STAMP) chromium bytecode
	$(PY) -m pytest -q tests/integration

test-template: $(VENV)/.installed $(SAMENV)/.installed bytecode
	SAM_CLI_TELEMETRY=0 SAM_BIN=$(abspath $(SAM)) $(PY) -m pytest -q tests/template

## make openapi: regenerate the committed OpenAPI document after changing routes
openapi: $(VENV)/.installed
	$(PY) -m tools.openapi

## make lock: pin every function's dependencies, transitive ones included, from its requirements.in
## (for the Lambda runtime: python3.12 on x86_64); a test checks the locks against the environment
lock: $(UV)
	for dir in functions/*/; do \
	  $(UV) pip compile --quiet --python-version 3.12 --python-platform x86_64-manylinux_2_17 \
	    $${dir}requirements.in -o $${dir}requirements.txt || exit 1; \
	done

## make bench: print the benchmark figures
bench: $(VENV)/.installed
	$(PY) -m bench

## make soak: a whole sale (2,000 buyers, 64 at once, 500 seats) on its own local stack, then the invariants
soak: $(VENV)/.installed
	$(PY) -m bench.soak

## make reconcile: compare Stripe with the orders (ARGS="--repair" to fix drift); uses the AWS/Stripe of your environment
reconcile: $(VENV)/.installed
	PYTHONPATH=layers/common/python $(PY) -m ticketing.reconcile $(ARGS)

clean:
	rm -rf .venvs .aws-sam .local .pytest_cache web/node_modules web/app/vendor
