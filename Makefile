# Custom-resource Lambdas for the Fargate + Aurora platform.
#
#   make demo    the platform's lifecycle locally: real binaries, moto, a throwaway PostgreSQL
#   make test    unit tests and local-invoke tests (real binaries against real local services)
#   make lint    rustfmt, clippy -D warnings, cfn-lint, checkov, the IAM/ServiceTimeout policy check
#   make build   arm64 Lambda zips with cargo-lambda
#   make bench   init, latency, memory, size and contention figures
#   make fuzz    the in-process fuzzer over the event path: 1,000,000 inputs per Lambda handler type
#   make deploy  cargo lambda deploy of the three functions and the dead-letter responder (DRY_RUN=1 prints the commands)
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
LAMBDAS := admin-secret service-database listener-rule-priority dead-letter-responder

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

# checkov in its own venv: its pins conflict with cfn-lint's and moto's.
CHECKOV := .tools/checkov
$(CHECKOV)/.installed: requirements-checkov.txt
	python3 -m venv $(CHECKOV)
	$(CHECKOV)/bin/pip install --quiet --disable-pip-version-check -r requirements-checkov.txt
	touch $@

.PHONY: checkov
checkov: $(CHECKOV)/.installed

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

# One release build of everything that runs from the release profile: the Lambdas, the
# fault-injection Lambda and the bench/fuzz drivers. Always the same set of packages, so the
# features cargo unifies are the same and `make test` and `make bench` share it.
TARGET_DIR = $${CARGO_TARGET_DIR:-target}
RELEASE_SET := $(addprefix -p ,$(LAMBDAS)) -p fault-injection -p local-invoke
# What `make demo` runs: the three Lambdas of the platform's stacks and the demo driver, from the
# dev profile that `make bins` (so `make test`) builds too, over the same `--workspace` package set
# (so the same features). The shipped Lambdas are the release profile's: `make build` zips them.
DEMO_BINS := --bin admin-secret --bin service-database --bin listener-rule-priority --bin demo

.PHONY: release-bins release
release-bins:
	@echo "release build of the Lambdas, fault-injection and the bench/fuzz drivers (one cargo build;"
	@echo "a fresh clone takes 8-12 CPU-minutes; later runs build only what changed)"
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
	$(VENV)/bin/python cfn/deploy.py --self-test
	$(MAKE) test-ansible

.PHONY: lint
lint: venv checkov
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(VENV)/bin/cfn-lint cfn/*.yaml
	$(CHECKOV)/bin/checkov --framework cloudformation --skip-download --compact --quiet -d cfn
	$(VENV)/bin/python cfn/check-policy.py --self-test
	$(VENV)/bin/python cfn/check-policy.py cfn/*.yaml
	$(MAKE) lint-ansible

# --- the demo and the benchmark --------------------------------------------------------------

# The venv (pip: moto, boto3, ...) installs in the background while cargo builds: on a fresh
# clone that is about half a minute off the wait for the first demo line.
.PHONY: demo
demo: deps
	@echo "debug build of the three Lambdas and the demo driver, the venv installing beside it"
	@echo "(later runs build only what changed; make test reuses it)"
	@mkdir -p $(TARGET_DIR)
	$(MAKE) --no-print-directory venv > $(TARGET_DIR)/venv-install.log 2>&1 & venv=$$!; \
	  $(CARGO) build --workspace $(DEMO_BINS) || { wait $$venv; exit 1; }; \
	  wait $$venv || { cat $(TARGET_DIR)/venv-install.log; exit 1; }
	$(TARGET_DIR)/debug/demo

# The seeded mutation fuzzer (tests/harness/fuzz.rs), release build, in-process: no services.
FUZZ_INPUTS ?= 1000000
FUZZ_SEED ?= 1

.PHONY: fuzz
fuzz: release-bins
	$(TARGET_DIR)/release/fuzz $(FUZZ_INPUTS) $(FUZZ_SEED)

# The bench's comparison handler (crhelper + boto3 under awslambdaric), in its own pinned venv.
BENCH_VENV := tests/bench/python/.venv
$(BENCH_VENV)/.installed: tests/bench/python/requirements.txt
	python3 -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install --quiet --disable-pip-version-check -r tests/bench/python/requirements.txt
	touch $@

.PHONY: bench-venv
bench-venv: $(BENCH_VENV)/.installed

# The arm64 zips give the size column; where the aarch64 standard library cannot be installed
# (no rustup download), the bench still runs and prints "n/a" there.
.PHONY: bench
bench: deps venv bench-venv release-bins
	@$(MAKE) build || echo "bench: arm64 zips not built (make build failed above); the zip column reads n/a"
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

# --- the Ansible role and the deploy image (ansible/) ----------------------------------------
#
#   make lint-ansible   ansible-lint (production profile), --syntax-check of the examples, hadolint
#   make test-ansible   the fargate_service role run by ansible-playbook against moto (and its
#                       CloudFormation engine with the real Lambdas: tests/engine/cfn_engine.py)
#   make deploy-image   docker build of the deploy image (needs a Docker daemon)

ANSIBLE_VENV := .venv-ansible
ANSIBLE_LINT_VENV := .venv-ansible-lint
ANSIBLE_COLLECTIONS := $(ANSIBLE_VENV)/collections
ANSIBLE_LINT_COLLECTIONS := $(ANSIBLE_LINT_VENV)/collections
DEPLOY_IMAGE ?= platform-deploy:latest

# The test venv: the image's pinned tool set (ansible/requirements-image.txt, so CI proves it
# resolves) plus moto, and amazon.aws unpacked from PyPI's `ansible` wheel.
$(ANSIBLE_VENV)/.installed: ansible/requirements-image.txt ansible/requirements-test.txt ansible/install-collection.sh
	python3 -m venv $(ANSIBLE_VENV)
	$(ANSIBLE_VENV)/bin/pip install --quiet --disable-pip-version-check -r ansible/requirements-test.txt
	ansible/install-collection.sh $(ANSIBLE_VENV)/bin/pip $(ANSIBLE_COLLECTIONS)
	touch $@

$(ANSIBLE_LINT_VENV)/.installed: ansible/requirements-image.txt ansible/requirements-lint.txt ansible/install-collection.sh
	python3 -m venv $(ANSIBLE_LINT_VENV)
	$(ANSIBLE_LINT_VENV)/bin/pip install --quiet --disable-pip-version-check -r ansible/requirements-lint.txt
	ansible/install-collection.sh $(ANSIBLE_LINT_VENV)/bin/pip $(ANSIBLE_LINT_COLLECTIONS)
	touch $@

.PHONY: lint-ansible
lint-ansible: $(ANSIBLE_LINT_VENV)/.installed
	cd ansible && PATH="$(CURDIR)/$(ANSIBLE_LINT_VENV)/bin:$$PATH" \
	  ANSIBLE_COLLECTIONS_PATH="$(CURDIR)/$(ANSIBLE_LINT_COLLECTIONS)" ANSIBLE_ROLES_PATH="$(CURDIR)/ansible/roles" \
	  ansible-lint --profile production roles/fargate_service examples
	for p in ansible/examples/*/*.yml; do \
	  ANSIBLE_COLLECTIONS_PATH="$(CURDIR)/$(ANSIBLE_LINT_COLLECTIONS)" ANSIBLE_ROLES_PATH="$(CURDIR)/ansible/roles" \
	    $(ANSIBLE_LINT_VENV)/bin/ansible-playbook --syntax-check "$$p"; \
	done
	$(ANSIBLE_LINT_VENV)/bin/hadolint ansible/Dockerfile
	@echo "lint-ansible: ansible-lint, syntax check and hadolint clean"

# The role's success path runs against tests/engine/cfn_engine.py, with the release Lambdas
# answering and a throwaway PostgreSQL (deps) standing in for Aurora.
.PHONY: test-ansible
test-ansible: $(ANSIBLE_VENV)/.installed deps release-bins
	ANSIBLE_COLLECTIONS_PATH="$(CURDIR)/$(ANSIBLE_COLLECTIONS)" ENGINE_BIN_DIR="$(TARGET_DIR)/release" \
	  $(ANSIBLE_VENV)/bin/python ansible/tests/run.py

.PHONY: deploy-image
deploy-image:
	@if ! docker info >/dev/null 2>&1; then \
	  echo "deploy-image: no Docker daemon is reachable here (docker info failed); the image was NOT built." >&2; \
	  echo "deploy-image: run 'make deploy-image' where Docker runs; ansible/Dockerfile is checked by 'make lint-ansible' (hadolint)." >&2; \
	  exit 2; \
	fi
	docker build -f ansible/Dockerfile -t $(DEPLOY_IMAGE) .
