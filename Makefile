# Two commands for a newcomer: `make demo` and `make test`. Each creates or refreshes
# the virtualenv in $(VENV) when pyproject.toml changes, then runs.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test test-faults lint format bench clean

$(VENV)/.created:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	touch $@

$(VENV)/.installed-test: pyproject.toml $(VENV)/.created
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $@

$(VENV)/.installed-embedded: pyproject.toml $(VENV)/.created
	$(BIN)/python -m pip install --quiet -e ".[embedded]"
	touch $@

demo: $(VENV)/.installed-embedded
	$(BIN)/artbandit demo

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest -q

# The fault suite alone (it also runs in `make test`); prints the table of faults at the end.
test-faults: $(VENV)/.installed-test
	$(BIN)/python -m pytest -q tests/faults

lint: $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(VENV)/.installed-test
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# The serving benchmark drives the server with wrk (Debian package), installed here if missing.
bench: $(VENV)/.installed-test
	command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	$(BIN)/python benchmarks/policy_bench.py
	$(BIN)/python benchmarks/serving_bench.py
	$(BIN)/python benchmarks/learner_bench.py
	$(BIN)/python benchmarks/replay_bench.py
	$(BIN)/python benchmarks/quality_bench.py
	$(BIN)/python benchmarks/scale_bench.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis build *.egg-info
