# The two set-up commands: `make demo` (the main job on synthetic data, embedded default) and
# `make test` (the test suite). Both create/reuse .venv and install the project into it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint check-prereqs clean

check-prereqs:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null || \
	  { echo "sparkhep needs Python >= 3.11 (found: $$($(PYTHON) --version 2>&1)). Install it (e.g. apt-get install python3.11) or run: make PYTHON=python3.12 ..."; exit 1; }
	@command -v java >/dev/null 2>&1 || \
	  { echo "sparkhep needs Java 17+ for Spark, and no 'java' is on PATH. Install it, e.g.: apt-get install openjdk-17-jre-headless (Debian/Ubuntu), brew install openjdk@17 (macOS)"; exit 1; }
	@v=$$(java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -1); \
	  [ -n "$$v" ] && [ "$$v" -ge 17 ] || \
	  { echo "sparkhep needs Java 17+ for Spark; found Java '$$v'. Install it, e.g.: apt-get install openjdk-17-jre-headless, and put it first on PATH (or set JAVA_HOME)"; exit 1; }

$(STAMP): pyproject.toml | check-prereqs
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[serve,dev]'
	touch $(STAMP)

demo: check-prereqs $(STAMP)
	$(BIN)/sparkhep demo

test: check-prereqs $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check lib tests jobs benchmarks

clean:
	rm -rf $(VENV) output data/synthetic mlruns.db mlruns
