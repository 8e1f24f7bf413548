# Two commands work on a fresh clone: `make demo` (the main job) and `make test`.
# Each creates .venv and installs the project into it on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# Extra pip arguments for torch, e.g. TORCH_PIP="--index-url https://download.pytorch.org/whl/cu124"
TORCH_PIP ?=
DEMO_DIR ?= runs/demo

.PHONY: demo test test-fast lint bench clean-venv

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "torch>=2.4,<2.14" $(TORCH_PIP)
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

demo: $(VENV)/.installed
	$(PY) -m residual_train.demo out=$(DEMO_DIR)

test: $(VENV)/.installed
	$(PY) -m pytest -q -n 2 --dist loadgroup

test-fast: $(VENV)/.installed
	$(PY) -m pytest -q -m "not slow"

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check data_gen residual_train bench tests

bench: $(VENV)/.installed
	$(PY) bench/run_all.py

clean-venv:
	rm -rf $(VENV)
