# Two commands set everything up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test demo bench clean

# The stamp makes `make install` idempotent and instant once done; it is redone when
# pyproject.toml changes.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,cluster]'
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest

demo: $(STAMP)
	$(BIN)/python -m vidcolor.demo --out demo

bench: $(STAMP)
	$(BIN)/python bench/correspondence.py
	$(BIN)/python bench/devc_step.py
	$(BIN)/python bench/throughput.py
	$(BIN)/python bench/precision.py
	$(BIN)/python bench/memory_length.py
	$(BIN)/python bench/classic_quality.py

clean:
	rm -rf $(VENV) demo build dist src/*.egg-info
