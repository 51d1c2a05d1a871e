# Everything isthmus needs is installed from here: `make venv` builds .venv.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv browser demo test chaos lint typecheck check bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Debian's chromium, for the headless-browser test of the HTML report (tests/test_report_html.py).
# Playwright drives it through executable_path: `playwright install` (a CDN download) is never run.
# Quiet when /usr/bin/chromium is there; without apt-get (or when the install fails) it warns and
# the browser test skips, saying why.
browser:
	@if [ ! -x /usr/bin/chromium ]; then \
	  if command -v apt-get >/dev/null 2>&1; then \
	    SUDO=; [ "$$(id -u)" -eq 0 ] || SUDO=sudo; \
	    APT="$$SUDO env DEBIAN_FRONTEND=noninteractive apt-get"; \
	    echo "browser: installing Debian's chromium (apt-get)"; \
	    $$APT install -y -qq --no-install-recommends chromium >/dev/null 2>&1 \
	      || { $$APT update -qq && $$APT install -y -qq --no-install-recommends chromium >/dev/null; } \
	      || echo "browser: warning: could not install chromium; the browser test will skip"; \
	  else \
	    echo "browser: warning: no apt-get and no /usr/bin/chromium; the browser test will skip"; \
	  fi; \
	fi

demo: venv
	$(BIN)/isthmus demo

# isthmus is imported before pytest's plugins load ssl, so the MySQL C extension loads
# (see isthmus/dialects/mysql_driver.py) and its tests run rather than skip.
# JOBS test processes at once (pytest-xdist, a file per process at a time); JOBS=1: one process.
JOBS ?= 2
XDIST = $(if $(filter-out 0 1,$(JOBS)),--dist loadfile --tx $(JOBS)*popen//python=tests/xdist-python)

test: venv browser
	$(BIN)/python -c 'import isthmus, sys, pytest; sys.exit(pytest.main(sys.argv[1:]))' -q $(XDIST) $(PYTEST_ARGS)

# The reliability trials of docs/reliability.md at full size (the smoke size runs in `make test`).
chaos: venv browser
	ISTHMUS_CHAOS_FULL=1 $(BIN)/python -c 'import isthmus, sys, pytest; sys.exit(pytest.main(sys.argv[1:]))' -q $(if $(findstring tests/,$(PYTEST_ARGS)),,tests/chaos) $(PYTEST_ARGS)

lint: venv
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: venv
	$(BIN)/mypy

check: lint typecheck test

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
