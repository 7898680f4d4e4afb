# The two commands of the README. Each does its own set-up on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
export MPLCONFIGDIR ?= $(CURDIR)/.cache/matplotlib
export YOLO_CONFIG_DIR ?= $(CURDIR)/.cache/ultralytics
export KERAS_HOME ?= $(CURDIR)/.cache/keras

.PHONY: demo test lint install clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[all]'
	touch $(STAMP)

# The Earth Engine JavaScript client (npm), for the Code Editor scripts' round-trip tests (tests/test_jsgen.py).
NODE_STAMP := node_modules/.installed-$(shell cat package-lock.json | cksum | cut -d' ' -f1)
$(NODE_STAMP): package.json package-lock.json
	@if command -v npm >/dev/null; then npm ci --no-audit --no-fund && touch $@; \
	else echo "npm not found: tests/test_jsgen.py will skip its JavaScript round trips"; fi

install: $(STAMP) $(NODE_STAMP)

demo: $(STAMP)
	$(VENV)/bin/gee-mining demo --out runs/demo

test: $(STAMP) $(NODE_STAMP)
	$(PY) -m ruff check gee_mining tests bench
	$(PY) -m pytest -q -p no:cacheprovider

lint: $(STAMP)
	$(PY) -m ruff check gee_mining tests bench
	$(PY) -m ruff format --check gee_mining tests bench

clean:
	rm -rf $(VENV) runs .cache node_modules
