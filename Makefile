# Two entry points for a fresh clone:
#   make demo  - set up, start the sandbox with a bad deployment, run the api-down
#                runbook headless, print the verdict and the record, stop the sandbox
#   make test  - set up and run the whole test suite
#   make lab   - set up, start the sandbox (unless one runs) and JupyterLab on it;
#                Ctrl-C stops both (LAB_ARGS passes options to `runbook lab`)
# Both create .venv with Python 3.11 and install the project from pyproject.toml
# with its test and dev extras (pytest, nbval, ruff, mypy).

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: setup system-deps demo test lab bench bench-restore drill clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade uv
	$(BIN)/uv pip install --quiet --python $(BIN)/python -e ".[test,dev]"
	touch $(STAMP)

demo: setup
	@set -u; \
	$(BIN)/runbook sandbox start --scenario bad-deployment || exit $$?; \
	$(BIN)/runbook run api-down -p incident_id INC-DEMO-1; status=$$?; \
	$(BIN)/runbook sandbox stop; \
	exit $$status

# Debian packages the tests use: headless Chromium for the static site's page
# tests. Installed with apt-get when missing and running as root (CI is);
# otherwise it says what to install, and those tests fail saying the same.
system-deps:
	@if ! test -x /usr/bin/chromium; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium \
	      || echo "system-deps: could not install chromium with apt-get"; \
	  else \
	    echo "system-deps: chromium is missing; install it: sudo apt-get install -y chromium"; \
	  fi; \
	fi

test: setup system-deps
	@$(BIN)/python -m pytest; status=$$?; \
	if [ $$status -eq 5 ]; then echo "pytest collected no tests: failing on purpose"; exit 1; fi; \
	exit $$status

lab: setup
	$(BIN)/runbook lab $(LAB_ARGS)

bench: setup
	$(BIN)/python bench/run_all.py

bench-restore: setup
	$(BIN)/python bench/restore_vs_sqlite3.py

drill: setup
	$(BIN)/runbook drill --all

clean:
	-$(BIN)/runbook sandbox stop
	rm -rf $(VENV) .sandbox .pytest_cache
