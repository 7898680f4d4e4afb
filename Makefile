# The two commands of the README. Each does its own set-up on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
export MPLCONFIGDIR ?= $(CURDIR)/.cache/matplotlib
export YOLO_CONFIG_DIR ?= $(CURDIR)/.cache/ultralytics
export KERAS_HOME ?= $(CURDIR)/.cache/keras

.PHONY: demo test lint install clean docs chromium

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

# Headless Chromium, for the report's browser test and `gee-mining report --pdf`: installed on a fresh Debian
# machine when run as root (as CI is); elsewhere the test skips and says why.
chromium:
	@if command -v chromium >/dev/null || command -v chromium-browser >/dev/null || command -v google-chrome >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing chromium (apt-get)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else echo "chromium not found and not installable here: tests/test_report.py will skip its browser test"; fi

demo: $(STAMP) chromium
	$(VENV)/bin/gee-mining demo --out runs/demo
	$(VENV)/bin/gee-mining report runs/demo $$(command -v chromium >/dev/null && echo --pdf)
	$(MAKE) docs

# The documentation: the algorithm list regenerated from the engine's registry, then a strict offline build.
docs: $(STAMP)
	$(VENV)/bin/gee-mining algorithms --markdown > docs/algorithms.md
	$(PY) -m gee_mining.tools.notebook_doc docs/notebooks/tour.ipynb runs/notebooks/tour.ipynb
	$(VENV)/bin/mkdocs build --strict --quiet -d runs/site
	@echo "documentation: runs/site/index.html"

# Two pytest-xdist workers (CI has two cores), a test file on one worker, the files that share a slow session
# fixture (the demo run) on one worker together (tests/conftest.py). `make test TEST_WORKERS=0`: one process.
TEST_WORKERS ?= 2
test: $(STAMP) $(NODE_STAMP) chromium
	$(PY) -m ruff check gee_mining tests bench
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q -p no:cacheprovider --durations=15 -n $(TEST_WORKERS) --dist loadfile

lint: $(STAMP)
	$(PY) -m ruff check gee_mining tests bench
	$(VENV)/bin/lint-imports
	$(PY) -m ruff format --check gee_mining tests bench

clean:
	rm -rf $(VENV) runs .cache node_modules
