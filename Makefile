# Two entry points: `make demo` runs the bundled example, `make test` runs lint + type checks + tests.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint unit bench clean venv

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[dev,gpu]'
	touch $(STAMP)

# compileall: an editable install is not byte-compiled, and PYTHONDONTWRITEBYTECODE would make every
# run compile deploy_code again (~70 ms of start-up); a wheel install compiles at install time.
demo: $(STAMP)
	$(BIN)/python -m compileall -q src > /dev/null
	cd examples/quickstart && ../../$(BIN)/deploy-code up

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

unit: $(STAMP)
	$(BIN)/python -m pytest -q

test: lint unit

bench: $(STAMP)
	$(BIN)/python -m compileall -q src > /dev/null
	$(BIN)/python bench/startup.py --supervisord $(abspath $(BIN))/supervisord

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
