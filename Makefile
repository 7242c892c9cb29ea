# Two commands do everything on a fresh machine (Python 3.11 + pip):
#   make demo   install into .venv and run the SI-VAE on built-in example data (runs/demo)
#   make test   install into .venv and run the test suite
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install demo test test-slow validation bench clean

$(BIN)/scalevae: pyproject.toml constraints.txt
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt torch==2.13.0
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[test]"
	touch $(BIN)/scalevae

install: $(BIN)/scalevae

demo: install
	$(BIN)/scalevae demo domains --out runs/demo --overwrite

test: install
	$(BIN)/python -m pytest

test-slow: install
	$(BIN)/python -m pytest -m slow

validation: install
	$(BIN)/python validation/run_validation.py

clean:
	rm -rf $(VENV) runs .pytest_cache
