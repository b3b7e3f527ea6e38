# Two commands for a newcomer: `make demo` and `make test`. Both install exactly the locked
# dependency set (requirements/*.lock, hashes checked) into $(VENV); a changed lock makes the
# venv anew, so nothing outside the lock survives in it.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
LATEST_VENV ?= .venv-latest
LOCK_VENV ?= .venv-lock
# The locker (see README, "Dependencies"); pinned so every `make lock` resolves alike.
UV_VERSION := 0.13.9
# `make lock` moves every pin to the newest release the ranges allow; `make lock LOCK_UPGRADE=`
# keeps the current pins where they still fit (after editing a range in pyproject.toml).
LOCK_UPGRADE ?= --upgrade
LOCK_FLAGS := --universal --python-version 3.11 --generate-hashes --quiet $(LOCK_UPGRADE)

.PHONY: demo test test-faults test-latest lint format bench lock lock-check clean

$(VENV)/.created: requirements/dev.lock requirements/runtime.lock
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	touch $@

# The lock's set with its hashes, then the project itself on top (no dependency resolution).
$(VENV)/.installed-%: requirements/%.lock pyproject.toml $(VENV)/.created
	$(BIN)/python -m pip install --quiet --require-hashes --no-deps -r $<
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

demo: $(VENV)/.installed-runtime
	$(BIN)/artbandit demo

# Four pytest workers on two cores: most tests wait on brokers, servers and subprocesses, so
# the suite runs in about a third of its serial time (`make test TEST_WORKERS=0`: serial).
# A file's tests stay on one worker, so its module fixtures (backlogs, logs) are built once.
TEST_WORKERS ?= 4
# Every package of the product, as `make lint` and tests/test_types.py type-check them.
PACKAGES := bandit storage kafkaio serving learner replay tuning training sim artbandit

test: $(VENV)/.installed-dev
	$(BIN)/python -m pytest -q --durations=15 -n $(TEST_WORKERS) --dist loadfile

# The fault suite alone (it also runs in `make test`); prints the table of faults at the end.
test-faults: $(VENV)/.installed-dev
	$(BIN)/python -m pytest -q tests/faults

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy --strict $(PACKAGES)

# The suite against the newest releases pyproject.toml's ranges allow, in a venv of its own, to
# catch drift on purpose (not part of `make test`). Prints the packages that differ from the lock.
test-latest:
	rm -rf $(LATEST_VENV)
	$(PYTHON) -m venv $(LATEST_VENV)
	$(LATEST_VENV)/bin/python -m pip install --quiet --upgrade --upgrade-strategy eager -e ".[test,embedded]"
	$(LATEST_VENV)/bin/python requirements/check_lock.py --report requirements/dev.lock
	$(LATEST_VENV)/bin/python -m pytest -q -m "not locked_env"

# Refresh both locks with uv (installed pinned into a venv of its own). The runtime lock is
# constrained by the dev lock, so the demo, the Docker image and the tests share every pin.
lock:
	test -x $(LOCK_VENV)/bin/uv || ($(PYTHON) -m venv $(LOCK_VENV) && $(LOCK_VENV)/bin/python -m pip install --quiet uv==$(UV_VERSION))
	$(LOCK_VENV)/bin/uv pip compile pyproject.toml requirements/build.in --extra test --extra embedded $(LOCK_FLAGS) -o requirements/dev.lock
	$(LOCK_VENV)/bin/uv pip compile pyproject.toml requirements/build.in --extra embedded $(LOCK_FLAGS) -c requirements/dev.lock -o requirements/runtime.lock

# A clean venv made only from each lock: its `pip freeze --all` must equal the lock's pins.
lock-check:
	set -e; for lock in dev runtime; do \
		rm -rf .venv-check; $(PYTHON) -m venv .venv-check; \
		.venv-check/bin/python -m pip install --quiet --require-hashes --no-deps -r requirements/$$lock.lock; \
		.venv-check/bin/python requirements/check_lock.py requirements/$$lock.lock; \
	done; rm -rf .venv-check

format: $(VENV)/.installed-dev
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# The serving benchmark drives the server with wrk, the front benchmark runs nginx (Debian
# packages), installed here if missing.
bench: $(VENV)/.installed-dev
	command -v wrk >/dev/null && command -v nginx >/dev/null || \
		(apt-get update -qq && apt-get install -y -qq wrk nginx-light)
	$(BIN)/python benchmarks/policy_bench.py
	$(BIN)/python benchmarks/serving_bench.py
	$(BIN)/python benchmarks/learner_bench.py
	$(BIN)/python benchmarks/replay_bench.py
	$(BIN)/python benchmarks/quality_bench.py
	$(BIN)/python benchmarks/scale_bench.py
	$(BIN)/python benchmarks/front_bench.py
	$(BIN)/python benchmarks/suite_bench.py
	$(BIN)/python benchmarks/tuning_bench.py --jobs 2
	$(BIN)/python benchmarks/switch_bench.py

clean:
	rm -rf $(VENV) $(LATEST_VENV) $(LOCK_VENV) .venv-check .pytest_cache .ruff_cache .hypothesis build *.egg-info
