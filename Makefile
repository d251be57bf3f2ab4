# Two entry points for a fresh machine (Python 3.11, no GPU, no network beyond the package index):
#   make demo   set up .venv, run the main job on the embedded demo dataset, print the result table
#   make test   set up .venv and run the test suite (what .ci/run calls)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_RESULTS ?= .cache/demo-results
DEMO_METHODS ?= pop gru4rec sasrec p5-sid idgenrec

.PHONY: setup demo test clean-cache

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first and pinned: a bare `torch` requirement can pull a multi-GB CUDA build.
	$(BIN)/python -m pip install --quiet "torch==2.13.0"
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $@

demo: setup
	@for method in $(DEMO_METHODS); do \
	  if $(BIN)/bench list methods | grep -qx "$$method"; then \
	    $(BIN)/bench run --method $$method --dataset demo --results-dir $(DEMO_RESULTS) --quiet || exit 1; \
	  fi; \
	done
	$(BIN)/bench table standard --results-dir $(DEMO_RESULTS)

test: setup
	$(BIN)/python -m pytest

clean-cache:
	rm -rf .cache
