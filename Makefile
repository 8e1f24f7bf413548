# Two commands work on a fresh clone: `make demo` (the main job) and `make test`.
# Each creates .venv and installs the project into it on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# Extra pip arguments for torch, e.g. TORCH_PIP="--index-url https://download.pytorch.org/whl/cu124"
TORCH_PIP ?=
DEMO_DIR ?= runs/demo

.PHONY: demo test test-fast lint bench clean-venv shipped-model components-model long-run

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "torch>=2.4,<2.14" $(TORCH_PIP)
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

demo: $(VENV)/.installed
	$(PY) -m residual_train.pipelines.demo out=$(DEMO_DIR)

test: $(VENV)/.installed
	$(PY) -m pytest -q -n 2 --dist loadscope --no-loadscope-reorder

test-fast: $(VENV)/.installed
	$(PY) -m pytest -q -m "not slow"

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check data_gen residual_train bench tests

bench: $(VENV)/.installed
	$(PY) bench/run_all.py

# Reproduce the shipped `default` model (hours on a CPU; minutes on a GPU with trainer=gpu):
# its data, its training, export with ONNX parity, and publication into the package's
# registry as version SHIPPED_VERSION (then evaluate it: see docs/quality.md).
SHIPPED_DIR ?= runs/shipped
SHIPPED_VERSION ?= $(shell date +%Y%m%d)
shipped-model: $(VENV)/.installed
	$(PY) -m data_gen dataset=shipped out_dir=$(SHIPPED_DIR)/data
	$(PY) -m residual_train experiment=shipped data.dir=$(SHIPPED_DIR)/data run_dir=$(SHIPPED_DIR)/train ckpt_path=auto
	$(PY) -m residual_train.release.export ckpt=$(SHIPPED_DIR)/train/checkpoints/last.ckpt out_dir=$(SHIPPED_DIR)/export-$(SHIPPED_VERSION)
	$(PY) -m residual_train.release.publish src=$(SHIPPED_DIR)/export-$(SHIPPED_VERSION) registry=residual_train/weights name=default version=$(SHIPPED_VERSION)

# The shipped `components` model (relight, fog, defocus, lens blur, noise): validation shards,
# a fine-tune of `default` on the fly (resumes where it stopped: run it again), export, and
# publication next to `default`; then its evaluation on the photographs with measured depth.
# On a GPU: make components-model TRAIN_ARGS=trainer=gpu
COMPONENTS_DIR ?= runs/components
COMPONENTS_VERSION ?= $(shell date +%Y%m%d)
components-model: $(VENV)/.installed
	test -f $(COMPONENTS_DIR)/data/manifest.json || $(PY) -m data_gen dataset=components out_dir=$(COMPONENTS_DIR)/data
	$(PY) -m residual_train experiment=components data.dir=$(COMPONENTS_DIR)/data run_dir=$(COMPONENTS_DIR)/train ckpt_path=auto $(TRAIN_ARGS)
	$(PY) -m residual_train.release.export ckpt=$(COMPONENTS_DIR)/train/checkpoints/last.ckpt out_dir=$(COMPONENTS_DIR)/export-$(COMPONENTS_VERSION)
	$(PY) -m residual_train.release.publish src=$(COMPONENTS_DIR)/export-$(COMPONENTS_VERSION) registry=residual_train/weights name=components version=$(COMPONENTS_VERSION)
	$(PY) -m residual_train.evaluate model=components images=depth isos=[400,3200] out=$(COMPONENTS_DIR)/eval-$(COMPONENTS_VERSION)

# The long run of the shipped recipe, every choice on validation (scripts/long_run.sh):
# validation shards of the held-out photographs, training on the fly until validation stops
# improving (resumes where it stopped: run it again), learning curve, export of the best
# checkpoint, comparison with the current `default` on validation and -- only if it wins --
# publication as a new `default` version and one evaluation on the test sets.
# On a GPU: make long-run TRAIN_ARGS=trainer=gpu
long-run: $(VENV)/.installed
	PY=$(PY) TRAIN_ARGS="$(TRAIN_ARGS)" scripts/long_run.sh

clean-venv:
	rm -rf $(VENV)
