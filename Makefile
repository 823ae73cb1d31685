# The README's two commands are `make demo` and `make test`; both install what they need
# (scripts/prereqs: Debian packages when run as root, else one line naming what is missing).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install prereqs-demo prereqs-test cluster-bin demo test lint bench bench-services clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

# Control-plane binaries, built from Go modules into ~/.cache/gitops-restore (kept across clones).
cluster-bin: install
	$(BIN)/gitops-restore cluster-bin

prereqs-demo prereqs-test: prereqs-%:
	PYTHON=$(PYTHON) scripts/prereqs $*

demo: prereqs-demo cluster-bin
	$(BIN)/gitops-restore demo

# lint-imports checks the import contracts in pyproject.toml ([tool.importlinter]).
test: prereqs-test cluster-bin
	$(BIN)/ruff check bootstrap sync_agent tests bench
	$(BIN)/lint-imports
	$(BIN)/pytest

# Every peer side by side at N = 1,000, 10,000 (3 interleaved rounds) and 50,000 (one; see README).
bench: prereqs-demo cluster-bin
	$(BIN)/python -m bench.restore_throughput

# Why Services get slower to create as a cluster fills (the IP allocator or the store).
bench-services: prereqs-demo cluster-bin
	$(BIN)/python -m bench.service_allocation

clean:
	rm -rf $(VENV) build *.egg-info
