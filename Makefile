# Each target sets up .venv on first use, so on a fresh machine it is the only command to type.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
WORKDIR ?= runs/demo

.PHONY: demo demo-full test test-fast lint format clean

# The install also compiles the oneDNN conv extension (setup.py), so its sources count too.
$(STAMP): pyproject.toml setup.py lumbar_jax/model/csrc/onednn_conv.cc
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m lumbar_jax demo --workdir=$(WORKDIR)

# The demo with a finer fine stage (configs/fine.py, cpu_full): 13 min 32 s against make demo's 11 min 34 s
# on one machine (README "The demo").
demo-full: $(STAMP)
	$(PY) -m lumbar_jax demo --size=cpu_full --workdir=runs/demo-full

test: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m pytest -q

# While working: everything but the tests that start subprocesses (make test runs all).
test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: $(STAMP)
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

clean:
	rm -rf $(VENV) runs .pytest_cache build lumbar_jax/model/_onednn_conv*.so
