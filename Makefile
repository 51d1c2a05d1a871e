# Everything isthmus needs is installed from here: `make venv` builds .venv.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv demo test lint typecheck check bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: venv
	$(BIN)/isthmus demo

# isthmus is imported before pytest's plugins load ssl, so the MySQL C extension loads
# (see isthmus/dialects/mysql_driver.py) and its tests run rather than skip.
test: venv
	$(BIN)/python -c 'import isthmus, sys, pytest; sys.exit(pytest.main(sys.argv[1:]))' -q $(PYTEST_ARGS)

lint: venv
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: venv
	$(BIN)/mypy

check: lint typecheck test

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
