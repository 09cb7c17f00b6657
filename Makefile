# The two commands of the README: `make up` runs driftgate on the demo repository,
# `make test` runs every check. Both set up what they need on a fresh machine.
VENV := .venv
# The interpreter that builds the venv, looked up with any activated venv (this checkout's
# or another) left off PATH: a venv's own `python3` has no pip.
OUTSIDE_VENV_PATH := $(subst $(CURDIR)/$(VENV)/bin:,,$(if $(VIRTUAL_ENV),$(subst $(VIRTUAL_ENV)/bin:,,$(PATH)),$(PATH)))
PYTHON ?= $(or $(shell PATH='$(OUTSIDE_VENV_PATH)' command -v python3),python3)
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_REPOSITORY ?= var/models
RUNTIME_PORT ?= 8001
export TF_CPP_MIN_LOG_LEVEL := 1
export TF_ENABLE_ONEDNN_OPTS := 0

.PHONY: up test lint typecheck unit venv system-deps demo clean refresh-constraints

up: venv system-deps
	$(BIN)/driftgate up --home var

test: venv system-deps lint typecheck unit

venv: $(STAMP)

# uv resolves and installs the ~2 GB stack in seconds where pip takes minutes.
# Versions come from constraints.txt (what `make test` passed with); CONSTRAINTS= resolves
# the newest instead (see refresh-constraints).
CONSTRAINTS ?= constraints.txt
CONSTRAINT_FLAGS := $(if $(CONSTRAINTS),--constraint $(CONSTRAINTS))

$(STAMP): pyproject.toml $(CONSTRAINTS)
	$(PYTHON) -m pip install --quiet --disable-pip-version-check uv
	$(PYTHON) -m uv venv --quiet --allow-existing --python $(PYTHON) $(VENV)
	$(PYTHON) -m uv pip install --quiet --python $(BIN)/python $(CONSTRAINT_FLAGS) -e '.[dev]'
	# tf-keras only writes the Keras 2 .h5 fixtures; its dependency on the full
	# `tensorflow` wheel would duplicate tensorflow-cpu, hence --no-deps.
	$(PYTHON) -m uv pip install --quiet --python $(BIN)/python $(CONSTRAINT_FLAGS) --no-deps 'tf-keras>=2.16'
	touch $(STAMP)

# A fresh venv on the newest releases, and constraints.txt rewritten from it. Run
# `make test` before committing the new pins.
refresh-constraints:
	rm -rf $(VENV)
	$(MAKE) venv CONSTRAINTS=
	$(PYTHON) -m uv pip freeze --python $(BIN)/python --exclude-editable > constraints.new
	{ sed -n '/^#/p' constraints.txt; cat constraints.new; } > constraints.txt
	rm constraints.new

system-deps:
	./scripts/install-system-deps.sh

demo: venv
	$(BIN)/driftgate demo build $(DEMO_REPOSITORY)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: venv
	$(BIN)/mypy gateway runtime monitoring drift explain driftgate
	$(BIN)/mypy tests bench

unit: venv
	$(BIN)/pytest -q

clean:
	rm -rf $(VENV) var .mypy_cache .ruff_cache .pytest_cache
