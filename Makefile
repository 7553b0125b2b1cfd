# The two commands of the README, and what they stand on. Every target first makes sure of its
# prerequisites, so a fresh machine needs nothing but make, python3 and (as root) apt.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
VENV := .venv
PG_BIN := /usr/lib/postgresql/15/bin
UV := $(shell command -v uv 2>/dev/null || echo "python3 -m uv")
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: demo test up down lint bench soak prereqs tools venv

demo: prereqs
	$(VENV)/bin/paymigrate demo

# The Migration page's browser test drives Debian's chromium (only the tests need it).
test: prereqs
	@command -v chromium >/dev/null || $(MAKE) --no-print-directory apt PKGS=chromium
	$(VENV)/bin/pytest

up: prereqs
	$(VENV)/bin/paymigrate up

down: venv
	$(VENV)/bin/paymigrate down

# ruff on everything; mypy on the runtime package and the dev harness (settings in pyproject.toml).
lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

bench: prereqs
	@command -v pgcopydb >/dev/null || $(MAKE) --no-print-directory apt PKGS=pgcopydb
	$(VENV)/bin/python -m bench

# 30 minutes of replication at 200 TPS with real faults at random moments (not in make test);
# SOAK_ARGS passes options, e.g. make soak SOAK_ARGS="--minutes 5".
soak: prereqs
	$(VENV)/bin/pytest -m soak
	$(VENV)/bin/python -m bench.soak $(SOAK_ARGS)

prereqs: venv tools

venv:
	@command -v uv >/dev/null 2>&1 || python3 -m uv --version >/dev/null 2>&1 || { \
	  echo "uv not found: installing it with pip"; python3 -m pip install --quiet uv; }
	@$(UV) sync --frozen --quiet

tools:
	@missing=""; \
	[ -x $(PG_BIN)/initdb ] && [ -x $(PG_BIN)/pg_ctl ] || missing="$$missing postgresql-15"; \
	command -v pgbouncer >/dev/null || [ -x /usr/sbin/pgbouncer ] || missing="$$missing pgbouncer"; \
	if [ -n "$$missing" ]; then $(MAKE) --no-print-directory apt PKGS="$$missing"; fi

apt:
	@if [ "$$(id -u)" != 0 ]; then \
	  echo "missing Debian package(s):$(PKGS); install them: sudo apt-get install -y$(PKGS)" >&2; exit 1; fi
	@echo "installing:$(PKGS)"
	@apt-get update -qq
	@DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(PKGS) >/dev/null
