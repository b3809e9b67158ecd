# Custom-resource Lambdas for the Fargate + Aurora platform.
#
#   make demo    the platform's lifecycle locally: real binaries, moto, a throwaway PostgreSQL
#   make test    unit tests and local-invoke tests (real binaries against real local services)
#   make lint    rustfmt, clippy -D warnings, cfn-lint, the IAM/ServiceTimeout policy check
#   make build   arm64 Lambda zips with cargo-lambda
#   make bench   init, latency, memory, size and contention figures
#   make deploy  cargo lambda deploy of the three functions (DRY_RUN=1 prints the commands)
#
# Everything this needs is installed here, idempotently: the Python venv (moto, boto3, cfn-lint,
# cargo-lambda) and Debian's PostgreSQL server binaries.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

CARGO ?= cargo
VENV := .venv
VENV_STAMP := $(VENV)/.installed
PG_BIN := /usr/lib/postgresql/15/bin
LAMBDAS := admin-secret service-database listener-rule-priority

.PHONY: help
help:
	@sed -n 's/^#   //p' Makefile

# --- installs -------------------------------------------------------------------------------

$(VENV_STAMP): requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

.PHONY: venv
venv: $(VENV_STAMP)

# PostgreSQL 15 server binaries (initdb, postgres) and openssl for the throwaway test cluster.
.PHONY: deps
deps:
	@if [ ! -x $(PG_BIN)/initdb ] || ! command -v openssl >/dev/null; then \
	  echo "installing postgresql-15 and openssl from Debian"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-15 openssl >/dev/null; \
	fi

# --- build ----------------------------------------------------------------------------------

# Debug binaries for the local-invoke tests, and release builds of the Lambdas: the sample events
# run against them under `cargo lambda watch`, and the fault-injection one proves the release
# profile unwinds.
.PHONY: bins
bins: release-bins
	$(CARGO) build --workspace --bins

# One release build of everything that runs from the release profile: the three Lambdas, the
# fault-injection Lambda and the demo/bench drivers. Always the same set of packages, so the
# features cargo unifies are the same and `make test`, `make demo` and `make bench` share it.
TARGET_DIR = $${CARGO_TARGET_DIR:-target}
RELEASE_SET := $(addprefix -p ,$(LAMBDAS)) -p fault-injection -p local-invoke

.PHONY: release-bins release
release-bins:
	@echo "release build of the Lambdas, fault-injection and the demo/bench drivers (one cargo build;"
	@echo "a fresh clone takes about 15 CPU-minutes: some 8 minutes on 2 idle cores; later runs build only what changed)"
	$(CARGO) build --release --bins $(RELEASE_SET)
release: release-bins

.PHONY: build
build: venv
	rustup target list --installed | grep -q aarch64-unknown-linux-gnu || rustup target add aarch64-unknown-linux-gnu
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(VENV)/bin/cargo-lambda lambda build --release --arm64 --output-format zip $(addprefix -p ,$(LAMBDAS))

# --- checks ---------------------------------------------------------------------------------

.PHONY: test
test: deps venv bins
	@mkdir -p target
	$(CARGO) test --workspace 2>&1 | tee target/test.log
	@awk '/^test result:/ { p += $$4; f += $$6 } END { printf "tests: %d passed, %d failed\n", p, f }' target/test.log

.PHONY: lint
lint: venv
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(VENV)/bin/cfn-lint cfn/*.yaml
	$(VENV)/bin/python cfn/check-policy.py --self-test
	$(VENV)/bin/python cfn/check-policy.py cfn/*.yaml

# --- the demo and the benchmark --------------------------------------------------------------

.PHONY: demo
demo: deps venv release-bins
	$(TARGET_DIR)/release/demo

# The bench's comparison handler (crhelper + boto3 under awslambdaric), in its own pinned venv.
BENCH_VENV := tests/bench/python/.venv
$(BENCH_VENV)/.installed: tests/bench/python/requirements.txt
	python3 -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install --quiet --disable-pip-version-check -r tests/bench/python/requirements.txt
	touch $@

.PHONY: bench-venv
bench-venv: $(BENCH_VENV)/.installed

.PHONY: bench
bench: deps venv bench-venv build release-bins
	$(TARGET_DIR)/release/bench

# --- deploy ---------------------------------------------------------------------------------

SUPPORT_STACK ?= platform-support
REGION ?=
DRY_RUN ?=

.PHONY: deploy
deploy: venv
ifeq ($(DRY_RUN),)
	$(MAKE) build
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(VENV)/bin/python cfn/deploy.py --support-stack $(SUPPORT_STACK) $(if $(REGION),--region $(REGION))
else
	@$(VENV)/bin/python cfn/deploy.py --dry-run --support-stack $(SUPPORT_STACK) $(if $(REGION),--region $(REGION))
endif
