# reaper: every target sets itself up (venv + pinned dependencies) from a fresh clone.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test test-newest lint typecheck check bench soak lock clean

$(STAMP): requirements-dev.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $@

demo: $(STAMP)  ## emulator + delay service + function; instances go to terminated
	$(BIN)/reaper demo

test: $(STAMP)  ## the whole suite, warnings as errors, coverage >= 90 %
	$(BIN)/python -m pytest -n 2 --cov --cov-report=term-missing:skip-covered

# The same suite on the newest interpreter reaper supports (3.13), in its own venv, without coverage
# (the coverage gate is `make test`'s). `.ci/run` runs it after `make check`.
NEWEST ?= $(shell for v in 3.13 3.12; do \
	command -v python$$v >/dev/null 2>&1 && python$$v -c '' 2>/dev/null && { echo python$$v; exit; }; \
	p=$$(ls -d $${PYENV_ROOT:-$$HOME/.pyenv}/versions/$$v.*/bin/python$$v 2>/dev/null | sort -V | tail -1); \
	[ -n "$$p" ] && { echo $$p; exit; }; done)
test-newest:
	@test -n "$(NEWEST)" || { echo "no Python 3.12 or 3.13 found"; exit 1; }
	$(MAKE) --no-print-directory PYTHON=$(NEWEST) VENV=.venv-newest .venv-newest/.installed
	.venv-newest/bin/python -m pytest -q -n 2

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)  ## mypy --strict over function, reaper, bench and tests (pyproject [tool.mypy] files)
	$(BIN)/mypy --strict

check: lint typecheck test

bench: $(STAMP)  ## on demand; rewrites docs/benchmarks.md
	$(BIN)/python -m bench

soak: $(STAMP)  ## on demand, <= 5 min: 10,000 instances under faults; rewrites docs/reliability.md
	$(BIN)/python -m bench.soak

lock: $(STAMP)  ## re-pin dependencies after editing pyproject.toml
	$(BIN)/python -m pip install --quiet pip-tools
	$(BIN)/pip-compile --quiet --no-emit-index-url --no-emit-find-links --strip-extras --allow-unsafe --extra rabbitmq --extra otel --extra redis -o requirements.lock pyproject.toml
	$(BIN)/pip-compile --quiet --no-emit-index-url --no-emit-find-links --strip-extras --allow-unsafe --extra dev -o requirements-dev.lock pyproject.toml

clean:
	rm -rf $(VENV) .venv-newest .coverage .coverage.* .mypy_cache .ruff_cache .pytest_cache
